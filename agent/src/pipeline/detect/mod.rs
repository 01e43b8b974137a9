//! Detection: scans, sweeps, floods and volume anomalies found in the
//! sample stream, and DNS and TLS findings from the application step
//! ([`payload`]), turned into incidents.
//!
//! Every detector sits behind [`Detector`] and sees the same
//! [`SampleRecord`]s as the flow table, in record time (the kernel's
//! monotonic clock live, the packets' own timestamps offline), so tests and
//! offline analysis drive time themselves. Detectors are sampling-aware:
//! each record counts as `sample_rate` packets. Memory is fixed: every
//! per-key table is a bounded [`tracked::Tracked`] map.

pub mod budget;
pub mod config;
pub mod engine;
pub mod finding;
pub mod flood;
pub mod incident;
pub mod payload;
pub mod profile;
pub mod scan;
pub mod sliding;
pub mod tracked;
pub mod volume;
pub mod window;

use agent_common::sample::SampleRecord;

pub use crate::pipeline::flow::FlowNote;
pub use config::{DetectConfig, DetectConfigError, HostGroup};
pub use engine::{Engine, EngineCounters};
pub use finding::{DetectorKind, Deviation, Evidence, Finding, Severity, Subject, Unit};
pub use incident::{AlertEvent, Incidents, Transition};

/// Nanoseconds per second.
pub const NS: u64 = 1_000_000_000;

/// One detector. `observe` sees every sample with what the flow table
/// said about it (whether it started a flow, how the flow began);
/// `advance` tells
/// it that record time reached `now_ns` (called at least every few
/// hundred milliseconds), so windows can close even when traffic stops.
pub trait Detector: Send {
    fn kind(&self) -> DetectorKind;
    fn observe(&mut self, r: &SampleRecord, flow: FlowNote, out: &mut Vec<Finding>);
    fn advance(&mut self, now_ns: u64, out: &mut Vec<Finding>);
    /// Keys held now, and keys evicted so far to stay within the bound.
    fn tracked(&self) -> (usize, u64);
}

/// A record's source and destination as IPv6 (IPv4 mapped), the key type.
pub type Addr = [u8; 16];

/// The address as users read it: IPv4-mapped addresses print as IPv4.
pub fn display_addr(a: &Addr) -> std::net::IpAddr {
    std::net::Ipv6Addr::from(*a).to_canonical()
}
