//! Learned profiles on disk, so a restart does not forget them: a magic
//! and version header, a CRC-32 of the payload, and the profiles in
//! postcard (compact serde). Written atomically (temporary file in the
//! same directory, fsync, rename, fsync of the directory), so a crash
//! leaves the old file or the new one, never half of one. A file that is
//! corrupt, truncated, foreign or of another version is refused with the
//! reason; the caller warns, counts it and starts fresh.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{KeyName, learned::Profile};
use crate::output::export::rotate::open_private;

const MAGIC: &[u8; 8] = b"NTAPROF\0";
pub const VERSION: u32 = 2;
const HEADER: usize = MAGIC.len() + 4 + 4;
/// Larger files are refused unread (1024 destinations take about 12 MB).
const MAX_BYTES: u64 = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an nta baseline state file")]
    Foreign { path: PathBuf },
    #[error("{path}: state file version {found}, this nta reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: corrupt or truncated ({why})")]
    Corrupt { path: PathBuf, why: String },
    #[error("{path}: larger than {MAX_BYTES} bytes")]
    TooLarge { path: PathBuf },
}

impl StateError {
    /// A closed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            StateError::Io { .. } => "io",
            StateError::Foreign { .. } => "foreign",
            StateError::Version { .. } => "version",
            StateError::Corrupt { .. } => "corrupt",
            StateError::TooLarge { .. } => "too_large",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Payload {
    keys: Vec<(KeyName, Profile)>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a state file; `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> Result<Option<Vec<(KeyName, Profile)>>, StateError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    if meta.len() > MAX_BYTES {
        return Err(StateError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let bytes = std::fs::read(path).map_err(io(path))?;
    decode(&bytes).map(Some).map_err(|e| e.at(path))
}

/// Why bytes are not a state file (the path is added by the caller).
enum Refused {
    Foreign,
    Version(u32),
    Corrupt(String),
}

impl Refused {
    fn at(self, path: &Path) -> StateError {
        let path = path.to_path_buf();
        match self {
            Refused::Foreign => StateError::Foreign { path },
            Refused::Version(found) => StateError::Version { path, found },
            Refused::Corrupt(why) => StateError::Corrupt { path, why },
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Vec<(KeyName, Profile)>, Refused> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Refused::Foreign);
    }
    if bytes.len() < HEADER {
        return Err(Refused::Corrupt("header cut short".into()));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != VERSION {
        return Err(Refused::Version(version));
    }
    let payload = &bytes[HEADER..];
    if crc32fast::hash(payload) != word(12) {
        return Err(Refused::Corrupt("checksum mismatch".into()));
    }
    let p: Payload = postcard::from_bytes(payload).map_err(|e| Refused::Corrupt(e.to_string()))?;
    if let Some((name, _)) = p.keys.iter().find(|(_, prof)| !prof.is_consistent()) {
        return Err(Refused::Corrupt(format!(
            "profile of {name:?} is inconsistent"
        )));
    }
    Ok(p.keys)
}

fn encode(keys: Vec<(KeyName, Profile)>) -> Result<Vec<u8>, String> {
    let payload = postcard::to_allocvec(&Payload { keys }).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Writes the state atomically; returns the bytes written.
pub fn write(path: &Path, keys: Vec<(KeyName, Profile)>) -> Result<usize, StateError> {
    let bytes = encode(keys).map_err(|why| StateError::Corrupt {
        path: path.to_path_buf(),
        why,
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "baseline".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = open_private(&tmp, true)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::{super::features::Feature, *};

    fn learned() -> Vec<(KeyName, Profile)> {
        let mut p = Profile::default();
        let mut f = [None; Feature::COUNT];
        for i in 0..60 {
            f[Feature::Pps as usize] = Some(100.0 + f64::from(i % 3));
            p.learn(&f, 50, 5, 60, 1.0);
        }
        p.learn(&f, 50, 5, 60, 1.0);
        vec![
            (KeyName::Interface(3), p.clone()),
            (KeyName::Group("web".into()), p.clone()),
            (
                KeyName::Destination("198.18.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
                p,
            ),
        ]
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nta-state-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir.join("baseline.state")
    }

    #[test]
    fn round_trip() {
        let path = temp("rt");
        let keys = learned();
        write(&path, keys.clone()).unwrap_or_else(|e| panic!("{e}"));
        let back = read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, Some(keys));
        // Owner only, and no temporary file left beside it.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600));
        let dir = path.parent().unwrap_or_else(|| Path::new("/"));
        let files = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(files, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn missing_is_none_and_bad_files_are_refused_with_their_reason() {
        let path = temp("bad");
        assert!(matches!(read(&path), Ok(None)));
        let good = encode(learned()).unwrap_or_else(|e| panic!("{e}"));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() / 2].to_vec(), "corrupt"),
            (good[..10].to_vec(), "corrupt"),
            (b"{\"not\": \"ours\"}".to_vec(), "foreign"),
            (Vec::new(), "foreign"),
            (
                {
                    let mut v = good.clone();
                    v[8] = 9;
                    v
                },
                "version",
            ),
            (
                {
                    let mut v = good.clone();
                    let last = v.len() - 1;
                    v[last] ^= 0x55;
                    v
                },
                "corrupt",
            ),
        ];
        for (bytes, reason) in cases {
            std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));
            match read(&path) {
                Err(e) => assert_eq!(e.reason(), reason, "{e}"),
                Ok(k) => panic!("accepted {} bytes: {k:?}", bytes.len()),
            }
        }
        let _ = std::fs::remove_dir_all(path.parent().unwrap_or_else(|| Path::new("/")));
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let path = temp("keep");
        write(&path, learned()).unwrap_or_else(|e| panic!("{e}"));
        // A directory where the temporary file would go: the write fails.
        let dir = path
            .parent()
            .unwrap_or_else(|| Path::new("/"))
            .to_path_buf();
        let blocker = dir.join(format!(".baseline.state.{}.tmp", std::process::id()));
        std::fs::create_dir_all(&blocker).unwrap_or_else(|e| panic!("{e}"));
        assert!(write(&path, Vec::new()).is_err());
        assert_eq!(read(&path).ok().flatten(), Some(learned()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
