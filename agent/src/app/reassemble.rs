//! Messages that span TCP segments, put back together by sequence
//! number: a post-quantum ClientHello (1.6-1.8 KB) needs two, a large DNS
//! response over TCP several. The caller knows from the first segment how
//! many bytes the message needs. Bounded in entries, bytes and time; a
//! full table gives way by evicting its oldest entry, so messages that
//! never complete (sent to fill it) age out instead of keeping new ones
//! out.

use std::collections::{HashMap, VecDeque};

use crate::pipeline::{flow::FlowKey, keyed::KeyedState};

/// Messages pending at once (the XDP program's follow table has as many).
pub const MAX_PENDING: usize = agent_common::app::FOLLOW_TABLE_ENTRIES as usize;
/// Bytes of all pending messages together.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// A message not complete this long after its first segment is given up.
pub const PENDING_NS: u64 = 10_000_000_000;

/// What became of a message that did not complete; the text is a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unfinished {
    /// Its time ran out with pieces missing.
    TimedOut,
    /// Evicted for a newer one (the table or its bytes were full).
    Evicted,
}

impl Unfinished {
    pub fn label(self) -> &'static str {
        match self {
            Unfinished::TimedOut => "timed_out",
            Unfinished::Evicted => "evicted",
        }
    }
}

struct Pending {
    start_seq: u32,
    /// `needed` bytes; zero where nothing arrived yet.
    bytes: Vec<u8>,
    /// Byte ranges present, merged, sorted.
    have: Vec<(u32, u32)>,
    started_ns: u64,
    /// Matches the entry's place in `order` (stale places are skipped).
    serial: u64,
}

impl Pending {
    fn add(&mut self, seq: u32, payload: &[u8]) -> bool {
        let needed = self.bytes.len() as u32;
        let at = seq.wrapping_sub(self.start_seq);
        if at >= needed || payload.is_empty() {
            return false;
        }
        let take = (needed - at).min(payload.len() as u32);
        let (from, to) = (at as usize, (at + take) as usize);
        self.bytes[from..to].copy_from_slice(&payload[..take as usize]);
        self.have.push((at, at + take));
        self.have.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.have.len());
        for &(a, b) in &self.have {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.have = merged;
        true
    }

    fn complete(&self) -> bool {
        self.have.first() == Some(&(0, self.bytes.len() as u32))
    }
}

/// Pending messages by the sending direction of their flow.
#[derive(Default)]
pub struct SegmentAssembler {
    pending: HashMap<FlowKey, Pending, KeyedState>,
    /// Oldest first: (key, serial) at insertion.
    order: VecDeque<(FlowKey, u64)>,
    bytes: usize,
    serial: u64,
    /// Messages given up, by reason, since the last [`Self::take_unfinished`].
    unfinished: Vec<Unfinished>,
}

impl SegmentAssembler {
    /// A segment whose payload begins a message of `needed` bytes: the
    /// message when the segment holds it all, else `None` (kept pending).
    pub fn first(
        &mut self,
        key: FlowKey,
        seq: u32,
        payload: &[u8],
        needed: usize,
        now_ns: u64,
    ) -> Option<Vec<u8>> {
        if payload.len() >= needed {
            return Some(payload[..needed].to_vec());
        }
        if let Some(p) = self.pending.get_mut(&key) {
            // The first segment again (retransmitted), or a new message
            // on the same flow: start over only for a new one.
            if p.start_seq == seq {
                p.add(seq, payload);
                return None;
            }
            self.remove(&key);
        }
        self.make_room(needed);
        self.serial += 1;
        let mut p = Pending {
            start_seq: seq,
            bytes: vec![0; needed],
            have: Vec::new(),
            started_ns: now_ns,
            serial: self.serial,
        };
        p.add(seq, payload);
        self.bytes += needed;
        self.order.push_back((key, self.serial));
        self.pending.insert(key, p);
        None
    }

    /// Any other segment with payload: the completed message if this was
    /// its last missing piece.
    pub fn next(&mut self, key: &FlowKey, seq: u32, payload: &[u8]) -> Option<Vec<u8>> {
        let p = self.pending.get_mut(key)?;
        if !p.add(seq, payload) || !p.complete() {
            return None;
        }
        self.remove(key).map(|p| p.bytes)
    }

    /// Gives up on messages older than [`PENDING_NS`].
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(key, serial)) = self.order.front() {
            match self.pending.get(&key) {
                Some(p) if p.serial == serial => {
                    if now_ns.saturating_sub(p.started_ns) < PENDING_NS {
                        return;
                    }
                    self.remove(&key);
                    self.unfinished.push(Unfinished::TimedOut);
                }
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    /// Reasons of the messages given up since the last call.
    pub fn take_unfinished(&mut self) -> Vec<Unfinished> {
        std::mem::take(&mut self.unfinished)
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether a message on `key` waits for more segments.
    pub fn is_pending(&self, key: &FlowKey) -> bool {
        self.pending.contains_key(key)
    }

    fn make_room(&mut self, needed: usize) {
        while self.pending.len() >= MAX_PENDING || self.bytes + needed > MAX_PENDING_BYTES {
            let Some((key, serial)) = self.order.pop_front() else {
                return;
            };
            if self.pending.get(&key).is_some_and(|p| p.serial == serial) {
                self.remove(&key);
                self.unfinished.push(Unfinished::Evicted);
            }
        }
    }

    fn remove(&mut self, key: &FlowKey) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.bytes -= p.bytes.len();
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> FlowKey {
        FlowKey::between_test_hosts(port, 443, 6)
    }

    fn hello() -> Vec<u8> {
        nta_lab::tls::post_quantum("split.example").record()
    }

    /// The bytes the hello needs, as the engine reads them from its
    /// record header.
    fn needed(h: &[u8]) -> usize {
        let head: [u8; 9] = h[..9].try_into().unwrap_or_else(|_| panic!("head"));
        agent_common::app::handshake_bytes(head).unwrap_or_else(|| panic!("a hello")) as usize
    }

    #[test]
    fn a_hello_in_one_segment_is_whole_at_once() {
        let mut a = SegmentAssembler::default();
        let h = nta_lab::tls::browser_like("one.example").record();
        let mut seg = h.clone();
        seg.extend(b"and more");
        assert_eq!(a.first(key(1), 5, &seg, needed(&h), 0), Some(h));
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn pieces_in_any_order_give_the_hello_once() {
        let h = hello();
        let (a1, rest) = h.split_at(1000);
        let (a2, a3) = rest.split_at(300);
        let seq = u32::MAX - 500;
        let mut a = SegmentAssembler::default();
        assert_eq!(a.first(key(1), seq, a1, needed(&h), 0), None);
        assert!(a.is_pending(&key(1)) && !a.is_pending(&key(2)));
        assert_eq!(a.next(&key(1), seq.wrapping_add(1300), a3), None);
        // A retransmission of the first changes nothing.
        assert_eq!(a.first(key(1), seq, a1, needed(&h), 1), None);
        assert_eq!(
            a.next(&key(2), seq.wrapping_add(1000), a2),
            None,
            "other flow"
        );
        assert_eq!(a.next(&key(1), seq.wrapping_add(1000), a2), Some(h.clone()));
        assert_eq!(a.pending(), 0);
        assert_eq!(a.next(&key(1), seq.wrapping_add(1000), a2), None, "done");
        // Overlapping pieces: the later copy of a byte wins, the hello completes.
        let mut a = SegmentAssembler::default();
        assert_eq!(a.first(key(3), 0, &h[..900], needed(&h), 0), None);
        assert_eq!(a.next(&key(3), 800, &h[800..1500]), None);
        assert_eq!(a.next(&key(3), 1400, &h[1400..]), Some(h));
    }

    #[test]
    fn hellos_that_never_complete_time_out_or_give_way() {
        let h = hello();
        let mut a = SegmentAssembler::default();
        a.first(key(1), 0, &h[..1000], needed(&h), 0);
        a.expire(PENDING_NS - 1);
        assert_eq!(a.pending(), 1);
        a.expire(PENDING_NS);
        assert_eq!(
            (a.pending(), a.take_unfinished()),
            (0, vec![Unfinished::TimedOut])
        );
        for port in 0..(MAX_PENDING as u16 + 10) {
            a.first(key(port), 0, &h[..1000], needed(&h), 1);
        }
        assert_eq!(a.pending(), MAX_PENDING);
        assert!(a.bytes <= MAX_PENDING_BYTES);
        assert_eq!(a.take_unfinished(), vec![Unfinished::Evicted; 10]);
        // The newest is still there and completes.
        let last = key(MAX_PENDING as u16 + 9);
        assert_eq!(a.next(&last, 1000, &h[1000..]), Some(h));
    }
}
