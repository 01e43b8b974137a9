//! The flow table: bounded, with idle/active timeouts, TCP end detection
//! and least-recently-seen eviction, all O(1) per packet.
//!
//! Entries live in a slab threaded on an intrusive doubly linked list in
//! last-seen order (to within [`RELINK_NS`]), so the idle sweep and the
//! eviction both start at the head. Hand-written because no maintained crate offers an LRU map with
//! a fixed memory cost per entry, in-place updates and iteration from the
//! cold end with early exit (the `lru` crate allocates per node and cannot
//! stop a scan at the first warm entry).

use std::collections::HashMap;

use agent_common::{class::tcp_flags, sample::SampleRecord};

use super::FlowKey;

/// Why a flow left the table (or was exported while staying).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpireReason {
    /// No packet for the idle timeout.
    Idle,
    /// Exported because it lasted the active timeout; it stays and starts
    /// a new period.
    Active,
    /// TCP FIN or RST seen.
    End,
    /// Removed to make room (the table was at capacity).
    Evicted,
    /// The agent stopped, or the capture ended.
    Shutdown,
}

impl ExpireReason {
    pub const ALL: [ExpireReason; 5] = [
        Self::Idle,
        Self::Active,
        Self::End,
        Self::Evicted,
        Self::Shutdown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Active => "active",
            Self::End => "end",
            Self::Evicted => "evicted",
            Self::Shutdown => "shutdown",
        }
    }

    /// IPFIX flowEndReason (RFC 5102 / IANA): 1 idle, 2 active, 3 end of
    /// flow, 4 forced end, 5 lack of resources.
    pub fn ipfix_code(self) -> u8 {
        match self {
            Self::Idle => 1,
            Self::Active => 2,
            Self::End => 3,
            Self::Shutdown => 4,
            Self::Evicted => 5,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    pub idle_timeout_ns: u64,
    pub active_timeout_ns: u64,
    pub capacity: usize,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            idle_timeout_ns: 15_000_000_000,
            active_timeout_ns: 60_000_000_000,
            capacity: 1_000_000,
        }
    }
}

/// What the table says about a sample, for the detectors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowNote {
    /// The sample started a flow: a connection attempt or probe, not one
    /// more packet of a known conversation.
    pub new_flow: bool,
    /// The flow's first sample was a SYN (without ACK): its ACKs complete
    /// a handshake someone began, unlike bare ACKs sent to mask a flood.
    pub began_with_syn: bool,
}

impl FlowNote {
    /// The note of a sample that starts its flow.
    pub fn first(r: &SampleRecord) -> FlowNote {
        FlowNote {
            new_flow: true,
            began_with_syn: r.is_tcp_syn(),
        }
    }
}

/// What the table knows about one flow (for one export period).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// First and last packet of this period, in the records' clock (ns).
    pub first_ns: u64,
    pub last_ns: u64,
    pub sampled_packets: u64,
    pub sampled_bytes: u64,
    /// Each sample scaled by the rate it was taken at, so the estimate
    /// stays unbiased when rates change mid-flow.
    pub estimated_packets: u64,
    pub estimated_bytes: u64,
    pub tcp_flags: u8,
    pub min_ttl: u8,
    pub max_ttl: u8,
    /// The sampling rate of the most recent sample.
    pub sampling_rate: u32,
    pub ifindex: u32,
}

impl FlowStats {
    fn start(r: &SampleRecord) -> FlowStats {
        FlowStats {
            first_ns: r.timestamp_ns,
            last_ns: r.timestamp_ns,
            min_ttl: r.ttl,
            max_ttl: r.ttl,
            ifindex: r.ifindex,
            ..FlowStats::default()
        }
    }

    fn add(&mut self, r: &SampleRecord) {
        let rate = u64::from(r.sample_rate.max(1));
        self.last_ns = self.last_ns.max(r.timestamp_ns);
        self.first_ns = self.first_ns.min(r.timestamp_ns);
        self.sampled_packets += 1;
        self.sampled_bytes += u64::from(r.frame_len);
        self.estimated_packets += rate;
        self.estimated_bytes += rate * u64::from(r.frame_len);
        self.tcp_flags |= r.tcp_flags;
        self.min_ttl = self.min_ttl.min(r.ttl);
        self.max_ttl = self.max_ttl.max(r.ttl);
        self.sampling_rate = r.sample_rate;
    }
}

/// A flow leaving the table or exported by the active timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiredFlow {
    pub key: FlowKey,
    pub stats: FlowStats,
    pub reason: ExpireReason,
    /// The reverse direction is in the table too (a biflow).
    pub reverse_seen: bool,
}

const NIL: u32 = u32::MAX;

struct Entry {
    key: FlowKey,
    stats: FlowStats,
    /// `stats.last_ns` when the entry was last moved to the tail. A flow
    /// touched since is `last_ns > linked_ns`; see [`RELINK_NS`].
    linked_ns: u64,
    /// See [`FlowNote::began_with_syn`].
    began_with_syn: bool,
    prev: u32,
    next: u32,
}

/// An update moves its flow to the warm end of the list only if the flow
/// was linked there at least this long ago. Relinking touches two
/// neighbours (two cache misses) and would dominate the cost of an update;
/// entries left in place are given a second chance when they reach the
/// cold end, so ordering is exact up to this resolution, far below the
/// idle timeout.
const RELINK_NS: u64 = 100_000_000;

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounters {
    pub created: u64,
    pub expired: [u64; 5],
    /// Samples without an IP header (no flow to add them to).
    pub non_ip_samples: u64,
}

/// Entries in fixed-size chunks, so growing never over-allocates by more
/// than one chunk (a doubling `Vec` could hold twice the memory needed).
#[derive(Default)]
struct Slab {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

const CHUNK: usize = 4096;

impl Slab {
    fn push(&mut self, e: Entry) -> u32 {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(e);
        }
        self.len += 1;
        (self.len - 1) as u32
    }

    fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK
    }
}

impl std::ops::Index<usize> for Slab {
    type Output = Entry;
    fn index(&self, i: usize) -> &Entry {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Slab {
    fn index_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// foldhash: several times faster than SipHash on 40-byte keys, and still
/// seeded at random per table, so crafted traffic cannot aim at collisions.
type Index = HashMap<FlowKey, u32, foldhash::fast::RandomState>;

pub struct FlowTable {
    config: FlowConfig,
    index: Index,
    slab: Slab,
    free: Vec<u32>,
    /// Least recently seen.
    head: u32,
    /// Most recently seen.
    tail: u32,
    counters: TableCounters,
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> FlowTable {
        let capacity = config.capacity.max(1);
        FlowTable {
            config: FlowConfig { capacity, ..config },
            // Grown on demand up to `capacity`; never beyond it.
            index: Index::default(),
            slab: Slab::default(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            counters: TableCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn counters(&self) -> TableCounters {
        self.counters
    }

    pub fn config(&self) -> FlowConfig {
        self.config
    }

    /// New idle and active timeouts (a reload); they apply from the next
    /// packet and sweep. The capacity stays: the table is sized for it.
    pub fn set_timeouts(&mut self, idle_timeout_ns: u64, active_timeout_ns: u64) {
        self.config.idle_timeout_ns = idle_timeout_ns;
        self.config.active_timeout_ns = active_timeout_ns;
    }

    /// Bytes held by the table's structures (allocated capacity).
    pub fn memory_bytes(&self) -> usize {
        let index = self.index.capacity() * (std::mem::size_of::<(FlowKey, u32)>() + 1);
        let slab = self.slab.capacity() * std::mem::size_of::<Entry>();
        index + slab + self.free.capacity() * 4
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let e = &self.slab[i as usize];
            (e.prev, e.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slab[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slab[next as usize].prev = prev;
        }
    }

    fn push_tail(&mut self, i: u32) {
        let tail = self.tail;
        {
            let e = &mut self.slab[i as usize];
            e.prev = tail;
            e.next = NIL;
        }
        if tail == NIL {
            self.head = i;
        } else {
            self.slab[tail as usize].next = i;
        }
        self.tail = i;
    }

    fn relink(&mut self, i: u32, now_ns: u64) {
        self.unlink(i);
        self.push_tail(i);
        let e = &mut self.slab[i as usize];
        e.linked_ns = e.stats.last_ns.max(now_ns);
    }

    /// Moves entries touched since they were linked from the cold end to
    /// the warm end (their second chance) until the head is an entry
    /// untouched since linking: the least recently seen flow.
    fn settle_head(&mut self) {
        while self.head != NIL {
            let e = &self.slab[self.head as usize];
            if e.stats.last_ns <= e.linked_ns {
                return;
            }
            let last = e.stats.last_ns;
            self.relink(self.head, last);
        }
    }

    fn coldest(&mut self) -> Option<u32> {
        self.settle_head();
        (self.head != NIL).then_some(self.head)
    }

    fn remove(&mut self, i: u32, reason: ExpireReason) -> ExpiredFlow {
        self.unlink(i);
        let key = self.slab[i as usize].key;
        let stats = self.slab[i as usize].stats;
        self.index.remove(&key);
        self.free.push(i);
        self.counters.expired[reason as usize] += 1;
        ExpiredFlow {
            key,
            stats,
            reason,
            reverse_seen: self.index.contains_key(&key.reversed()),
        }
    }

    /// Adds one sample. Flows that end because of it (TCP FIN/RST, active
    /// timeout, eviction to make room) are appended to `out`.
    /// Counts `r` in its flow; says whether the sample started a new flow
    /// (the detectors' notion of a probe) and how the flow began.
    pub fn update(&mut self, r: &SampleRecord, out: &mut Vec<ExpiredFlow>) -> FlowNote {
        let Some(key) = FlowKey::from_record(r) else {
            self.counters.non_ip_samples += 1;
            return FlowNote::default();
        };
        let mut note = FlowNote::default();
        let i = match self.index.get(&key) {
            Some(&i) => {
                let e = &self.slab[i as usize];
                if r.timestamp_ns.saturating_sub(e.linked_ns) >= RELINK_NS {
                    self.relink(i, r.timestamp_ns);
                }
                i
            }
            None => {
                if self.index.len() >= self.config.capacity
                    && let Some(coldest) = self.coldest()
                {
                    out.push(self.remove(coldest, ExpireReason::Evicted));
                }
                note = FlowNote::first(r);
                let entry = Entry {
                    key,
                    stats: FlowStats::start(r),
                    linked_ns: r.timestamp_ns,
                    began_with_syn: note.began_with_syn,
                    prev: NIL,
                    next: NIL,
                };
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slab[i as usize] = entry;
                        i
                    }
                    None => self.slab.push(entry),
                };
                self.index.insert(key, i);
                self.push_tail(i);
                self.counters.created += 1;
                i
            }
        };
        note.began_with_syn = self.slab[i as usize].began_with_syn;
        let stats = &mut self.slab[i as usize].stats;
        // Active timeout: export the period so far and start a new one.
        if r.timestamp_ns.saturating_sub(stats.first_ns) >= self.config.active_timeout_ns
            && stats.sampled_packets > 0
        {
            let done = *stats;
            *stats = FlowStats::start(r);
            self.counters.expired[ExpireReason::Active as usize] += 1;
            out.push(ExpiredFlow {
                key,
                stats: done,
                reason: ExpireReason::Active,
                reverse_seen: self.index.contains_key(&key.reversed()),
            });
        }
        let stats = &mut self.slab[i as usize].stats;
        stats.add(r);
        if key.protocol == 6 && r.tcp_flags & (tcp_flags::FIN | tcp_flags::RST) != 0 {
            out.push(self.remove(i, ExpireReason::End));
        }
        note
    }

    /// Expires flows idle since `now_ns - idle_timeout` (oldest first).
    pub fn expire_idle(&mut self, now_ns: u64, out: &mut Vec<ExpiredFlow>) {
        while let Some(head) = self.coldest() {
            let last = self.slab[head as usize].stats.last_ns;
            if now_ns.saturating_sub(last) < self.config.idle_timeout_ns {
                break;
            }
            out.push(self.remove(head, ExpireReason::Idle));
        }
    }

    /// Expires every flow (agent stop, end of a capture).
    pub fn drain(&mut self, out: &mut Vec<ExpiredFlow>) {
        while self.head != NIL {
            out.push(self.remove(self.head, ExpireReason::Shutdown));
        }
    }
}
