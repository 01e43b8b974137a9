//! nta's benchmarks and lab traffic generator, as a library for the
//! `nta-bench` binary and for the generator's smoke test.

pub mod compare;
pub mod detect;
pub mod detect_latency;
pub mod eval;
pub mod fastnetmon;
pub mod flows;
pub mod generator;
pub mod live;
pub mod metadata;
pub mod mixes;
pub mod packet_socket;
pub mod report;
pub mod tls_live;
pub mod xdp_cost;
