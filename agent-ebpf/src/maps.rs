//! The maps shared with the agent. Names are part of the contract with
//! `agent/src/kernel/sensor.rs`.

use agent_common::{
    app::{APP_RING_BYTES, FOLLOW_TABLE_ENTRIES, FollowKey, FollowState},
    capture::{CaptureConfig, DEFAULT_CAPTURE_RING_BYTES, MAX_QUEUES},
    config::{SAMPLES_RING_BYTES, SEEN_FLOW_SLOTS, SamplerConfig},
    counters::CpuState,
    filter::{FilterInput, FilterTable},
    parse::Parsed,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf, XskMap},
};

/// Adds to a per-CPU counter of [`COUNTERS`] (wraps, like the kernel's own
/// counters, rather than trapping).
#[inline(always)]
pub(crate) fn bump(c: &mut u64, by: u64) {
    *c = c.wrapping_add(by);
}

/// Exact counters and sampler position, one entry per CPU.
#[map]
pub static COUNTERS: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// Sampling configuration written by the agent (entry 0).
#[map]
pub static CONFIG: Array<SamplerConfig> = Array::with_max_entries(1, 0);

/// Recently seen flows: slot = keyed flow hash, value = a tag from the
/// hash's upper half (0 = empty). Shared by the CPUs (a flow may move
/// between them); a lost race only costs one extra first-packet record.
#[map]
pub static SEEN_FLOWS: Array<u32> = Array::with_max_entries(SEEN_FLOW_SLOTS, 0);

/// Sampled header records for the agent.
#[map]
pub static SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLES_RING_BYTES, 0);

/// Capture settings written by the agent (entry 0); snaplen 0 = off.
#[map]
pub static CAPTURE_CONFIG: Array<CaptureConfig> = Array::with_max_entries(1, 0);

/// Two capture filter tables; `CAPTURE_CONFIG.filter_slot` names the one in
/// force.
#[map]
pub static FILTERS: Array<FilterTable> = Array::with_max_entries(2, 0);

/// Captured frames (header + first snaplen bytes). The agent may resize it
/// before loading.
#[map]
pub static CAPTURES: RingBuf = RingBuf::with_byte_size(DEFAULT_CAPTURE_RING_BYTES, 0);

/// Per-CPU scratch for the capture filter's input (see `capture.rs`).
#[map]
pub static FILTER_INPUT: PerCpuArray<FilterInput> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU copy of the frame's parse, length and first buffer's length
/// (see `sensor.rs`).
#[map]
pub static PARSED: PerCpuArray<(Parsed, u64, u64)> = PerCpuArray::with_max_entries(1, 0);

/// AF_XDP sockets by receive queue (capture with `af_xdp` set).
#[map]
pub static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

/// When the AF_XDP reader last showed life (monotonic ns, entry 0).
#[map]
pub static XSK_HEARTBEAT: Array<u64> = Array::with_max_entries(1, 0);

/// Frames selected for application metadata (TLS and QUIC handshakes,
/// DNS), whole up to `APP_SNAPLEN`, in the capture record layout.
#[map]
pub static APP_FRAMES: RingBuf = RingBuf::with_byte_size(APP_RING_BYTES, 0);

/// Handshakes whose hello continues in later segments, by the sending
/// direction of their flow (see `app.rs`).
#[map]
pub static FOLLOW: LruHashMap<FollowKey, FollowState> =
    LruHashMap::with_max_entries(FOLLOW_TABLE_ENTRIES, 0);
