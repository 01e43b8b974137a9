//! CSV flow records with a header row in every file (rotation included),
//! for spreadsheets and pandas. Columns come from the flow-field table.

use std::path::Path;

use super::{
    ExportError, FlowExporter, fields,
    record::FlowRecord,
    rotate::{RotatingFile, RotationConfig},
};

pub struct CsvExporter {
    file: RotatingFile,
}

impl CsvExporter {
    pub fn open(path: &Path, rotation: RotationConfig) -> Result<CsvExporter, ExportError> {
        Ok(CsvExporter {
            file: RotatingFile::with_header(path, rotation, encode_row(fields::csv_header())?)?,
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

impl FlowExporter for CsvExporter {
    fn kind(&self) -> &'static str {
        "csv"
    }

    fn export(&mut self, flows: &[FlowRecord]) -> Result<(), ExportError> {
        for f in flows {
            self.file.append(&encode_row(fields::csv_row(f))?)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        self.file.flush()
    }
}
