//! Capture on the output side: pcapng/pcap encoding, rotating capture
//! files, the flight recorder, and how `nta run` wires capture up. The
//! frames come from `kernel::capture`.

mod encode;
mod files;
pub mod flight;
pub mod live;
pub mod settings;

pub use encode::{Encoder, Format, Interface, InterfaceStats};
pub use files::{CaptureDir, CaptureFilesError, Destination, DirConfig, FileMetrics, prepare_dir};
