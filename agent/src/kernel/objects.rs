//! The compiled XDP objects, embedded at build time by `build.rs`.

/// The sensor program (`agent-ebpf/src/main.rs`).
pub static NTA_XDP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nta"));

/// Baseline programs for benchmarks (`agent-ebpf/src/baseline.rs`).
pub static BASELINE_XDP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/baseline"));

/// Name of the sensor's XDP entry point.
pub const NTA_PROGRAM: &str = "nta";

/// True when this binary was built with `AYA_BUILD_SKIP` and carries no
/// loadable program.
pub fn is_placeholder() -> bool {
    NTA_XDP.is_empty()
}
