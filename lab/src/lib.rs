//! Lab support for nta's tests, demo and benchmarks: crafted frames, network
//! namespaces and veth pairs that clean up after themselves, and a raw
//! AF_PACKET sender. Everything here stays inside 198.18.0.0/15 and fd00::/8.

pub mod attack;
pub mod cases;
pub mod dns;
pub mod frames;
pub mod mix;
pub mod netns;
pub mod programs;
pub mod scrape;
pub mod send;
pub mod tls;

pub use netns::{LabError, NetNs, VethPair, privileged};
