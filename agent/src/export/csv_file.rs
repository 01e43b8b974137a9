//! CSV flow records with a header row in every file (rotation included),
//! for spreadsheets and pandas.

use std::path::Path;

use super::{
    ExportError, FlowExporter,
    record::{FlowRecord, rfc3339},
    rotate::{RotatingFile, RotationConfig},
};

pub const HEADER: [&str; 22] = [
    "start",
    "end",
    "duration_ms",
    "interface",
    "vlan",
    "ip_version",
    "protocol",
    "src_ip",
    "src_port",
    "dst_ip",
    "dst_port",
    "packets",
    "bytes",
    "sampled_packets",
    "sampled_bytes",
    "sampling_rate",
    "tcp_flags",
    "min_ttl",
    "max_ttl",
    "end_reason",
    "biflow",
    "community_id",
];

pub struct CsvExporter {
    file: RotatingFile,
}

impl CsvExporter {
    pub fn open(path: &Path, rotation: RotationConfig) -> Result<CsvExporter, ExportError> {
        Ok(CsvExporter {
            file: RotatingFile::with_header(path, rotation, encode_row(HEADER)?)?,
        })
    }
}

fn encode_row<I, T>(fields: I) -> Result<Vec<u8>, ExportError>
where
    I: IntoIterator<Item = T>,
    T: AsRef<[u8]>,
{
    let mut w = csv::Writer::from_writer(Vec::with_capacity(256));
    w.write_record(fields)?;
    w.into_inner()
        .map_err(|e| ExportError::Csv(csv::Error::from(e.into_error())))
}

fn row(f: &FlowRecord) -> [String; 22] {
    let s = &f.stats;
    let ports = f.key.has_ports() && !f.is_icmp();
    let port = |p: u16| if ports { p.to_string() } else { String::new() };
    [
        rfc3339(f.start_unix_ns),
        rfc3339(f.end_unix_ns),
        (f.end_unix_ns.saturating_sub(f.start_unix_ns) / 1_000_000).to_string(),
        f.interface.clone(),
        f.key.vlan_id.to_string(),
        f.key.ip_version.to_string(),
        f.transport(),
        f.key.src_ip().to_string(),
        port(f.key.src_port),
        f.key.dst_ip().to_string(),
        port(f.key.dst_port),
        s.estimated_packets.to_string(),
        s.estimated_bytes.to_string(),
        s.sampled_packets.to_string(),
        s.sampled_bytes.to_string(),
        s.sampling_rate.to_string(),
        f.tcp_flags_text(),
        s.min_ttl.to_string(),
        s.max_ttl.to_string(),
        f.reason.label().to_string(),
        f.reverse_seen.to_string(),
        f.community_id.clone().unwrap_or_default(),
    ]
}

impl FlowExporter for CsvExporter {
    fn kind(&self) -> &'static str {
        "csv"
    }

    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError> {
        for f in flows {
            self.file.append(&encode_row(row(f))?)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush()
    }
}
