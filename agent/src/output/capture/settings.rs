//! What capture inside `nta run` is configured with, as resolved from
//! flags and the config file (by `crate::config::settings`).

use std::{path::PathBuf, time::Duration};

/// `--capture DIR` and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSettings {
    /// Rotating capture files (None: only the flight recorder captures).
    pub dir: Option<PathBuf>,
    pub flight: Option<FlightSettings>,
    /// Compiled when applied (an error refuses the start or reload).
    pub filter: String,
    pub snaplen: u32,
    pub format: super::Format,
    pub file_bytes: u64,
    pub file_age: Option<Duration>,
    pub max_bytes: u64,
    pub ring_mib: u32,
    /// Frames through AF_XDP sockets instead of the capture ring.
    pub af_xdp: bool,
}

/// `--flight-recorder DIR` and its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlightSettings {
    pub dir: PathBuf,
    pub before: Duration,
    pub after: Duration,
    pub memory_mib: u32,
    /// Disk for incident files (oldest deleted past it).
    pub max_bytes: u64,
}
