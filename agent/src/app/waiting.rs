//! One half of an exchange waiting for the other: a ClientHello for its
//! ServerHello, a DNS query for its response. Bounded in entries and
//! time; what waits too long, or is pushed out by newer ones when the
//! table is full, ends alone and is reported, never lost. Each exchange
//! adds how its halves meet (`handshakes.rs`, `dns_transactions.rs`).

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

use crate::pipeline::keyed::KeyedState;

pub struct Waiting<K, V> {
    entries: HashMap<K, Entry<V>, KeyedState>,
    /// Oldest first: (key, serial at insertion); stale places are skipped.
    order: VecDeque<(K, u64)>,
    serial: u64,
    capacity: usize,
    wait_ns: u64,
    /// Ended since the last [`Self::take`], in the order they ended.
    ended: Vec<V>,
}

struct Entry<V> {
    value: V,
    since_ns: u64,
    serial: u64,
}

impl<K: Hash + Eq + Copy, V> Waiting<K, V> {
    pub fn new(capacity: usize, wait_ns: u64) -> Waiting<K, V> {
        Waiting {
            entries: HashMap::default(),
            order: VecDeque::new(),
            serial: 0,
            capacity: capacity.max(1),
            wait_ns,
            ended: Vec::new(),
        }
    }

    /// Puts `value` to wait under `key` from `now_ns`. What it displaces
    /// (an entry with the same key, or the oldest when full) ends.
    pub fn insert(&mut self, key: K, value: V, now_ns: u64) {
        if let Some(e) = self.entries.remove(&key) {
            self.ended.push(e.value);
        }
        while self.entries.len() >= self.capacity {
            let Some((k, serial)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&k).is_some_and(|e| e.serial == serial)
                && let Some(e) = self.entries.remove(&k)
            {
                self.ended.push(e.value);
            }
        }
        self.serial += 1;
        self.order.push_back((key, self.serial));
        self.entries.insert(
            key,
            Entry {
                value,
                since_ns: now_ns,
                serial: self.serial,
            },
        );
    }

    /// The value waiting under `key`, left there.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|e| &e.value)
    }

    /// The value waiting under `key`, taken out.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|e| e.value)
    }

    /// An exchange that ended (complete, or a half that never waited).
    pub fn end(&mut self, value: V) {
        self.ended.push(value);
    }

    /// Ends every value that waited its time, oldest first.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(key, serial)) = self.order.front() {
            if let Some(e) = self.entries.get(&key)
                && e.serial == serial
            {
                if now_ns.saturating_sub(e.since_ns) < self.wait_ns {
                    return;
                }
                if let Some(e) = self.entries.remove(&key) {
                    self.ended.push(e.value);
                }
            }
            self.order.pop_front();
        }
    }

    /// Ends everything still waiting, oldest first (at stop, at a
    /// file's end).
    pub fn finish(&mut self) {
        let mut rest: Vec<Entry<V>> = self.entries.drain().map(|(_, e)| e).collect();
        rest.sort_by_key(|e| e.serial);
        self.ended.extend(rest.into_iter().map(|e| e.value));
        self.order.clear();
    }

    /// What ended since the last call, in the order it ended.
    pub fn take(&mut self) -> Vec<V> {
        std::mem::take(&mut self.ended)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_wait_their_time_and_give_way_oldest_first() {
        let mut w: Waiting<u16, &str> = Waiting::new(3, 10);
        w.insert(1, "a", 0);
        w.insert(2, "b", 5);
        assert!(w.take().is_empty());
        assert_eq!(w.remove(&1), Some("a"));
        assert_eq!(w.remove(&1), None);
        // Same key again: the first ends.
        w.insert(2, "b2", 6);
        assert_eq!(w.take(), vec!["b"]);
        w.insert(3, "c", 7);
        w.insert(4, "d", 8);
        // Full (3): the oldest still waiting (2 at 6) gave way.
        w.insert(5, "e", 9);
        assert_eq!((w.take(), w.len()), (vec!["b2"], 3));
        w.expire(16);
        assert!(w.take().is_empty(), "c waited 9 of 10");
        w.expire(17);
        w.end("done");
        assert_eq!(w.take(), vec!["c", "done"]);
        w.finish();
        assert_eq!((w.take(), w.is_empty()), (vec!["d", "e"], true));
    }
}

/// An exchange of two halves that may be read in either order: a
/// sensor on two interfaces reads each from its own ring, so an answer
/// can come before its question. Each half waits for the other (the
/// opening half for `wait_ns`, the answer for `answer_wait_ns`); when
/// they meet, `join` makes one record of them.
pub struct Pairing<K, V> {
    opening: Waiting<K, V>,
    answering: Waiting<K, V>,
}

impl<K: Hash + Eq + Copy, V> Pairing<K, V> {
    pub fn new(capacity: usize, wait_ns: u64, answer_wait_ns: u64) -> Pairing<K, V> {
        Pairing {
            opening: Waiting::new(capacity, wait_ns),
            answering: Waiting::new(capacity, answer_wait_ns),
        }
    }

    /// The half that opens an exchange (a query, a ClientHello), under
    /// the key both halves share.
    pub fn opening(&mut self, key: K, v: V, now_ns: u64, join: impl FnOnce(V, V) -> V) {
        match self.answering.remove(&key) {
            Some(answer) => self.opening.end(join(v, answer)),
            None => self.opening.insert(key, v, now_ns),
        }
    }

    /// The answering half (a response, a ServerHello).
    pub fn answering(&mut self, key: K, v: V, now_ns: u64, join: impl FnOnce(V, V) -> V) {
        match self.opening.remove(&key) {
            Some(open) => self.opening.end(join(open, v)),
            None => self.answering.insert(key, v, now_ns),
        }
    }

    /// Ends halves that waited their time alone.
    pub fn expire(&mut self, now_ns: u64) {
        self.opening.expire(now_ns);
        self.answering.expire(now_ns);
    }

    /// Ends everything still waiting.
    pub fn finish(&mut self) {
        self.opening.finish();
        self.answering.finish();
    }

    /// What ended since the last call.
    pub fn take(&mut self) -> Vec<V> {
        let mut out = self.opening.take();
        out.extend(self.answering.take());
        out
    }

    /// Halves waiting (opening, answering).
    pub fn waiting(&self) -> (usize, usize) {
        (self.opening.len(), self.answering.len())
    }
}

#[cfg(test)]
mod pairing_tests {
    use super::*;

    #[test]
    fn halves_meet_in_either_order_or_end_alone() {
        let join = |a: String, b: String| format!("{a}+{b}");
        let mut p: Pairing<u8, String> = Pairing::new(16, 100, 10);
        p.opening(1, "q1".into(), 0, join);
        p.answering(1, "r1".into(), 5, join);
        // The answer first.
        p.answering(2, "r2".into(), 6, join);
        p.opening(2, "q2".into(), 7, join);
        assert_eq!(p.take(), vec!["q1+r1", "q2+r2"]);
        // Alone: an answer after its short wait, a question after its own.
        p.answering(3, "r3".into(), 10, join);
        p.opening(4, "q4".into(), 10, join);
        p.expire(20);
        assert_eq!(p.take(), vec!["r3"]);
        assert_eq!(p.waiting(), (1, 0));
        p.finish();
        assert_eq!(p.take(), vec!["q4"]);
    }
}
