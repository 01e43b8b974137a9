//! JSON lines with Elastic Common Schema field names, one object per flow,
//! ready for Elasticsearch/OpenSearch ingest or Loki.

use std::path::Path;

use serde_json::{Map, Value, json};

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

/// The ECS document of one flow. Counts are the sampling-scaled
/// estimates; the raw sampled counts and the rate are under `nta.flow`.
pub fn ecs_document(f: &FlowRecord) -> Value {
    let s = &f.stats;
    let mut source = Map::new();
    source.insert("ip".into(), json!(f.key.src_ip().to_string()));
    source.insert("packets".into(), json!(s.estimated_packets));
    source.insert("bytes".into(), json!(s.estimated_bytes));
    let mut destination = Map::new();
    destination.insert("ip".into(), json!(f.key.dst_ip().to_string()));
    if f.key.has_ports() && !f.is_icmp() {
        source.insert("port".into(), json!(f.key.src_port));
        destination.insert("port".into(), json!(f.key.dst_port));
    }
    let mut network = json!({
        "transport": f.transport(),
        "iana_number": f.key.protocol.to_string(),
        "type": if f.key.ip_version == 4 { "ipv4" } else { "ipv6" },
        "packets": s.estimated_packets,
        "bytes": s.estimated_bytes,
    });
    if let Some(id) = &f.community_id {
        network["community_id"] = json!(id);
    }
    if f.key.vlan_id != 0 {
        network["vlan"] = json!({ "id": f.key.vlan_id.to_string() });
    }
    let mut nta = json!({
        "flow": {
            "sampled_packets": s.sampled_packets,
            "sampled_bytes": s.sampled_bytes,
            "sampling_rate": s.sampling_rate,
            "ttl": { "min": s.min_ttl, "max": s.max_ttl },
            "biflow": f.reverse_seen,
        }
    });
    if f.key.protocol == 6 {
        nta["flow"]["tcp_flags"] = json!(f.tcp_flags_text());
    }
    if f.is_icmp() {
        nta["icmp"] = json!({ "type": f.key.src_port, "code": f.key.dst_port });
    }
    json!({
        "@timestamp": rfc3339(f.end_unix_ns),
        "ecs": { "version": "8.11.0" },
        "event": {
            "kind": "event",
            "category": ["network"],
            "type": ["connection", "end"],
            "action": "flow_expired",
            "reason": f.reason.label(),
            "dataset": "nta.flow",
            "start": rfc3339(f.start_unix_ns),
            "end": rfc3339(f.end_unix_ns),
            "duration": f.end_unix_ns.saturating_sub(f.start_unix_ns),
        },
        "source": source,
        "destination": destination,
        "network": network,
        "observer": { "ingress": { "interface": { "name": f.interface } }, "type": "sensor", "product": "nta" },
        "nta": nta,
    })
}

impl FlowExporter for JsonlExporter {
    fn kind(&self) -> &'static str {
        "jsonl"
    }

    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError> {
        for f in flows {
            self.buf.clear();
            // Serialising a Value into a Vec cannot fail.
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
