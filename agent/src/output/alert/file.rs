//! `--alerts FILE` / `[alerts] file`: one JSON document per line,
//! size-rotated like the flow files.

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
};

use super::{AlertContext, AlertError, AlertOutput, AlertSink};
use crate::{
    output::export::{RotatingFile, RotationConfig},
    pipeline::detect::AlertEvent,
};

/// Where the alert file goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct AlertFile(pub PathBuf);

impl std::str::FromStr for AlertFile {
    type Err = Infallible;

    fn from_str(path: &str) -> Result<AlertFile, Infallible> {
        Ok(AlertFile(path.into()))
    }
}

impl AlertOutput for AlertFile {
    fn key(&self) -> &'static str {
        "alerts.file"
    }

    fn written_file(&self) -> Option<&std::path::Path> {
        Some(&self.0)
    }

    fn open(&self, cx: &AlertContext) -> Result<Box<dyn AlertSink>, AlertError> {
        Ok(Box::new(FileSink::open(&self.0, cx.rotation)?))
    }
}

/// `--alerts FILE`: one JSON document per line, size-rotated.
pub struct FileSink {
    file: RotatingFile,
    line: Vec<u8>,
}

impl FileSink {
    pub fn open(path: &Path, rotation: RotationConfig) -> Result<FileSink, AlertError> {
        Ok(FileSink {
            file: RotatingFile::open(path, rotation)?,
            line: Vec::with_capacity(4096),
        })
    }
}

impl AlertSink for FileSink {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn deliver(&mut self, _event: &AlertEvent, json: &[u8]) -> Result<(), AlertError> {
        self.line.clear();
        self.line.extend_from_slice(json);
        self.line.push(b'\n');
        self.file.append(&self.line)?;
        // Alerts are rare and must survive a crash: flush each one.
        self.file.flush()?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AlertError> {
        Ok(self.file.flush()?)
    }
}
