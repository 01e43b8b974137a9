//! Offline analysis: capture files through the live pipeline, a terminal
//! summary, and a visual report.

pub mod analyze;
pub mod capture;
pub mod link;
pub mod report;
pub mod summary;
pub mod timeline;

pub use analyze::{Analysis, AnalyzeError, AnalyzeOptions, analyze};
