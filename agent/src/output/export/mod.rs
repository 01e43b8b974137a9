//! Flow exporters: JSON lines (Elastic Common Schema) and CSV files with
//! size rotation. Each writes whole records; a failing destination counts
//! its errors and never blocks the flow pipeline.

mod csv_file;
pub mod fields;
mod ipfix;
mod jsonl;
mod record;
mod rotate;

use std::path::{Path, PathBuf};

pub use csv_file::CsvExporter;
pub use ipfix::{IpfixConfig, IpfixExporter, resolve_collector};
pub use jsonl::JsonlExporter;
pub use record::{FlowRecord, WallClock, monotonic_now_ns, rfc3339};
pub use rotate::{RotatingFile, RotationConfig};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("IPFIX collector {collector}")]
    Collector {
        collector: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding IPFIX: {0}")]
    Encode(String),
    #[error("encoding a flow as CSV")]
    Csv(#[from] csv::Error),
    #[error(
        "{0}: unknown flow file type; name it .jsonl (or .ndjson, .json) for JSON lines or .csv for CSV"
    )]
    UnknownFormat(PathBuf),
}

/// Something that takes expired flows.
pub trait FlowExporter: Send {
    /// A short name for metrics (`jsonl`, `csv`, `ipfix`).
    fn kind(&self) -> &'static str;
    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError>;
    fn flush(&mut self) -> Result<(), ExportError>;
}

/// The formats a flow file can have, by its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFileFormat {
    Jsonl,
    Csv,
}

/// The format a `--flows FILE` asks for, by file extension.
pub fn flow_file_format(path: &Path) -> Result<FlowFileFormat, ExportError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl" | "ndjson" | "json") => Ok(FlowFileFormat::Jsonl),
        Some("csv") => Ok(FlowFileFormat::Csv),
        _ => Err(ExportError::UnknownFormat(path.to_path_buf())),
    }
}

/// Opens the exporter a `--flows FILE` asks for, by file extension.
pub fn open_flow_file(
    path: &Path,
    rotation: RotationConfig,
) -> Result<Box<dyn FlowExporter>, ExportError> {
    Ok(match flow_file_format(path)? {
        FlowFileFormat::Jsonl => Box::new(JsonlExporter::open(path, rotation)?),
        FlowFileFormat::Csv => Box::new(CsvExporter::open(path, rotation)?),
    })
}
