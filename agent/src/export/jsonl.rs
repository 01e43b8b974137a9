//! JSON lines with Elastic Common Schema field names, one object per flow,
//! ready for Elasticsearch/OpenSearch ingest or Loki.

use std::path::Path;

use serde::Serialize;

use super::{
    ExportError, FlowExporter,
    record::{FlowRecord, rfc3339},
    rotate::{RotatingFile, RotationConfig},
};

pub struct JsonlExporter {
    file: RotatingFile,
    buf: Vec<u8>,
}

impl JsonlExporter {
    pub fn open(path: &Path, rotation: RotationConfig) -> Result<JsonlExporter, ExportError> {
        Ok(JsonlExporter {
            file: RotatingFile::open(path, rotation)?,
            buf: Vec::with_capacity(64 << 10),
        })
    }
}

// The ECS document, as typed structs: serialising these is several times
// faster than building a serde_json::Value per flow.

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    ecs: Ecs,
    event: Event,
    source: Endpoint,
    destination: Endpoint,
    network: Network<'a>,
    observer: Observer<'a>,
    nta: Nta,
}

#[derive(Serialize)]
struct Ecs {
    version: &'static str,
}

#[derive(Serialize)]
struct Event {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    kinds: [&'static str; 2],
    action: &'static str,
    reason: &'static str,
    dataset: &'static str,
    start: String,
    end: String,
    duration: u64,
}

#[derive(Serialize)]
struct Endpoint {
    ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packets: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
}

#[derive(Serialize)]
struct Network<'a> {
    transport: String,
    iana_number: String,
    #[serde(rename = "type")]
    kind: &'static str,
    packets: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    community_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<Vlan>,
}

#[derive(Serialize)]
struct Vlan {
    id: String,
}

#[derive(Serialize)]
struct Observer<'a> {
    ingress: Ingress<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    product: &'static str,
}

#[derive(Serialize)]
struct Ingress<'a> {
    interface: Named<'a>,
}

#[derive(Serialize)]
struct Named<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct Nta {
    flow: NtaFlow,
    #[serde(skip_serializing_if = "Option::is_none")]
    icmp: Option<Icmp>,
}

#[derive(Serialize)]
struct NtaFlow {
    sampled_packets: u64,
    sampled_bytes: u64,
    sampling_rate: u32,
    ttl: Ttl,
    biflow: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_flags: Option<String>,
}

#[derive(Serialize)]
struct Ttl {
    min: u8,
    max: u8,
}

#[derive(Serialize)]
struct Icmp {
    #[serde(rename = "type")]
    kind: u16,
    code: u16,
}

/// The ECS document of one flow. Counts are the sampling-scaled
/// estimates; the raw sampled counts and the rate are under `nta.flow`.
fn ecs_document(f: &FlowRecord) -> Document<'_> {
    let s = &f.stats;
    let ports = f.key.has_ports() && !f.is_icmp();
    Document {
        timestamp: rfc3339(f.end_unix_ns),
        ecs: Ecs { version: "8.11.0" },
        event: Event {
            kind: "event",
            category: ["network"],
            kinds: ["connection", "end"],
            action: "flow_expired",
            reason: f.reason.label(),
            dataset: "nta.flow",
            start: rfc3339(f.start_unix_ns),
            end: rfc3339(f.end_unix_ns),
            duration: f.end_unix_ns.saturating_sub(f.start_unix_ns),
        },
        source: Endpoint {
            ip: f.key.src_ip().to_string(),
            port: ports.then_some(f.key.src_port),
            packets: Some(s.estimated_packets),
            bytes: Some(s.estimated_bytes),
        },
        destination: Endpoint {
            ip: f.key.dst_ip().to_string(),
            port: ports.then_some(f.key.dst_port),
            packets: None,
            bytes: None,
        },
        network: Network {
            transport: f.transport(),
            iana_number: f.key.protocol.to_string(),
            kind: if f.key.ip_version == 4 {
                "ipv4"
            } else {
                "ipv6"
            },
            packets: s.estimated_packets,
            bytes: s.estimated_bytes,
            community_id: f.community_id.as_deref(),
            vlan: (f.key.vlan_id != 0).then(|| Vlan {
                id: f.key.vlan_id.to_string(),
            }),
        },
        observer: Observer {
            ingress: Ingress {
                interface: Named { name: &f.interface },
            },
            kind: "sensor",
            product: "nta",
        },
        nta: Nta {
            flow: NtaFlow {
                sampled_packets: s.sampled_packets,
                sampled_bytes: s.sampled_bytes,
                sampling_rate: s.sampling_rate,
                ttl: Ttl {
                    min: s.min_ttl,
                    max: s.max_ttl,
                },
                biflow: f.reverse_seen,
                tcp_flags: (f.key.protocol == 6).then(|| f.tcp_flags_text()),
            },
            icmp: f.is_icmp().then_some(Icmp {
                kind: f.key.src_port,
                code: f.key.dst_port,
            }),
        },
    }
}

impl FlowExporter for JsonlExporter {
    fn kind(&self) -> &'static str {
        "jsonl"
    }

    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError> {
        for f in flows {
            self.buf.clear();
            // Serialising plain structs into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.buf, &ecs_document(f));
            self.buf.push(b'\n');
            self.file.append(&self.buf)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush()
    }
}
