//! Run-time configuration the agent writes into the `CONFIG` array map.

use crate::app::MAX_DNS_PORTS;

/// Sampling configuration, entry 0 of `CONFIG`. A rate of 0 disables that
/// kind of sampling; 1 samples every packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerConfig {
    /// 1-in-N for data packets (everything that is not a control packet).
    pub data_rate: u32,
    /// 1-in-M for control packets: TCP SYN/FIN/RST, ICMP, ICMPv6.
    pub control_rate: u32,
    /// Wake the userspace consumer after this many records per CPU; records
    /// in between are submitted without a wakeup (a wakeup costs ~10-20 µs).
    pub wakeup_batch: u32,
    /// Non-zero on mirror (SPAN/TAP) ports: frames are copies nobody
    /// needs, so the program drops them after counting instead of handing
    /// them to the kernel stack. Zero (the default) passes every frame.
    pub mirror: u32,
    /// Control-packet records one CPU may write per millisecond
    /// ([`BUDGET_WINDOW_NS`]) at the full control rate; past it the
    /// program keeps 1 in 2^n of them at random, n chosen so that about
    /// this many remain, and each record carries its rate. 0 = no limit.
    pub control_budget: u32,
    /// Non-zero: the first packet of every flow the program has not seen
    /// lately is sampled like a control packet, so a UDP scan or a flow
    /// of few packets is seen whole at any data rate.
    pub first_packet: u32,
    /// Key of the program's flow hash ([`flow_hash`]); drawn at random by
    /// the agent for each process.
    pub flow_key: u64,
    /// Which application frames are copied to the app ring
    /// ([`crate::app::select`] bits; 0 = none).
    pub app: u32,
    /// Ports whose UDP and TCP payloads are DNS (0 = unused slot).
    pub dns_ports: [u16; MAX_DNS_PORTS],
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<SamplerConfig>() == 48);

/// DNS ports unless configured: DNS and multicast DNS.
pub const DEFAULT_DNS_PORTS: [u16; MAX_DNS_PORTS] = [53, 5353, 0, 0];

pub const DEFAULT_DATA_RATE: u32 = 64;
pub const DEFAULT_CONTROL_RATE: u32 = 1;
pub const DEFAULT_WAKEUP_BATCH: u32 = 1024;
/// 64 records per CPU and millisecond: 128k/s on two CPUs, within what
/// the pipeline takes (about 2 M/s) and the ring holds (58k records).
pub const DEFAULT_CONTROL_BUDGET: u32 = 64;
/// The budget's window: one millisecond of `bpf_ktime_get_ns`.
pub const BUDGET_WINDOW_NS: u64 = 1_000_000;
/// Control candidates between two reads of the clock by the budget: the
/// clock (with the reseed of the coin) costs as much as the rest of the
/// check (XDP cost bench: a SYN past the budget +34 ns reading it every
/// 16th, +29 every 64th). A window that ended is seen at most this many
/// candidates late; they are judged by the last window's thinning, their
/// rate carried as always. The thinning only ever grows after a read.
pub const BUDGET_CLOCK_EVERY: u32 = 64;
/// Thinning stops at 1 in 2^16: 64 << 16 is 4 G control packets a second.
pub const MAX_THINNING_SHIFT: u32 = 16;
/// Slots of the program's recently-seen-flows table (a power of two).
pub const SEEN_FLOW_SLOTS: u32 = 1 << 16;

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            data_rate: DEFAULT_DATA_RATE,
            control_rate: DEFAULT_CONTROL_RATE,
            wakeup_batch: DEFAULT_WAKEUP_BATCH,
            mirror: 0,
            control_budget: DEFAULT_CONTROL_BUDGET,
            first_packet: 1,
            flow_key: 0,
            app: crate::app::select::ALL,
            dns_ports: DEFAULT_DNS_PORTS,
            _pad: 0,
        }
    }
}

/// The shift (thinning to 1 in 2^shift) that brings `seen` control
/// packets of one window within `budget` records: the least n with
/// `seen <= budget << n`, capped at [`MAX_THINNING_SHIFT`]. Without a
/// loop or branches: in the XDP program every branch here would multiply
/// the states the verifier walks.
#[inline(always)]
pub fn thinning_shift(seen: u32, budget: u32) -> u32 {
    let over = seen.saturating_sub(1) / budget.max(1);
    (u32::BITS - over.leading_zeros()).min(MAX_THINNING_SHIFT)
}

/// Keyed hash of a flow's endpoints, the same in both directions (the
/// reply of a seen flow is not new). Written by hand because it runs in
/// the XDP program: a few multiplies, every word mixed with the key, so
/// without the key nobody can aim packets at a slot.
#[inline(always)]
pub fn flow_hash(key: u64, a: (&[u8; 16], u16), b: (&[u8; 16], u16), protocol: u8) -> u64 {
    #[inline(always)]
    fn mix(h: u64, w: u64) -> u64 {
        let x = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }
    #[inline(always)]
    fn endpoint(key: u64, (addr, port): (&[u8; 16], u16)) -> u64 {
        let [lo, hi] = crate::filter::words(*addr);
        mix(mix(mix(key, u64::from(port)), lo), hi)
    }
    // Each endpoint hashed alone and the two added: symmetric without
    // ordering them (comparing two addresses byte by byte cost the XDP
    // program more than the hashing).
    let mut h = mix(
        endpoint(key, a).wrapping_add(endpoint(key, b)),
        u64::from(protocol),
    );
    // Final avalanche (murmur3's fmix64) so slot and tag bits both depend
    // on every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Ring buffer size in bytes: 4 MiB holds ~58k records, ~180 ms of
/// 1-in-64 samples at 20 Mpps.
pub const SAMPLES_RING_BYTES: u32 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_brings_a_window_within_the_budget() {
        assert_eq!(thinning_shift(0, 64), 0);
        assert_eq!(thinning_shift(64, 64), 0);
        assert_eq!(thinning_shift(65, 64), 1);
        assert_eq!(thinning_shift(1000, 64), 4);
        assert_eq!(thinning_shift(1024, 64), 4);
        assert_eq!(thinning_shift(1025, 64), 5);
        assert_eq!(thinning_shift(u32::MAX, 64), MAX_THINNING_SHIFT);
        assert_eq!(thinning_shift(5, 0), 3);
        for seen in 0..5000 {
            let n = thinning_shift(seen, 64);
            assert!(seen <= 64 << n, "{seen} {n}");
            assert!(n == 0 || seen > 64 << (n - 1), "{seen} {n}");
        }
    }

    #[test]
    fn the_flow_hash_is_symmetric_keyed_and_spreads() {
        let a = (&[1u8; 16], 40000);
        let b = (&[2u8; 16], 53);
        assert_eq!(flow_hash(7, a, b, 17), flow_hash(7, b, a, 17));
        assert_ne!(flow_hash(7, a, b, 17), flow_hash(8, a, b, 17));
        assert_ne!(flow_hash(7, a, b, 17), flow_hash(7, a, b, 6));
        // A port scan's flows land in distinct slots of the table.
        let mut slots = std::collections::HashSet::new();
        for port in 0..1000u16 {
            let h = flow_hash(0x1234, a, (&[2u8; 16], port), 17);
            slots.insert(h as u32 & (SEEN_FLOW_SLOTS - 1));
        }
        assert!(slots.len() > 980, "{} slots", slots.len());
    }
}
