//! Packet capture: the filter language, the capture ring's records and
//! the pcapng/pcap writers with rotation.

pub mod afxdp;
pub mod consumer;
mod encode;
mod files;
pub mod filter;
pub mod flight;
pub mod live;
mod record;
pub mod settings;

pub use encode::{Encoder, Format, Frame, Interface, InterfaceStats};
pub use files::{CaptureDir, CaptureFilesError, Destination, DirConfig, FileMetrics, prepare_dir};
pub use filter::{CaptureFilter, FilterError};
pub use record::decode_capture;
