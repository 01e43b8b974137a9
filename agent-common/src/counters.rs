//! The per-CPU state the XDP program keeps: exact counters plus the sampler's
//! position. One map entry per CPU so a packet costs one map lookup.

use crate::class::{CLASS_COUNT, PARSE_ERROR_COUNT, TCP_FLAG_COUNTER_COUNT};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets per [`crate::class::ProtocolClass`].
    pub packets: [u64; CLASS_COUNT],
    /// Bytes (whole frame, all fragments of a multi-buffer frame) per class.
    pub bytes: [u64; CLASS_COUNT],
    /// Frames whose IPv4 (index 0) or IPv6 (index 1) header parsed.
    pub ip_version: [u64; 2],
    /// Frames carrying at least one VLAN tag.
    pub vlan_packets: u64,
    /// Per [`crate::class::TcpFlagCounter`].
    pub tcp_flags: [u64; TCP_FLAG_COUNTER_COUNT],
    /// Per [`crate::class::ParseError`].
    pub parse_errors: [u64; PARSE_ERROR_COUNT],
    /// Records submitted to the ring buffer.
    pub samples: u64,
    /// Records lost because the ring buffer was full.
    pub ringbuf_dropped: u64,
}

/// Where the 1-in-N samplers are on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerState {
    pub data_seen: u32,
    pub control_seen: u32,
    pub since_wakeup: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuState {
    pub counters: Counters,
    pub sampler: SamplerState,
}

const _: () = assert!(
    core::mem::size_of::<Counters>()
        == (2 * CLASS_COUNT + 2 + 1 + TCP_FLAG_COUNTER_COUNT + PARSE_ERROR_COUNT + 2) * 8
);
const _: () = assert!(core::mem::size_of::<SamplerState>() == 16);
const _: () = assert!(core::mem::size_of::<CpuState>() == core::mem::size_of::<Counters>() + 16);

impl Counters {
    /// Adds another CPU's counters to these (userspace sums per-CPU values).
    pub fn accumulate(&mut self, other: &Counters) {
        fn add<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x = x.wrapping_add(*y);
            }
        }
        add(&mut self.packets, &other.packets);
        add(&mut self.bytes, &other.bytes);
        add(&mut self.ip_version, &other.ip_version);
        add(&mut self.tcp_flags, &other.tcp_flags);
        add(&mut self.parse_errors, &other.parse_errors);
        self.vlan_packets = self.vlan_packets.wrapping_add(other.vlan_packets);
        self.samples = self.samples.wrapping_add(other.samples);
        self.ringbuf_dropped = self.ringbuf_dropped.wrapping_add(other.ringbuf_dropped);
    }

    pub fn total_packets(&self) -> u64 {
        self.packets.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }
}
