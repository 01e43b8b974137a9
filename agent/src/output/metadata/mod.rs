//! Application metadata logs: `--tls-log FILE` (and DNS next), JSON lines
//! with Elastic Common Schema fields, rotated like the flow files.

pub mod tls;

use std::{collections::HashMap, path::Path};

use serde::Serialize;

use crate::{
    app::handshakes::Handshake,
    output::export::{
        ExportError,
        rotate::{RotatingFile, RotationConfig},
    },
};

/// Where the documents come from: a live sensor's interfaces, or a file.
pub enum Origin<'a> {
    /// Interface names by ifindex.
    Interfaces(&'a HashMap<u32, String>),
    /// `nta analyze`: the files' paths, frames of file i carry ifindex
    /// i + 1.
    Files(&'a [String]),
}

#[derive(Serialize)]
pub(crate) struct Observer<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    product: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress: Option<Ingress<'a>>,
}

#[derive(Serialize)]
pub(crate) struct Ingress<'a> {
    interface: Name<'a>,
}

#[derive(Serialize)]
pub(crate) struct Name<'a> {
    name: &'a str,
}

#[derive(Serialize)]
pub(crate) struct Log<'a> {
    file: FilePath<'a>,
}

#[derive(Serialize)]
pub(crate) struct FilePath<'a> {
    path: &'a str,
}

impl Origin<'_> {
    fn observer(&self, ifindex: u32) -> Option<Observer<'_>> {
        let ingress = match self {
            Origin::Interfaces(names) => names.get(&ifindex).map(|n| Ingress {
                interface: Name { name: n },
            }),
            Origin::Files(_) => None,
        };
        Some(Observer {
            kind: "sensor",
            product: "nta",
            ingress,
        })
    }

    fn log(&self, ifindex: u32) -> Option<Log<'_>> {
        match self {
            Origin::Files(paths) => {
                let path = paths.get((ifindex as usize).checked_sub(1)?)?;
                Some(Log {
                    file: FilePath { path },
                })
            }
            Origin::Interfaces(_) => None,
        }
    }
}

/// The TLS log: one JSON document per handshake.
pub struct TlsLog {
    file: RotatingFile,
    buf: Vec<u8>,
    written: u64,
}

impl TlsLog {
    pub fn open(path: &Path, rotation: RotationConfig) -> Result<TlsLog, ExportError> {
        Ok(TlsLog {
            file: RotatingFile::open(path, rotation)?,
            buf: Vec::with_capacity(4096),
            written: 0,
        })
    }

    pub fn write(&mut self, h: &Handshake, origin: &Origin<'_>) -> Result<(), ExportError> {
        self.buf.clear();
        tls::write(h, origin, &mut self.buf);
        self.buf.push(b'\n');
        self.file.append(&self.buf)?;
        self.written += 1;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush()
    }

    /// Documents written so far.
    pub fn written(&self) -> u64 {
        self.written
    }
}
