//! An append-only file that rotates by size: FILE → FILE.1 → … → FILE.N,
//! oldest dropped. Records are written whole (one `write_all` per batch of
//! complete lines), so a rotated file never ends mid-record.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
};

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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let size = file.metadata().map_err(io_err(path))?.len();
        let mut f = RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            config,
            header,
            rotations: 0,
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

    fn rotated_name(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    fn rotate(&mut self) -> Result<(), ExportError> {
        self.file.flush().map_err(io_err(&self.path))?;
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
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err(&self.path))?;
        self.size = 0;
        self.rotations += 1;
        self.write_header()
    }

    /// Appends `bytes` (complete records), rotating first if they would
    /// push a non-empty file past the limit. Returns true if it rotated.
    pub fn append(&mut self, bytes: &[u8]) -> Result<bool, ExportError> {
        let fresh = self.size <= self.header.len() as u64;
        let rotated = !fresh && self.size + bytes.len() as u64 > self.config.max_bytes;
        if rotated {
            self.rotate()?;
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
}
