//! A rate over the last second that slides with every sample, for the
//! flood detectors: the running count is ready after every sample, so a
//! flood is judged the moment it crosses its threshold instead of when a
//! one-second window closes.
//!
//! Counts are kept in 100 ms buckets: the current one, the nine before it
//! and the one before those, of which only the part still inside the last
//! second counts (weighted by how much of the current bucket has passed,
//! as if its packets were spread evenly). A steady rate then reads the
//! same at every moment, not 10 % low at the start of each bucket.

use agent_common::sample::SampleRecord;

use super::{NS, window::Witness};

/// Buckets in the sliding second.
pub const BUCKETS: usize = 10;
/// Width of one bucket.
pub const BUCKET_NS: u64 = NS / BUCKETS as u64;

/// The 100 ms bucket (of record time) a timestamp falls in.
pub fn bucket_of(ts_ns: u64) -> u64 {
    ts_ns / BUCKET_NS
}

/// Slots kept: the window's buckets and the one partly inside it.
const SLOTS: usize = BUCKETS + 1;

fn slot_of(bucket: u64) -> usize {
    (bucket % SLOTS as u64) as usize
}

/// Packets and bytes per bucket, with their sums over all slots.
#[derive(Clone, Debug, Default)]
struct Buckets {
    packets: [u64; SLOTS],
    bytes: [u64; SLOTS],
    sum_packets: u64,
    sum_bytes: u64,
}

impl Buckets {
    fn clear_slot(&mut self, slot: usize) {
        self.sum_packets -= self.packets[slot];
        self.sum_bytes -= self.bytes[slot];
        self.packets[slot] = 0;
        self.bytes[slot] = 0;
    }

    fn add(&mut self, slot: usize, packets: u64, bytes: u64) {
        self.packets[slot] += packets;
        self.bytes[slot] += bytes;
        self.sum_packets += packets;
        self.sum_bytes += bytes;
    }

    /// (packets, bytes) over the second ending at `ts_ns`, the newest
    /// bucket being `bucket`.
    fn over_last_second(&self, bucket: u64, ts_ns: u64) -> (f64, f64) {
        let oldest = slot_of(bucket + 1);
        // The share of the oldest bucket still inside the last second.
        let outside =
            (ts_ns.saturating_sub(bucket * BUCKET_NS)).min(BUCKET_NS) as f64 / BUCKET_NS as f64;
        let keep = 1.0 - outside;
        (
            (self.sum_packets - self.packets[oldest]) as f64 + self.packets[oldest] as f64 * keep,
            (self.sum_bytes - self.bytes[oldest]) as f64 + self.bytes[oldest] as f64 * keep,
        )
    }
}

/// One key's counts over the last second, scaled by each sample's rate.
/// Packets the detector watches and context packets (e.g. handshake ACKs
/// next to SYNs) slide alike.
#[derive(Clone, Debug, Default)]
pub struct SlidingWindow {
    /// The bucket the newest counts belong to.
    bucket: u64,
    watched: Buckets,
    context: Buckets,
    /// Rate, evidence and heaviest sources since the key last went quiet.
    pub witness: Witness,
    /// The bucket of the last finding, so a key over its limit reports
    /// once per bucket, not once per sample.
    reported: Option<u64>,
}

impl SlidingWindow {
    /// Moves the window to `bucket`, forgetting what fell out of it.
    /// Going back in time (records slightly out of order across CPUs)
    /// counts into the newest bucket.
    pub fn slide(&mut self, bucket: u64) {
        if bucket <= self.bucket {
            return;
        }
        let steps = bucket - self.bucket;
        if steps >= SLOTS as u64 {
            self.watched = Buckets::default();
            self.context = Buckets::default();
        } else {
            for b in self.bucket + 1..=bucket {
                self.watched.clear_slot(slot_of(b));
                self.context.clear_slot(slot_of(b));
            }
        }
        self.bucket = bucket;
        if self.watched.sum_packets == 0 && self.context.sum_packets == 0 {
            // Quiet for a whole second: the next burst starts afresh.
            self.witness.restart();
        }
    }

    fn slot(&self) -> usize {
        slot_of(self.bucket)
    }

    /// Counts one watched sample (call [`slide`](Self::slide) first).
    pub fn add(&mut self, r: &SampleRecord) {
        let w = u64::from(r.sample_rate.max(1));
        let slot = self.slot();
        self.watched.add(slot, w, w * u64::from(r.frame_len));
        self.witness.add(r, w);
    }

    /// Counts one context sample (call [`slide`](Self::slide) first).
    pub fn add_context(&mut self, r: &SampleRecord) {
        let w = u64::from(r.sample_rate.max(1));
        let slot = self.slot();
        self.context.add(slot, w, w * u64::from(r.frame_len));
    }

    /// Estimated watched packets over the second ending at `ts_ns` (at or
    /// after the newest bucket's start).
    pub fn packets(&self, ts_ns: u64) -> f64 {
        self.watched.over_last_second(self.bucket, ts_ns).0
    }

    /// Estimated watched bytes over the second ending at `ts_ns`.
    pub fn bytes(&self, ts_ns: u64) -> f64 {
        self.watched.over_last_second(self.bucket, ts_ns).1
    }

    /// Estimated context packets over the second ending at `ts_ns`.
    pub fn context_packets(&self, ts_ns: u64) -> f64 {
        self.context.over_last_second(self.bucket, ts_ns).0
    }

    /// The newest bucket this window counted into.
    pub fn bucket(&self) -> u64 {
        self.bucket
    }

    /// True once per bucket: whether a finding may be reported now.
    pub fn take_report_slot(&mut self) -> bool {
        if self.reported == Some(self.bucket) {
            return false;
        }
        self.reported = Some(self.bucket);
        true
    }
}

/// Per-key side state (distinct sources, say) over about the last second:
/// two generations, one per second of record time; the older one is
/// dropped when a new second begins, so a judge reading both sees between
/// one and two seconds of history.
#[derive(Clone, Debug, Default)]
pub struct Generations<A> {
    second: u64,
    current: A,
    previous: A,
}

impl<A: Default> Generations<A> {
    /// The generation a sample at `ts_ns` belongs in.
    pub fn at(&mut self, ts_ns: u64) -> &mut A {
        let second = ts_ns / NS;
        if second > self.second {
            self.previous = if second == self.second + 1 {
                std::mem::take(&mut self.current)
            } else {
                A::default()
            };
            self.current = A::default();
            self.second = second;
        }
        &mut self.current
    }

    pub fn current(&self) -> &A {
        &self.current
    }

    pub fn previous(&self) -> &A {
        &self.previous
    }
}

#[cfg(test)]
mod tests {
    use agent_common::sample::map_ipv4;

    use super::*;

    fn rec(ts: u64, rate: u32, len: u32) -> SampleRecord {
        SampleRecord {
            timestamp_ns: ts,
            sample_rate: rate,
            frame_len: len,
            src_addr: map_ipv4([198, 18, 0, 1]),
            ..Default::default()
        }
    }

    fn feed(w: &mut SlidingWindow, ts: u64, rate: u32) {
        w.slide(bucket_of(ts));
        w.add(&rec(ts, rate, 100));
    }

    #[test]
    fn the_sum_covers_the_last_second() {
        let mut w = SlidingWindow::default();
        // One packet at the start of each 100 ms bucket from 10.0 s.
        for b in 100..120u64 {
            let ts = b * BUCKET_NS;
            feed(&mut w, ts, 1);
            let expect = (b - 100 + 1).min(11) as f64;
            // At a bucket's start the one ten buckets back is still inside.
            assert_eq!(w.packets(ts), expect, "bucket {b}");
            // Halfway through, half of it is.
            let mid = ts + BUCKET_NS / 2;
            let expect = if b >= 110 { 10.5 } else { expect };
            assert_eq!(w.packets(mid), expect, "bucket {b}");
        }
        assert_eq!(
            w.bytes(119 * BUCKET_NS + BUCKET_NS - 1),
            1000.0 + 100.0 / BUCKET_NS as f64
        );
        // Half a second later five buckets have fallen out.
        w.slide(124);
        assert_eq!(w.packets(124 * BUCKET_NS + BUCKET_NS / 2), 5.5);
        // A second and more of silence empties it.
        w.slide(200);
        assert_eq!(
            (w.packets(200 * BUCKET_NS), w.bytes(200 * BUCKET_NS)),
            (0.0, 0.0)
        );
    }

    #[test]
    fn a_steady_rate_reads_the_same_at_every_moment() {
        let mut w = SlidingWindow::default();
        let start = 40 * NS;
        // 5,000 a second for three seconds: past the first second the
        // running count stays within one packet of 5,000.
        for i in 0..15_000u64 {
            let ts = start + i * 200_000;
            feed(&mut w, ts, 1);
            if ts >= start + NS {
                let v = w.packets(ts);
                assert!((v - 5000.0).abs() <= 1.0, "{v} at {ts}");
            }
        }
    }

    #[test]
    fn samples_count_at_their_rate_and_late_ones_in_the_newest_bucket() {
        let mut w = SlidingWindow::default();
        feed(&mut w, 50 * BUCKET_NS, 64);
        feed(&mut w, 51 * BUCKET_NS, 1);
        // 30 ms late, from the previous bucket: still counted.
        feed(&mut w, 51 * BUCKET_NS - 30_000_000, 1);
        assert_eq!((w.packets(51 * BUCKET_NS), w.witness.max_rate), (66.0, 64));
        w.slide(61);
        assert_eq!(w.packets(61 * BUCKET_NS), 2.0, "bucket 50 left the window");
        w.slide(62);
        assert_eq!(w.packets(62 * BUCKET_NS), 0.0, "and bucket 51 too");
    }

    #[test]
    fn a_flood_crosses_its_threshold_as_it_arrives() {
        // 10,000 pps against a limit of 1,000/s: crossed after 100 ms of
        // the flood, not when a second closes.
        let mut w = SlidingWindow::default();
        let start = 7 * NS + 420_000_000;
        let mut crossed = None;
        for i in 0..10_000u64 {
            let ts = start + i * 100_000;
            feed(&mut w, ts, 1);
            if w.packets(ts) >= 1_000.0 {
                crossed = Some(ts - start);
                break;
            }
        }
        assert_eq!(crossed, Some(99_900_000));
    }

    #[test]
    fn one_report_per_bucket() {
        let mut w = SlidingWindow::default();
        feed(&mut w, 3 * BUCKET_NS, 1);
        assert!(w.take_report_slot());
        feed(&mut w, 3 * BUCKET_NS + 1, 1);
        assert!(!w.take_report_slot());
        feed(&mut w, 4 * BUCKET_NS, 1);
        assert!(w.take_report_slot());
    }

    #[test]
    fn context_slides_with_the_watched_counts() {
        let mut w = SlidingWindow::default();
        w.slide(10);
        w.add_context(&rec(10 * BUCKET_NS, 4, 60));
        w.add(&rec(10 * BUCKET_NS, 1, 60));
        let ts = 10 * BUCKET_NS;
        assert_eq!((w.packets(ts), w.context_packets(ts)), (1.0, 4.0));
        w.slide(21);
        let ts = 21 * BUCKET_NS;
        assert_eq!((w.packets(ts), w.context_packets(ts)), (0.0, 0.0));
    }

    #[test]
    fn a_quiet_second_starts_the_sources_afresh() {
        let mut w = SlidingWindow::default();
        feed(&mut w, NS, 8);
        assert_eq!(w.witness.top_sources.to_vec().len(), 1);
        w.slide(bucket_of(3 * NS));
        assert!(w.witness.top_sources.to_vec().is_empty());
        assert_eq!(w.witness.max_rate, 0);
    }

    #[test]
    fn generations_keep_between_one_and_two_seconds() {
        let mut g = Generations::<u32>::default();
        *g.at(5 * NS) += 1;
        *g.at(5 * NS + 1) += 1;
        *g.at(6 * NS) += 10;
        assert_eq!((*g.current(), *g.previous()), (10, 2));
        *g.at(7 * NS) += 100;
        assert_eq!((*g.current(), *g.previous()), (100, 10));
        // A gap of more than a second forgets both.
        *g.at(9 * NS) += 1000;
        assert_eq!((*g.current(), *g.previous()), (1000, 0));
    }
}
