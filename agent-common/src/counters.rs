//! The per-CPU state the XDP program keeps: exact counters plus the sampler's
//! position. One map entry per CPU so a packet costs one map lookup.

use crate::{
    app::APP_KIND_COUNT,
    class::{
        CLASS_COUNT, PARSE_ERROR_COUNT, ParseError, ProtocolClass, TCP_FLAG_COUNTER_COUNT,
        TcpFlagCounter, tcp_flags,
    },
    parse::Parsed,
};

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
    /// Frames copied into the capture ring buffer.
    pub captured: u64,
    /// Frames that passed the capture filter but found the capture ring
    /// buffer full (or could not be copied).
    pub capture_dropped: u64,
    /// Frames taken for the first packet of a flow the program had not
    /// seen lately (sampled like control packets).
    pub first_packets: u64,
    /// Control packets (and first packets) left out because this CPU's
    /// budget of records for the millisecond was spent: the records kept
    /// carry the thinning in their rate.
    pub control_thinned: u64,
    /// Frames copied into the app ring, per [`crate::app::AppKind`]
    /// (index `kind - 1`).
    pub app_frames: [u64; APP_KIND_COUNT],
    /// Selected frames lost because the app ring was full.
    pub app_dropped: u64,
}

/// Where the 1-in-N samplers are on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SamplerState {
    pub data_seen: u32,
    pub control_seen: u32,
    pub since_wakeup: u32,
    /// Capture records since the last consumer wakeup.
    pub capture_since_wakeup: u32,
    /// Start of the control budget's current window (`bpf_ktime_get_ns`).
    pub window_start_ns: u64,
    /// Control candidates seen in the current window.
    pub window_seen: u32,
    /// Thinning in force: 1 in 2^shift control candidates is kept.
    pub shift: u32,
    /// xorshift32 state for the thinning's coin, reseeded from the
    /// kernel's random source at every clock read (never 0 after one).
    pub coin: u32,
    /// TCP payload segments this CPU still looks up in the follow table
    /// (see [`crate::app::FOLLOW_WINDOW`]).
    pub follow_left: u32,
    /// App records since the last consumer wakeup.
    pub app_since_wakeup: u32,
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
        == (2 * CLASS_COUNT
            + 2
            + 1
            + TCP_FLAG_COUNTER_COUNT
            + PARSE_ERROR_COUNT
            + 6
            + APP_KIND_COUNT
            + 1)
            * 8
);
const _: () = assert!(core::mem::size_of::<SamplerState>() == 48);
const _: () = assert!(core::mem::size_of::<CpuState>() == core::mem::size_of::<Counters>() + 48);

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
        self.captured = self.captured.wrapping_add(other.captured);
        self.capture_dropped = self.capture_dropped.wrapping_add(other.capture_dropped);
        self.first_packets = self.first_packets.wrapping_add(other.first_packets);
        self.control_thinned = self.control_thinned.wrapping_add(other.control_thinned);
        add(&mut self.app_frames, &other.app_frames);
        self.app_dropped = self.app_dropped.wrapping_add(other.app_dropped);
    }

    /// Counts one parsed frame of `frame_len` bytes: the one counting rule
    /// of the XDP program and of offline analysis.
    #[inline(always)]
    pub fn count(&mut self, p: &Parsed, frame_len: u64) {
        #[inline(always)]
        fn bump(c: &mut u64, by: u64) {
            *c = c.wrapping_add(by);
        }
        let class = p.class as usize;
        if let Some(n) = self.packets.get_mut(class) {
            bump(n, 1);
        }
        if let Some(n) = self.bytes.get_mut(class) {
            bump(n, frame_len);
        }
        match p.ip_version {
            4 => bump(&mut self.ip_version[0], 1),
            6 => bump(&mut self.ip_version[1], 1),
            _ => {}
        }
        if p.vlan_depth != 0 {
            bump(&mut self.vlan_packets, 1);
        }
        if p.class == ProtocolClass::Tcp {
            let f = p.tcp_flags;
            if f & tcp_flags::SYN != 0 {
                let which = if f & tcp_flags::ACK != 0 {
                    TcpFlagCounter::SynAck
                } else {
                    TcpFlagCounter::Syn
                };
                bump(&mut self.tcp_flags[which as usize], 1);
            }
            if f & tcp_flags::FIN != 0 {
                bump(&mut self.tcp_flags[TcpFlagCounter::Fin as usize], 1);
            }
            if f & tcp_flags::RST != 0 {
                bump(&mut self.tcp_flags[TcpFlagCounter::Rst as usize], 1);
            }
        }
        if let Some(e) = p.error {
            self.count_error(e);
        }
    }

    #[inline(always)]
    fn count_error(&mut self, e: ParseError) {
        if let Some(n) = self.parse_errors.get_mut(e as usize) {
            *n = n.wrapping_add(1);
        }
    }

    pub fn total_packets(&self) -> u64 {
        self.packets.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }
}
