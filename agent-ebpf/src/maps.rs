//! The maps shared with the agent. Names are part of the contract with
//! `agent/src/sensor.rs`.

use agent_common::{config::SAMPLES_RING_BYTES, config::SamplerConfig, counters::CpuState};
use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};

/// Exact counters and sampler position, one entry per CPU.
#[map]
pub static COUNTERS: PerCpuArray<CpuState> = PerCpuArray::with_max_entries(1, 0);

/// Sampling configuration written by the agent (entry 0).
#[map]
pub static CONFIG: Array<SamplerConfig> = Array::with_max_entries(1, 0);

/// Sampled header records for the agent.
#[map]
pub static SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLES_RING_BYTES, 0);
