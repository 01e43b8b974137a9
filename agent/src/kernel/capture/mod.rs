//! Capture on the kernel side: the filter language compiled into the
//! program's filter map, and the two sources of captured frames (the
//! capture ring buffer, and AF_XDP sockets on dedicated ports), each
//! handing frames to a [`consumer::FrameSink`]; the writers are in
//! `output::capture`.

pub mod afxdp;
pub mod consumer;
pub mod filter;
mod record;

pub use consumer::Frame;
pub use filter::{CaptureFilter, FilterError};
pub use record::decode_capture;
