//! Flow exporters: JSON lines (Elastic Common Schema) and CSV files with
//! size rotation, and IPFIX (a component with its own section, see
//! [`crate::output::component`]). Each writes whole records; a failing destination counts
//! its errors and never blocks the flow pipeline.

mod csv_file;
pub mod fields;
mod ipfix;
mod jsonl;
mod record;
pub(crate) mod rotate;

use std::path::{Path, PathBuf};

use crate::output::component::SameConfig;

pub use csv_file::CsvExporter;
pub use ipfix::{IpfixConfig, IpfixError, IpfixExporter, IpfixSection, resolve_collector};
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
    #[error(transparent)]
    Ipfix(#[from] IpfixError),
    #[error("encoding a flow as CSV")]
    Csv(#[from] csv::Error),
    #[error("{}: unknown flow file type; {}", .0.display(), known_formats())]
    UnknownFormat(PathBuf),
}

/// "name it .jsonl (or .ndjson, .json) for JSON lines or .csv for CSV",
/// from the format table.
fn known_formats() -> String {
    let each: Vec<String> = FILE_FORMATS
        .iter()
        .map(|f| {
            let (first, rest) = f.extensions.split_first().unwrap_or((&"", &[]));
            let others = if rest.is_empty() {
                String::new()
            } else {
                format!(" (or .{})", rest.join(", ."))
            };
            format!(".{first}{others} for {}", f.name)
        })
        .collect();
    format!("name it {}", each.join(" or "))
}

/// Something that takes expired flows.
pub trait FlowExporter: Send {
    /// A short name for metrics (`jsonl`, `csv`, `ipfix`).
    fn kind(&self) -> &'static str;
    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError>;
    fn flush(&mut self) -> Result<(), ExportError>;
}

/// What opening a flow exporter may need besides its own section.
#[derive(Clone, Debug, Default)]
pub struct FlowContext {
    /// (ifindex, data sampling interval) of every watched interface.
    pub data_sampling: Vec<(u32, u32)>,
}

/// A flow exporter's merged section.
pub trait FlowOutput: SameConfig + std::fmt::Debug + Send + Sync {
    /// Its config key, for errors (`flows.ipfix`).
    fn key(&self) -> &'static str;
    /// Checks what the option types cannot (the same for flags and file).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// The exporter, or `None` when the section leaves it off.
    fn open(&self, cx: &FlowContext) -> Result<Option<Box<dyn FlowExporter>>, ExportError>;
    /// Whether the exporter tells its collector the data sampling rate, so
    /// a new rate must reopen it.
    fn announces_sampling_rate(&self) -> bool {
        false
    }
}

/// Opens a file exporter at a path with a rotation policy.
pub type OpenFile = fn(&Path, RotationConfig) -> Result<Box<dyn FlowExporter>, ExportError>;

/// A flow file format: the file extensions that select it and how to open
/// an exporter writing it. A new file exporter is its module plus one row
/// of [`FILE_FORMATS`].
pub struct FileFormat {
    pub name: &'static str,
    pub extensions: &'static [&'static str],
    pub open: OpenFile,
}

/// Every flow file format `--flows FILE` can write.
pub static FILE_FORMATS: &[FileFormat] = &[
    FileFormat {
        name: "JSON lines",
        extensions: &["jsonl", "ndjson", "json"],
        open: |path, rotation| Ok(Box::new(JsonlExporter::open(path, rotation)?)),
    },
    FileFormat {
        name: "CSV",
        extensions: &["csv"],
        open: |path, rotation| Ok(Box::new(CsvExporter::open(path, rotation)?)),
    },
];

/// The format a `--flows FILE` asks for, by file extension.
pub fn flow_file_format(path: &Path) -> Result<&'static FileFormat, ExportError> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    FILE_FORMATS
        .iter()
        .find(|f| f.extensions.contains(&extension))
        .ok_or_else(|| ExportError::UnknownFormat(path.to_path_buf()))
}

/// Opens the exporter a `--flows FILE` asks for, by file extension.
pub fn open_flow_file(
    path: &Path,
    rotation: RotationConfig,
) -> Result<Box<dyn FlowExporter>, ExportError> {
    (flow_file_format(path)?.open)(path, rotation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension_and_a_clear_error_otherwise() {
        assert_eq!(
            flow_file_format(Path::new("/x/f.ndjson"))
                .map(|f| f.name)
                .ok(),
            Some("JSON lines")
        );
        assert_eq!(
            flow_file_format(Path::new("f.csv")).map(|f| f.name).ok(),
            Some("CSV")
        );
        let err = flow_file_format(Path::new("/tmp/f.txt"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "/tmp/f.txt: unknown flow file type; name it .jsonl (or .ndjson, .json) for JSON lines or .csv for CSV"
        );
    }
}
