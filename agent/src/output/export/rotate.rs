//! An append-only file that rotates by size: FILE → FILE.1 → … → FILE.N,
//! oldest dropped. Records are written whole (one `write_all` per batch of
//! complete lines), so a rotated file never ends mid-record.
//!
//! The files hold addresses of people: they are created 0600, and a
//! symbolic link at the path is refused rather than followed. Rotation
//! opens the next file before it renames anything, so a rotation that
//! fails (disk full, permissions) moves nothing; writing goes on in the
//! live file and the next try waits [`ROTATION_RETRY`].

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

/// How long after a failed rotation the next one is tried.
pub const ROTATION_RETRY: Duration = Duration::from_secs(30);

/// Failed rotations of every rotating file of the process (flow files,
/// alert files, metadata logs), for `nta_file_rotation_failures_total`.
/// One counter for all: the files come and go with reloads, the count
/// must not.
pub static ROTATION_FAILURES: AtomicU64 = AtomicU64::new(0);

use super::ExportError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationConfig {
    /// Rotate before a write would take the file past this size.
    pub max_bytes: u64,
    /// Rotated files kept besides the live one.
    pub keep: u32,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_bytes: 100 << 20,
            keep: 5,
        }
    }
}

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    config: RotationConfig,
    /// Written at the start of every new file (a CSV header row).
    header: Vec<u8>,
    rotations: u64,
    failed_rotations: u64,
    last_failure: Option<Instant>,
}

/// Opens `path` for appending (or truncated): created 0600, never
/// through a symlink. Also the learned-profile state file's opener.
pub(crate) fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .append(!truncate)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RotatingFile {
    pub fn open(path: &Path, config: RotationConfig) -> Result<RotatingFile, ExportError> {
        Self::with_header(path, config, Vec::new())
    }

    /// Like `open`, writing `header` at the start of every new file.
    pub fn with_header(
        path: &Path,
        config: RotationConfig,
        header: Vec<u8>,
    ) -> Result<RotatingFile, ExportError> {
        let file = open_private(path, false).map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            config,
            header,
            rotations: 0,
            failed_rotations: 0,
            last_failure: None,
        };
        if f.size == 0 {
            f.write_header()?;
        }
        Ok(f)
    }

    fn write_header(&mut self) -> Result<(), ExportError> {
        if !self.header.is_empty() {
            self.file
                .write_all(&self.header)
                .map_err(io_err(&self.path))?;
            self.size += self.header.len() as u64;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the live file.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Rotations that failed (each moved nothing).
    pub fn failed_rotations(&self) -> u64 {
        self.failed_rotations
    }

    fn rotated_name(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Where the next file is made before the renames.
    fn next_name(&self) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(".next");
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> Result<(), ExportError> {
        self.file.flush().map_err(io_err(&self.path))?;
        // The next file first: if it cannot be made, nothing has moved.
        let next_path = self.next_name();
        let next = open_private(&next_path, true).map_err(io_err(&next_path))?;
        if self.config.keep == 0 {
            let _ = fs::remove_file(&self.path);
        } else {
            let _ = fs::remove_file(self.rotated_name(self.config.keep));
            for n in (1..self.config.keep).rev() {
                let from = self.rotated_name(n);
                if from.exists() {
                    fs::rename(&from, self.rotated_name(n + 1)).map_err(io_err(&from))?;
                }
            }
            fs::rename(&self.path, self.rotated_name(1)).map_err(io_err(&self.path))?;
        }
        fs::rename(&next_path, &self.path).map_err(io_err(&next_path))?;
        self.file = next;
        self.size = 0;
        self.rotations += 1;
        self.write_header()
    }

    /// Appends `bytes` (complete records), rotating first if they would
    /// push a non-empty file past the limit. Returns true if it rotated.
    /// A failed rotation is logged and counted, and the records go to the
    /// live file: nothing is lost to it.
    pub fn append(&mut self, bytes: &[u8]) -> Result<bool, ExportError> {
        let fresh = self.size <= self.header.len() as u64;
        let due = !fresh && self.size + bytes.len() as u64 > self.config.max_bytes;
        let waiting = self
            .last_failure
            .is_some_and(|t| t.elapsed() < ROTATION_RETRY);
        let mut rotated = false;
        if due && !waiting {
            match self.rotate() {
                Ok(()) => {
                    rotated = true;
                    self.last_failure = None;
                }
                Err(e) => {
                    self.failed_rotations += 1;
                    ROTATION_FAILURES.fetch_add(1, Ordering::Relaxed);
                    self.last_failure = Some(Instant::now());
                    tracing::warn!(error = %format!("{e:#}"), file = %self.path.display(), "rotation failed; writing on in the live file, next try in 30 s");
                }
            }
        }
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.size += bytes.len() as u64;
        Ok(rotated)
    }

    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush().map_err(io_err(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files_of_whole_records() {
        let dir = std::env::temp_dir().join(format!("nta-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("flows.jsonl");
        let mut f = RotatingFile::open(
            &path,
            RotationConfig {
                max_bytes: 100,
                keep: 2,
            },
        )
        .expect("open");
        for i in 0..20 {
            f.append(format!("{{\"n\":{i:03}, \"pad\":\"xxxxxxxxxxxx\"}}\n").as_bytes())
                .expect("append");
        }
        f.flush().expect("flush");
        let live = fs::read_to_string(&path).expect("live");
        let one = fs::read_to_string(dir.join("flows.jsonl.1")).expect(".1");
        let two = fs::read_to_string(dir.join("flows.jsonl.2")).expect(".2");
        assert!(!dir.join("flows.jsonl.3").exists(), "only 2 kept");
        for text in [&live, &one, &two] {
            assert!(text.len() <= 100);
            assert!(text.ends_with('\n'));
            assert!(text.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
        }
        // The newest records are in the live file, in order.
        assert!(live.contains("\"n\":019"));
        assert!(
            one.lines()
                .last()
                .is_some_and(|l| live.lines().next().is_some_and(|f| l < f))
        );
        let _ = fs::remove_dir_all(&dir);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nta-rotate-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn files_are_private_and_a_symlink_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("private");
        let path = dir.join("flows.jsonl");
        let mut f = RotatingFile::open(
            &path,
            RotationConfig {
                max_bytes: 10,
                keep: 1,
            },
        )
        .expect("open");
        f.append(b"0123456789\n").expect("append");
        f.append(b"0123456789\n").expect("rotates");
        for p in [path.clone(), dir.join("flows.jsonl.1")] {
            let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let target = dir.join("elsewhere");
        let link = dir.join("link.jsonl");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(RotatingFile::open(&link, RotationConfig::default()).is_err());
        assert!(!target.exists(), "nothing written through the link");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_rotation_moves_nothing_and_loses_nothing() {
        let dir = temp_dir("failed");
        let path = dir.join("alerts.jsonl");
        let mut f = RotatingFile::open(
            &path,
            RotationConfig {
                max_bytes: 10,
                keep: 2,
            },
        )
        .expect("open");
        f.append(b"first-line\n").expect("append");
        // The next file cannot be made: a directory sits where it goes.
        fs::create_dir(dir.join("alerts.jsonl.next")).expect("blocker");
        let before = ROTATION_FAILURES.load(Ordering::Relaxed);
        assert_eq!(f.append(b"second-line\n").ok(), Some(false));
        assert_eq!(f.failed_rotations(), 1);
        // Other tests may fail rotations at the same time: at least ours.
        assert!(ROTATION_FAILURES.load(Ordering::Relaxed) > before);
        assert!(!dir.join("alerts.jsonl.1").exists(), "nothing renamed");
        // Within the retry wait, no new try; records keep coming.
        assert_eq!(f.append(b"third-line\n").ok(), Some(false));
        assert_eq!(f.failed_rotations(), 1);
        f.flush().expect("flush");
        assert_eq!(
            fs::read_to_string(&path).expect("live"),
            "first-line\nsecond-line\nthird-line\n"
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
