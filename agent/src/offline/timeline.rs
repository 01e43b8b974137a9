//! Traffic over time for the report: per second, packets and bytes per
//! protocol class, TCP flags and new flows; and a frame size histogram.

use std::collections::BTreeMap;

use agent_common::{
    class::{CLASS_COUNT, ProtocolClass, TcpFlagCounter, tcp_flags},
    parse::Parsed,
    sample::SampleRecord,
};

use crate::pipeline::detect::NS;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    pub packets: [u64; CLASS_COUNT],
    pub bytes: [u64; CLASS_COUNT],
    pub tcp_flags: [u64; 4],
    pub new_flows: u64,
}

impl Second {
    /// Adds another step's counts to this one's.
    fn add(&mut self, other: &Second) {
        for i in 0..CLASS_COUNT {
            self.packets[i] += other.packets[i];
            self.bytes[i] += other.bytes[i];
        }
        for i in 0..4 {
            self.tcp_flags[i] += other.tcp_flags[i];
        }
        self.new_flows += other.new_flows;
    }
}

/// Upper bounds of the size histogram's buckets (the last is open).
pub const SIZE_BUCKETS: [u64; 8] = [64, 128, 256, 512, 1024, 1518, 9000, u64::MAX];

/// Steps the timeline holds at most. Timestamps come from the file, so a
/// crafted capture could ask for one step per frame; past this the steps
/// widen (every count is kept, only the time resolution coarsens).
pub const MAX_STEPS: usize = 65_536;

#[derive(Clone, Debug)]
pub struct Timeline {
    /// Keyed by the first second of each step.
    pub seconds: BTreeMap<u64, Second>,
    /// Seconds per step: 1 until [`MAX_STEPS`] forces it wider.
    pub step: u64,
    pub sizes: [u64; SIZE_BUCKETS.len()],
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            seconds: BTreeMap::new(),
            step: 1,
            sizes: [0; SIZE_BUCKETS.len()],
        }
    }
}

impl Timeline {
    /// The step that holds `ts_ns`, widening the steps first if a new one
    /// would pass the bound.
    fn at(&mut self, ts_ns: u64) -> &mut Second {
        let mut key = ts_ns / NS / self.step * self.step;
        while self.seconds.len() >= MAX_STEPS && !self.seconds.contains_key(&key) {
            self.widen();
            key = ts_ns / NS / self.step * self.step;
        }
        self.seconds.entry(key).or_default()
    }

    /// Doubles the step, merging neighbours.
    fn widen(&mut self) {
        self.step = self.step.saturating_mul(2);
        let old = std::mem::take(&mut self.seconds);
        for (sec, s) in old {
            self.seconds
                .entry(sec / self.step * self.step)
                .or_default()
                .add(&s);
        }
    }

    pub fn add(&mut self, r: &SampleRecord, p: &Parsed) {
        let s = self.at(r.timestamp_ns);
        let c = p.class as usize;
        s.packets[c] += 1;
        s.bytes[c] += u64::from(r.frame_len);
        if p.class == ProtocolClass::Tcp {
            let f = p.tcp_flags;
            let mut bump = |k: TcpFlagCounter| s.tcp_flags[k as usize] += 1;
            if f & tcp_flags::SYN != 0 {
                bump(if f & tcp_flags::ACK != 0 {
                    TcpFlagCounter::SynAck
                } else {
                    TcpFlagCounter::Syn
                });
            }
            if f & tcp_flags::FIN != 0 {
                bump(TcpFlagCounter::Fin);
            }
            if f & tcp_flags::RST != 0 {
                bump(TcpFlagCounter::Rst);
            }
        }
        let len = u64::from(r.frame_len);
        let b = SIZE_BUCKETS
            .iter()
            .position(|&u| len <= u)
            .unwrap_or(SIZE_BUCKETS.len() - 1);
        self.sizes[b] += 1;
    }

    pub fn flow_started(&mut self, ts_ns: u64) {
        self.at(ts_ns).new_flows += 1;
    }

    /// At most `points` bins covering the whole capture, each the sum of
    /// its seconds, with the bin width in seconds (for rates).
    pub fn binned(&self, points: usize) -> (Vec<(u64, Second)>, u64) {
        let (Some((&first, _)), Some((&last, _))) = (
            self.seconds.first_key_value(),
            self.seconds.last_key_value(),
        ) else {
            return (Vec::new(), 1);
        };
        let span = last - first + self.step;
        // Whole steps per bin, so no step is split between two bins.
        let width = span
            .div_ceil(points.max(1) as u64)
            .max(1)
            .div_ceil(self.step)
            * self.step;
        let mut bins: Vec<(u64, Second)> = (0..span.div_ceil(width))
            .map(|i| (first + i * width, Second::default()))
            .collect();
        for (sec, s) in &self.seconds {
            bins[((sec - first) / width) as usize].1.add(s);
        }
        (bins, width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_the_capture_and_keep_every_count() {
        let mut t = Timeline::default();
        for sec in 100..1100u64 {
            t.seconds.entry(sec).or_default().packets[0] = 2;
        }
        t.seconds.entry(1100).or_default().new_flows = 7;
        let (bins, width) = t.binned(100);
        assert_eq!(width, 11);
        assert_eq!(bins.len(), 91, "1001 seconds in bins of 11");
        let total: u64 = bins.iter().map(|b| b.1.packets[0]).sum();
        assert_eq!(total, 2000);
        assert_eq!(bins.iter().map(|b| b.1.new_flows).sum::<u64>(), 7);
        assert_eq!(bins[0].0, 100);
    }

    #[test]
    fn far_apart_timestamps_coarsen_the_steps_and_keep_every_count() {
        let mut t = Timeline::default();
        // One flow start per second for 200,000 seconds: a step each
        // would be 200,000 entries.
        for sec in 0..200_000u64 {
            t.flow_started(sec * NS + 5);
        }
        assert!(t.seconds.len() <= MAX_STEPS, "{} steps", t.seconds.len());
        assert_eq!(t.step, 4);
        assert_eq!(
            t.seconds.values().map(|s| s.new_flows).sum::<u64>(),
            200_000
        );
        let (bins, width) = t.binned(100);
        assert_eq!(width % t.step, 0);
        assert!(bins.len() <= 100);
        assert_eq!(bins.iter().map(|b| b.1.new_flows).sum::<u64>(), 200_000);
    }
}
