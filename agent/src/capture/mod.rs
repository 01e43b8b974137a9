//! Packet capture: the filter language, the capture ring's records and
//! the pcapng/pcap writers with rotation.

pub mod filter;
mod record;

pub use filter::{CaptureFilter, FilterError};
pub use record::decode_capture;
