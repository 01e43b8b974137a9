//! JSON lines with Elastic Common Schema field names, one object per flow,
//! ready for Elasticsearch/OpenSearch ingest or Loki. The document's
//! fields come from the flow-field table: estimated counts in `source` and
//! `network`, the sampled counts and rate under `nta.flow`.

use std::path::Path;

use super::{
    ExportError, FlowExporter, fields,
    record::FlowRecord,
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

impl FlowExporter for JsonlExporter {
    fn kind(&self) -> &'static str {
        "jsonl"
    }

    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError> {
        for f in flows {
            self.buf.clear();
            fields::write_json(f, &mut self.buf);
            self.buf.push(b'\n');
            self.file.append(&self.buf)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush()
    }
}
