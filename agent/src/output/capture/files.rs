//! `--capture DIR`: capture files rotated by size and age, the oldest
//! deleted past a total cap. Files are created 0600 with O_EXCL|O_NOFOLLOW
//! in a 0700 directory and named from the clock and a sequence number,
//! never from packet data. A write that fails (disk full) is rolled back to
//! the last whole block, so every file stays readable; capture pauses,
//! counts what it loses, and tries a new file a few seconds later.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use prometheus::{IntCounter, Registry};

use super::encode::{EncodeError, Encoder, Format, Interface, InterfaceStats};
use crate::kernel::capture::consumer::{Frame, FrameSink};

/// Encoded bytes buffered before they are written.
const WRITE_CHUNK: usize = 256 << 10;
/// After a failed write, wait this long before opening a new file.
const RETRY_AFTER: Duration = Duration::from_secs(5);
const PREFIX: &str = "nta-";

#[derive(Debug, thiserror::Error)]
pub enum CaptureFilesError {
    #[error("capture directory {path}: {why}")]
    Dir { path: PathBuf, why: String },
    #[error("capture directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "capture: --capture-max-bytes ({total}) must hold at least two files of --capture-file-bytes ({file})"
    )]
    CapTooSmall { total: u64, file: u64 },
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Where capture files go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Rotating files in a directory (`nta run --capture DIR`).
    Dir(PathBuf),
    /// One file, replaced if it exists (`nta capture -w FILE`); never
    /// rotated, and a failed write ends the capture.
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirConfig {
    pub destination: Destination,
    pub format: Format,
    pub snaplen: u32,
    /// Start a new file before one grows past this.
    pub file_bytes: u64,
    /// Start a new file when one is this old (None: size only).
    pub file_age: Option<Duration>,
    /// Delete the oldest files past this total (0: keep everything).
    pub max_total_bytes: u64,
}

/// Counters of the capture writer.
#[derive(Clone)]
pub struct FileMetrics {
    pub frames: IntCounter,
    pub bytes: IntCounter,
    pub files: IntCounter,
    pub deleted: IntCounter,
    pub errors: IntCounter,
    pub lost: IntCounter,
}

impl FileMetrics {
    pub fn new() -> Result<FileMetrics, prometheus::Error> {
        Ok(FileMetrics {
            frames: IntCounter::new(
                "nta_capture_written_frames_total",
                "Captured frames written to capture files.",
            )?,
            bytes: IntCounter::new(
                "nta_capture_written_bytes_total",
                "Bytes written to capture files.",
            )?,
            files: IntCounter::new("nta_capture_files_total", "Capture files started.")?,
            deleted: IntCounter::new(
                "nta_capture_files_deleted_total",
                "Oldest capture files deleted to stay under --capture-max-bytes.",
            )?,
            errors: IntCounter::new(
                "nta_capture_write_errors_total",
                "Failed capture file writes (disk full...); the file is cut back to its last whole block.",
            )?,
            lost: IntCounter::new(
                "nta_capture_write_lost_total",
                "Captured frames lost because they could not be written.",
            )?,
        })
    }

    pub fn register_in(&self, r: &Registry) -> Result<(), prometheus::Error> {
        for c in [
            &self.frames,
            &self.bytes,
            &self.files,
            &self.deleted,
            &self.errors,
            &self.lost,
        ] {
            r.register(Box::new(c.clone()))?;
        }
        Ok(())
    }
}

struct Current {
    file: File,
    path: PathBuf,
    encoder: Encoder,
    /// Bytes on disk, all whole blocks.
    committed: u64,
    /// Frames encoded but not yet written.
    pending_frames: u64,
    /// Where each pending frame's block ends in the pending bytes, so a
    /// failed write keeps every whole frame that reached the disk.
    frame_ends: Vec<usize>,
    opened: Instant,
    stats: Vec<InterfaceStats>,
}

/// The rotating set of capture files in one directory.
pub struct CaptureDir {
    config: DirConfig,
    interfaces: Vec<Interface>,
    current: Option<Current>,
    next_seq: u64,
    paused_until: Option<Instant>,
    failed_once: bool,
    last_error: Option<String>,
    metrics: FileMetrics,
    out: Vec<u8>,
}

/// Creates `dir` 0700 if missing; refuses a symlink or a non-directory.
/// An existing directory is used only when it is ours alone (our owner,
/// no group or world access): tightening a shared one such as /tmp would
/// break everyone else, and files in a directory others can write are not
/// safe to rotate and delete.
pub fn prepare_dir(dir: &Path) -> Result<(), CaptureFilesError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| CaptureFilesError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.file_type().is_symlink() => Err(CaptureFilesError::Dir {
            path: dir.to_path_buf(),
            why: "is a symbolic link; give the real directory".into(),
        }),
        Ok(m) if !m.is_dir() => Err(CaptureFilesError::Dir {
            path: dir.to_path_buf(),
            why: "exists and is not a directory".into(),
        }),
        Ok(m) => {
            // The user nta writes as (it may become it after attaching).
            let (me, _) = crate::kernel::identity::writer();
            if m.uid() == me && m.mode() & 0o077 == 0 {
                Ok(())
            } else {
                Err(CaptureFilesError::Dir {
                    path: dir.to_path_buf(),
                    why: format!(
                        "exists with owner uid {} and mode {:o}: give a directory only nta's user can use (a missing one is created 0700), such as a new subdirectory",
                        m.uid(),
                        m.mode() & 0o7777
                    ),
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Every directory created here belongs to the user nta writes
            // as, parents too: it must reach the last one after it
            // switches.
            let created: Vec<&Path> = dir
                .ancestors()
                .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
                .collect();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
            let (uid, gid) = crate::kernel::identity::writer();
            for d in created {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(io)?;
            }
            Ok(())
        }
        Err(e) => Err(io(e)),
    }
}

/// Our capture files in `dir`, oldest first: (sequence, path, size).
fn our_files(dir: &Path) -> Vec<(u64, PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_prefix(PREFIX)?;
            let (stem, ext) = stem.rsplit_once('.')?;
            if ext != "pcap" && ext != "pcapng" {
                return None;
            }
            let seq = stem.rsplit_once('-')?.1.parse::<u64>().ok()?;
            let meta = e.metadata().ok()?;
            meta.is_file().then(|| (seq, e.path(), meta.len()))
        })
        .collect();
    files.sort();
    files
}

impl CaptureDir {
    pub fn open(
        config: DirConfig,
        interfaces: Vec<Interface>,
        metrics: FileMetrics,
    ) -> Result<CaptureDir, CaptureFilesError> {
        if config.max_total_bytes != 0 && config.max_total_bytes < 2 * config.file_bytes {
            return Err(CaptureFilesError::CapTooSmall {
                total: config.max_total_bytes,
                file: config.file_bytes,
            });
        }
        let next_seq = match &config.destination {
            Destination::Dir(dir) => {
                prepare_dir(dir)?;
                our_files(dir).last().map_or(1, |f| f.0 + 1)
            }
            Destination::File(_) => 1,
        };
        let single = matches!(config.destination, Destination::File(_));
        let mut dir = CaptureDir {
            config,
            interfaces,
            current: None,
            next_seq,
            paused_until: None,
            failed_once: false,
            last_error: None,
            metrics,
            out: Vec::with_capacity(WRITE_CHUNK * 2),
        };
        // A single file is created at once, so a bad path fails up front.
        let unix_ns = crate::output::export::WallClock::monotonic()
            .to_unix_ns(crate::output::export::monotonic_now_ns());
        if single && !dir.start_file(Instant::now(), unix_ns) {
            return Err(CaptureFilesError::Dir {
                path: match &dir.config.destination {
                    Destination::File(p) | Destination::Dir(p) => p.clone(),
                },
                why: dir.last_error.clone().unwrap_or_default(),
            });
        }
        Ok(dir)
    }

    /// The last write error (file and reason), for a one-shot capture's
    /// exit status.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The file being written, if any.
    pub fn current_path(&self) -> Option<&Path> {
        self.current.as_ref().map(|c| c.path.as_path())
    }

    /// Writes one frame (buffered).
    pub fn write(&mut self, f: &Frame<'_>, now: Instant, unix_ns: u64) {
        if self.current.is_none() && !self.start_file(now, unix_ns) {
            self.metrics.lost.inc();
            return;
        }
        let Some(c) = &mut self.current else { return };
        if let Err(e) = c.encoder.frame(f) {
            tracing::warn!(error = %e, "capture frame not encoded");
            self.metrics.lost.inc();
            return;
        }
        c.pending_frames += 1;
        c.frame_ends.push(c.encoder.pending());
        let i = self
            .interfaces
            .iter()
            .position(|i| i.ifindex == f.ifindex)
            .unwrap_or(0);
        if let Some(s) = c.stats.get_mut(i) {
            s.written += 1;
        }
        if c.encoder.pending() >= WRITE_CHUNK {
            self.commit(now);
        }
        if let Some(c) = &self.current
            && c.committed + c.encoder.pending() as u64 >= self.config.file_bytes
        {
            self.rotate(now, unix_ns);
        }
    }

    /// Frames lost before the writer (kernel ring full), per interface, to
    /// be reported in the current file's statistics.
    pub fn note_dropped(&mut self, ifindex: u32, n: u64) {
        let i = self
            .interfaces
            .iter()
            .position(|i| i.ifindex == ifindex)
            .unwrap_or(0);
        if let Some(s) = self.current.as_mut().and_then(|c| c.stats.get_mut(i)) {
            s.dropped += n;
        }
    }

    /// Writes what is buffered and rotates by age; call a few times a
    /// second.
    pub fn tick(&mut self, now: Instant, unix_ns: u64) {
        self.commit(now);
        if let (Some(c), Some(age)) = (&self.current, self.config.file_age)
            && now.duration_since(c.opened) >= age
        {
            self.rotate(now, unix_ns);
        }
    }

    /// Ends the current file (statistics, flush) and leaves it complete.
    pub fn close(&mut self, now: Instant, unix_ns: u64) {
        self.finish_current(now, unix_ns);
    }

    /// Whether frames can still be written (a single file that failed
    /// cannot).
    pub fn usable(&self) -> bool {
        !matches!(self.config.destination, Destination::File(_)) || !self.failed_once
    }

    fn start_file(&mut self, now: Instant, unix_ns: u64) -> bool {
        if self.paused_until.is_some_and(|t| now < t) || !self.usable() {
            return false;
        }
        self.paused_until = None;
        if let Destination::File(path) = &self.config.destination {
            let path = path.clone();
            let opened = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            return match opened {
                Ok(file) => self.begin(file, path, now, unix_ns),
                Err(e) => {
                    self.failed(&path, &e, now);
                    false
                }
            };
        }
        let Destination::Dir(dir) = &self.config.destination else {
            return false;
        };
        let dir = dir.clone();
        let stamp = chrono::DateTime::from_timestamp_nanos(unix_ns as i64)
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        // O_EXCL never overwrites: on a name collision take the next one.
        for _ in 0..1000 {
            let name = format!(
                "{PREFIX}{stamp}-{:06}.{}",
                self.next_seq,
                self.config.format.extension()
            );
            self.next_seq += 1;
            let path = dir.join(name);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            let file = match opened {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    self.failed(&path, &e, now);
                    return false;
                }
            };
            return self.begin(file, path, now, unix_ns);
        }
        false
    }

    /// Writes the header of a freshly opened file.
    fn begin(&mut self, file: File, path: PathBuf, now: Instant, unix_ns: u64) -> bool {
        let encoder = match Encoder::new(
            self.config.format,
            &self.interfaces,
            self.config.snaplen,
            unix_ns,
        ) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "capture file header");
                let _ = std::fs::remove_file(&path);
                return false;
            }
        };
        self.metrics.files.inc();
        tracing::info!(file = %path.display(), "capture file started");
        self.current = Some(Current {
            file,
            path,
            encoder,
            committed: 0,
            pending_frames: 0,
            frame_ends: Vec::new(),
            opened: now,
            stats: vec![InterfaceStats::default(); self.interfaces.len().max(1)],
        });
        self.commit(now)
    }

    /// Writes the buffered blocks; on failure cuts the file back to its
    /// last whole block and pauses. Returns whether a file is still open.
    fn commit(&mut self, now: Instant) -> bool {
        let Some(c) = &mut self.current else {
            return false;
        };
        if c.encoder.pending() == 0 {
            return true;
        }
        self.out.clear();
        c.encoder.take(&mut self.out);
        let mut written = 0;
        let result = loop {
            match c.file.write(&self.out[written..]) {
                Ok(0) => break Err(std::io::Error::from(std::io::ErrorKind::WriteZero)),
                Ok(n) => {
                    written += n;
                    if written == self.out.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        match result {
            Ok(()) => {
                c.committed += self.out.len() as u64;
                self.metrics.bytes.inc_by(self.out.len() as u64);
                self.metrics.frames.inc_by(c.pending_frames);
                c.pending_frames = 0;
                c.frame_ends.clear();
                true
            }
            Err(e) => {
                // Keep the whole frames that reached the disk; cut the
                // partial block after them: the file stays valid.
                let kept_frames = c
                    .frame_ends
                    .iter()
                    .take_while(|&&end| end <= written)
                    .count();
                let kept_bytes = match kept_frames {
                    0 => 0,
                    n => c.frame_ends[n - 1],
                };
                // Header bytes (no frame) only count when all were written.
                let kept_bytes = if c.committed == 0 && kept_frames == 0 {
                    0
                } else {
                    kept_bytes
                };
                let (path, committed) = (c.path.clone(), c.committed + kept_bytes as u64);
                let _ = c.file.set_len(committed);
                self.metrics.bytes.inc_by(kept_bytes as u64);
                self.metrics.frames.inc_by(kept_frames as u64);
                self.metrics
                    .lost
                    .inc_by(c.pending_frames - kept_frames as u64);
                self.current = None;
                if committed == 0 {
                    let _ = std::fs::remove_file(&path);
                }
                self.failed(&path, &e, now);
                false
            }
        }
    }

    fn failed(&mut self, path: &Path, e: &std::io::Error, now: Instant) {
        self.metrics.errors.inc();
        self.failed_once = true;
        self.last_error = Some(format!("{}: {e}", path.display()));
        // Once per outage, not per retry.
        if self.paused_until.is_none() {
            tracing::error!(file = %path.display(), error = %e, "capture write failed; the file keeps what was written, capture pauses and retries every 5 s (frames lost meanwhile are counted)");
        }
        self.paused_until = Some(now + RETRY_AFTER);
    }

    fn finish_current(&mut self, now: Instant, unix_ns: u64) {
        if let Some(c) = &mut self.current {
            let stats = c.stats.clone();
            if let Err(e) = c.encoder.finish(&stats, unix_ns) {
                tracing::warn!(error = %e, "capture statistics block");
            }
        }
        if self.commit(now) {
            self.current = None;
        }
    }

    fn rotate(&mut self, now: Instant, unix_ns: u64) {
        self.finish_current(now, unix_ns);
        self.enforce_cap();
    }

    /// Deletes the oldest files while the total exceeds the cap.
    fn enforce_cap(&mut self) {
        let Destination::Dir(dir) = &self.config.destination else {
            return;
        };
        if self.config.max_total_bytes == 0 {
            return;
        }
        let files = our_files(dir)
            .into_iter()
            .map(|(_, path, size)| (path, size));
        let deleted = delete_oldest_past(files, self.config.max_total_bytes, self.current_path());
        self.metrics.deleted.inc_by(deleted);
    }
}

/// Deletes files of `oldest_first` (path, size), oldest first, until
/// what remains takes at most `max_bytes`; `keep` (the file being
/// written) stays even past it. Returns how many went.
pub(super) fn delete_oldest_past(
    oldest_first: impl IntoIterator<Item = (PathBuf, u64)>,
    max_bytes: u64,
    keep: Option<&Path>,
) -> u64 {
    let files: Vec<(PathBuf, u64)> = oldest_first.into_iter().collect();
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    let mut deleted = 0;
    for (path, size) in files {
        if total <= max_bytes {
            break;
        }
        if keep == Some(path.as_path()) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= size;
                deleted += 1;
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "deleting an old capture file")
            }
        }
    }
    deleted
}

impl FrameSink for CaptureDir {
    fn write(&mut self, f: &Frame<'_>, now: Instant, unix_ns: u64) {
        CaptureDir::write(self, f, now, unix_ns);
    }

    fn note_dropped(&mut self, ifindex: u32, n: u64) {
        CaptureDir::note_dropped(self, ifindex, n);
    }

    fn tick(&mut self, now: Instant, unix_ns: u64) {
        CaptureDir::tick(self, now, unix_ns);
    }

    fn close(&mut self, now: Instant, unix_ns: u64) {
        CaptureDir::close(self, now, unix_ns);
    }

    fn usable(&self) -> bool {
        CaptureDir::usable(self)
    }

    fn last_error(&self) -> Option<String> {
        CaptureDir::last_error(self).map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use pcap_file::pcapng::{Block, PcapNgReader};

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nta-capfiles-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn an_existing_directory_is_used_only_when_it_is_ours_alone() {
        let d = dir("shared");
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        // A shared directory like /tmp: refused, and left as it was.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777))
            .unwrap_or_else(|e| panic!("{e}"));
        let e = prepare_dir(&d)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("mode 1777") && e.contains("only nta's user"),
            "{e}"
        );
        let mode = std::fs::metadata(&d)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0);
        assert_eq!(mode, 0o1777, "not tightened");
        // Ours alone: used as it is; missing: created 0700.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(prepare_dir(&d).is_ok());
        let new = d.join("sub");
        assert!(prepare_dir(&new).is_ok());
        let mode = std::fs::metadata(&new)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir_all(&d);
    }

    fn metrics() -> FileMetrics {
        FileMetrics::new().unwrap_or_else(|e| panic!("{e}"))
    }

    fn config(d: &Path, file_bytes: u64, max_total_bytes: u64) -> DirConfig {
        DirConfig {
            destination: Destination::Dir(d.to_path_buf()),
            format: Format::Pcapng,
            snaplen: 128,
            file_bytes,
            file_age: None,
            max_total_bytes,
        }
    }

    fn ifaces() -> Vec<Interface> {
        vec![
            Interface {
                ifindex: 7,
                name: "lab0".into(),
            },
            Interface {
                ifindex: 9,
                name: "lab1".into(),
            },
        ]
    }

    /// (frames per interface id, timestamps, statistics blocks) of a file.
    fn read(path: &Path) -> (Vec<u32>, Vec<u64>, usize) {
        let f = File::open(path).unwrap_or_else(|e| panic!("{e}"));
        let mut r = PcapNgReader::new(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (mut ids, mut ts, mut isb) = (Vec::new(), Vec::new(), 0);
        while let Some(b) = r.next_block() {
            match b.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
                Block::EnhancedPacket(p) => {
                    ids.push(p.interface_id);
                    ts.push(p.timestamp.as_nanos() as u64);
                    assert_eq!(p.original_len, 200);
                    assert_eq!(p.data.len(), 128);
                }
                Block::InterfaceStatistics(_) => isb += 1,
                _ => {}
            }
        }
        (ids, ts, isb)
    }

    fn frame(i: u64) -> (Vec<u8>, u64) {
        (vec![i as u8; 128], 1_800_000_000_000_000_000 + i * 1000)
    }

    #[test]
    fn rotates_by_size_caps_the_total_and_keeps_files_valid() {
        let d = dir("rotate");
        let m = metrics();
        let mut c = CaptureDir::open(config(&d, 20_000, 60_000), ifaces(), m.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let now = Instant::now();
        for i in 0..1000u64 {
            let (data, ts) = frame(i);
            let f = Frame {
                ifindex: if i % 2 == 0 { 7 } else { 9 },
                unix_ns: ts,
                orig_len: 200,
                kind: 0,
                data: &data,
            };
            c.write(&f, now, ts);
        }
        c.close(now, 1_800_000_000_000_000_000 + 1_000_000);
        let files = our_files(&d);
        // ~160 bytes a frame: 1000 frames make ~8 files, the cap keeps ~3.
        assert!(files.len() >= 2 && files.len() <= 4, "{files:?}");
        assert!(m.deleted.get() >= 4, "{}", m.deleted.get());
        assert_eq!(
            m.files.get() as usize,
            files.len() + m.deleted.get() as usize
        );
        let total: u64 = files.iter().map(|f| f.2).sum();
        assert!(total <= 60_000 + 20_000, "{total}");
        let mut frames = 0;
        let mut last_ts = 0;
        for (_, path, size) in &files {
            assert!(*size <= 20_000 + 300, "{size}");
            let (ids, ts, isb) = read(path);
            assert_eq!(isb, 2, "one statistics block per interface");
            assert!(ids.iter().all(|&i| i < 2));
            assert!(ts.windows(2).all(|w| w[0] < w[1]), "monotonic");
            assert!(ts.first().is_some_and(|&t| t > last_ts), "files in order");
            last_ts = ts.last().copied().unwrap_or(0);
            frames += ids.len();
            let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(mode.ok(), Some(0o600));
        }
        // The newest files hold the newest frames, through frame 999.
        assert_eq!(last_ts, frame(999).1);
        assert_eq!(m.frames.get(), 1000);
        assert!(frames < 1000 && frames > 200);
        let mode = std::fs::metadata(&d).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o700));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn symlinks_are_refused_and_never_followed() {
        let d = dir("symlink");
        let target = dir("symlink-target");
        std::fs::create_dir_all(&target).unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&target, &d).unwrap_or_else(|e| panic!("{e}"));
        let e = CaptureDir::open(config(&d, 1 << 20, 0), ifaces(), metrics())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("is a symbolic link"), "{e}");
        let _ = std::fs::remove_file(&d);

        // A symlink planted where the next file would go is skipped, not
        // followed: the victim file is untouched.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&d)
            .unwrap_or_else(|e| panic!("{e}"));
        let victim = target.join("victim");
        std::fs::write(&victim, "keep").unwrap_or_else(|e| panic!("{e}"));
        let (data, ts) = frame(1);
        let stamp = chrono::DateTime::from_timestamp_nanos(ts as i64)
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        std::os::unix::fs::symlink(&victim, d.join(format!("nta-{stamp}-000001.pcapng")))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut c = CaptureDir::open(config(&d, 1 << 20, 0), ifaces(), metrics())
            .unwrap_or_else(|e| panic!("{e}"));
        let f = Frame {
            ifindex: 7,
            unix_ns: ts,
            orig_len: 200,
            kind: 0,
            data: &data,
        };
        c.write(&f, Instant::now(), ts);
        let written = c.current_path().map(Path::to_path_buf);
        c.close(Instant::now(), ts);
        assert_eq!(
            std::fs::read_to_string(&victim).ok().as_deref(),
            Some("keep")
        );
        let written = written.unwrap_or_default();
        assert!(
            written.to_string_lossy().ends_with("-000002.pcapng"),
            "{written:?}"
        );
        assert_eq!(read(&written).0.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::remove_dir_all(&target);
    }

    #[test]
    fn a_too_small_cap_is_refused() {
        let d = dir("cap");
        let e = CaptureDir::open(config(&d, 1 << 20, 1 << 20), ifaces(), metrics())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("must hold at least two files"), "{e}");
    }
}
