//! Packet capture: the filter language, the capture ring's records and
//! the pcapng/pcap writers with rotation.

mod encode;
mod files;
pub mod filter;
mod record;

pub use encode::{Encoder, Format, Frame, Interface, InterfaceStats};
pub use files::{CaptureDir, CaptureFilesError, DirConfig, FileMetrics, prepare_dir};
pub use filter::{CaptureFilter, FilterError};
pub use record::decode_capture;
