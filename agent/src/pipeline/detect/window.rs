//! Per-key counting over one-second windows for the rate detectors,
//! scaled by each sample's rate, with a few heavy sources and sample
//! packets kept as evidence.

use agent_common::sample::SampleRecord;

use super::{Addr, NS, finding::Evidence};

/// Sample packets kept per key as evidence.
pub const EVIDENCE: usize = 3;
/// Heaviest sources kept per key.
pub const TOP_SOURCES: usize = 4;

/// The second (of record time) a timestamp falls in.
pub fn second_of(ts_ns: u64) -> u64 {
    ts_ns / NS
}

/// What a window keeps of its samples besides their counts, for the
/// finding: the highest sampling rate, sample packets as evidence and
/// the heaviest sources. Both the one-second windows and the sliding
/// ones keep it.
#[derive(Clone, Debug, Default)]
pub struct Witness {
    pub max_rate: u32,
    /// Samples since the last restart.
    samples: u32,
    pub evidence: Evidence3,
    pub top_sources: TopSources,
}

impl Witness {
    /// Notes one sample standing for `weight` packets.
    pub fn add(&mut self, r: &SampleRecord, weight: u64) {
        self.max_rate = self.max_rate.max(r.sample_rate);
        // Evidence from the first samples after a restart, then from every
        // 64th: copying every sample would be most of the window's cost.
        if self.samples < EVIDENCE as u32 || self.samples.is_multiple_of(64) {
            self.evidence.push(Evidence::of(r));
        }
        self.samples = self.samples.wrapping_add(1);
        self.top_sources.add(r.src_addr, weight);
    }

    /// Starts over; the last evidence stays until newer replaces it.
    pub fn restart(&mut self) {
        self.max_rate = 0;
        self.samples = 0;
        self.top_sources = TopSources::default();
    }
}

/// Counts for one key in the current second.
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    /// The second these counts belong to.
    pub second: u64,
    /// Estimated packets and bytes (samples × their rate).
    pub packets: u64,
    pub bytes: u64,
    pub witness: Witness,
}

impl RateWindow {
    /// Starts the counts over when `second` is a new one.
    pub fn roll(&mut self, second: u64) {
        if self.second != second {
            self.second = second;
            self.packets = 0;
            self.bytes = 0;
            self.witness.restart();
        }
    }

    /// Counts one sample in the second it belongs to.
    pub fn add(&mut self, r: &SampleRecord) {
        let w = u64::from(r.sample_rate.max(1));
        self.packets += w;
        self.bytes += w * u64::from(r.frame_len);
        self.witness.add(r, w);
    }
}

/// The last [`EVIDENCE`] samples, oldest first when read.
#[derive(Clone, Debug, Default)]
pub struct Evidence3 {
    items: [Option<Evidence>; EVIDENCE],
    next: usize,
}

impl Evidence3 {
    pub fn push(&mut self, e: Evidence) {
        self.items[self.next] = Some(e);
        self.next = (self.next + 1) % EVIDENCE;
    }

    pub fn to_vec(&self) -> Vec<Evidence> {
        (0..EVIDENCE)
            .filter_map(|i| self.items[(self.next + i) % EVIDENCE])
            .collect()
    }
}

/// A tiny Space-Saving summary of the heaviest sources of one key.
#[derive(Clone, Debug, Default)]
pub struct TopSources {
    slots: [(Addr, u64); TOP_SOURCES],
}

impl TopSources {
    pub fn add(&mut self, src: Addr, weight: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.1 > 0 && s.0 == src) {
            slot.1 += weight;
            return;
        }
        // Replace the lightest slot; it inherits the count (Space-Saving),
        // so a heavy source that arrives late still rises.
        if let Some(slot) = self.slots.iter_mut().min_by_key(|s| s.1) {
            *slot = (src, slot.1 + weight);
        }
    }

    /// Sources by estimated packets, heaviest first.
    pub fn to_vec(&self) -> Vec<(Addr, u64)> {
        let mut v: Vec<_> = self.slots.iter().filter(|s| s.1 > 0).copied().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.1));
        v
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;

    fn rec(ts: u64, src: u8, rate: u32, len: u32) -> SampleRecord {
        SampleRecord {
            timestamp_ns: ts,
            sample_rate: rate,
            frame_len: len,
            src_addr: map_ipv4([198, 18, 0, src]),
            ..Default::default()
        }
    }

    #[test]
    fn counts_scale_by_rate_and_roll_per_second() {
        let mut w = RateWindow::default();
        w.roll(5);
        w.add(&rec(5 * NS, 1, 64, 100));
        w.add(&rec(5 * NS + 1, 1, 1, 60));
        assert_eq!((w.packets, w.bytes, w.witness.max_rate), (65, 6460, 64));
        w.roll(6);
        assert_eq!((w.packets, w.bytes, w.witness.max_rate), (0, 0, 0));
        w.add(&rec(6 * NS, 2, 1, 60));
        assert_eq!(w.packets, 1);
        // Rolling to the same second keeps the counts.
        w.roll(6);
        assert_eq!(w.packets, 1);
    }

    #[test]
    fn evidence_keeps_the_last_three_in_order() {
        let mut e = Evidence3::default();
        for ts in 1..=5 {
            e.push(Evidence::of(&rec(ts, 1, 1, 60)));
        }
        let ts: Vec<u64> = e.to_vec().iter().map(|e| e.ts_ns).collect();
        assert_eq!(ts, vec![3, 4, 5]);
    }

    #[test]
    fn top_sources_find_the_heavy_one() {
        let mut t = TopSources::default();
        for i in 0..1000u32 {
            t.add(map_ipv4([198, 18, 1, (i % 250) as u8]), 1);
            if i % 10 == 0 {
                t.add(map_ipv4([198, 18, 0, 7]), 5);
            }
        }
        // Space-Saving keeps every source above total/slots (1500/4).
        let top = t.to_vec();
        let heavy = top.iter().find(|s| s.0 == map_ipv4([198, 18, 0, 7]));
        assert!(heavy.is_some_and(|s| s.1 >= 500), "{top:?}");
    }
}
