//! Application metadata logs: `--tls-log FILE` and `--dns-log FILE`,
//! JSON lines with Elastic Common Schema fields, rotated like the flow
//! files. The parts every document shares are here; each log's own
//! fields are in its module.

pub mod dns;
pub mod tls;

use std::{collections::HashMap, path::Path};

use serde::Serialize;

use crate::{
    output::export::{
        ExportError, rfc3339,
        rotate::{RotatingFile, RotationConfig},
    },
    pipeline::flow::{Directions, FlowKey},
};

/// A document: what every metadata document carries, then its own
/// fields (`body`, flattened in).
#[derive(Serialize)]
pub(crate) struct Document<'a, B: Serialize> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    ecs: Ecs,
    event: Event,
    network: Network,
    source: Endpoint,
    destination: Endpoint,
    #[serde(skip_serializing_if = "Option::is_none")]
    observer: Option<Observer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Log<'a>>,
    related: Related,
    #[serde(flatten)]
    body: B,
}

#[derive(Serialize)]
pub(crate) struct Related {
    ip: Vec<String>,
}

impl<'a, B: Serialize> Document<'a, B> {
    /// A document about an exchange seen at `unix_ns` on `ifindex`;
    /// `also_related`: addresses it names besides its two ends (DNS
    /// answers).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unix_ns: u64,
        ifindex: u32,
        origin: &'a Origin<'a>,
        event: Event,
        network: Network,
        (source, destination): (Endpoint, Endpoint),
        also_related: &[String],
        body: B,
    ) -> Document<'a, B> {
        let mut ip = vec![source.ip.clone(), destination.ip.clone()];
        for a in also_related {
            if !ip.contains(a) {
                ip.push(a.clone());
            }
        }
        Document {
            timestamp: rfc3339(unix_ns),
            ecs: ECS,
            event,
            network,
            source,
            destination,
            observer: origin.observer(ifindex),
            log: origin.log(ifindex),
            related: Related { ip },
            body,
        }
    }

    /// Appends the document as JSON (no newline).
    pub fn write(&self, out: &mut Vec<u8>) {
        // Serializing plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

/// The ECS version the documents follow.
pub(crate) const ECS_VERSION: &str = "8.11.0";

#[derive(Serialize)]
pub(crate) struct Ecs {
    version: &'static str,
}

pub(crate) const ECS: Ecs = Ecs {
    version: ECS_VERSION,
};

#[derive(Serialize)]
pub(crate) struct Event {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kinds: [&'static str; 1],
    action: &'static str,
    dataset: &'static str,
    /// Nanoseconds, where the document times an exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

impl Event {
    /// An application-protocol event of `dataset` ("nta.tls").
    pub fn protocol(action: &'static str, dataset: &'static str, duration: Option<u64>) -> Event {
        Event {
            kind: "event",
            category: ["network"],
            kinds: ["protocol"],
            action,
            dataset,
            duration,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Network {
    pub transport: &'static str,
    pub protocol: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    pub direction: &'static str,
}

impl Network {
    /// The network fields of a connection from `client`, whose
    /// application protocol is `protocol`.
    pub fn of(client: &FlowKey, protocol: &'static str, directions: &Directions) -> Network {
        Network {
            direction: directions.of(client).label(),
            transport: if client.protocol == 6 { "tcp" } else { "udp" },
            protocol,
            kind: if client.ip_version == 4 {
                "ipv4"
            } else {
                "ipv6"
            },
            community_id: client.community_id(),
        }
    }
}

#[derive(Serialize)]
pub(crate) struct Endpoint {
    pub ip: String,
    pub port: u16,
    /// Bytes this end sent, where the document counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

impl Endpoint {
    /// Client and server ends of `client`'s connection.
    pub fn pair(client: &FlowKey) -> (Endpoint, Endpoint) {
        (
            Endpoint {
                ip: client.src_ip().to_string(),
                port: client.src_port,
                bytes: None,
            },
            Endpoint {
                ip: client.dst_ip().to_string(),
                port: client.dst_port,
                bytes: None,
            },
        )
    }
}

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
    hostname: &'static str,
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
            hostname: crate::output::hostname(),
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

/// The metadata logs a run or an analysis writes.
#[derive(Default)]
pub struct MetadataLogs {
    pub tls: Option<MetadataLog>,
    pub dns: Option<MetadataLog>,
}

impl MetadataLogs {
    /// Opens the logs asked for (`--tls-log`, `--dns-log`); the error
    /// names the option.
    pub fn open(
        tls: Option<&Path>,
        dns: Option<&Path>,
        rotation: RotationConfig,
    ) -> Result<MetadataLogs, MetadataLogError> {
        let open = |path: Option<&Path>, option: &'static str| {
            path.map(|p| MetadataLog::open(p, rotation))
                .transpose()
                .map_err(|source| MetadataLogError { option, source })
        };
        Ok(MetadataLogs {
            tls: open(tls, "--tls-log")?,
            dns: open(dns, "--dns-log")?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{option}")]
pub struct MetadataLogError {
    option: &'static str,
    #[source]
    source: ExportError,
}

/// A metadata log (TLS or DNS): one JSON document per line.
pub struct MetadataLog {
    file: RotatingFile,
    buf: Vec<u8>,
}

impl MetadataLog {
    pub fn open(path: &Path, rotation: RotationConfig) -> Result<MetadataLog, ExportError> {
        Ok(MetadataLog {
            file: RotatingFile::open(path, rotation)?,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Appends the document `document` writes (without its newline).
    pub fn write(&mut self, document: impl FnOnce(&mut Vec<u8>)) -> Result<(), ExportError> {
        self.buf.clear();
        document(&mut self.buf);
        self.buf.push(b'\n');
        self.file.append(&self.buf)?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush()
    }
}
