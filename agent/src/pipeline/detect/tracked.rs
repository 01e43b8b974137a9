//! A bounded map of tracked keys for the detectors.
//!
//! Each key's weight is the number of samples that touched it, decayed
//! (halved) whenever the owner calls [`Tracked::decay`], so weight means
//! "recently busy". When full, a new key replaces the lightest of
//! [`PICKS`] entries chosen at random: an approximate Space-Saving that
//! keeps every update O(1) (the exact algorithm's min-heap or stream
//! summary costs far more per packet). Weights live in their own dense
//! array, so the picks touch a few bytes each instead of whole entries.
//! Heavy keys survive: an entry is only evicted if it is the lightest of
//! its picks, so under a random-key flood the keys that carry real volume
//! keep their state while one-packet keys churn. Written by hand because
//! the crates with top-K structures count only, and the detectors need
//! their own state per key.

use std::{collections::HashMap, hash::Hash};

use crate::pipeline::keyed::{KeyedState, process_random};

/// Entries compared per eviction.
pub const PICKS: usize = 8;

pub struct Tracked<K, V> {
    /// Keyed per process: attackers choose these keys.
    index: HashMap<K, u32, KeyedState>,
    entries: Vec<(K, V)>,
    weights: Vec<u32>,
    capacity: usize,
    rng: u64,
    evictions: u64,
}

impl<K: Copy + Eq + Hash, V> Tracked<K, V> {
    pub fn new(capacity: usize) -> Tracked<K, V> {
        let capacity = capacity.max(1);
        Tracked {
            index: HashMap::with_capacity_and_hasher(capacity, KeyedState),
            entries: Vec::with_capacity(capacity),
            weights: Vec::with_capacity(capacity),
            capacity,
            // Unpredictable, so nobody can time keys to the eviction
            // picks; never 0 (xorshift would stay there).
            rng: process_random(capacity as u64) | 1,
            evictions: 0,
        }
    }

    /// The state of `key`, created with `init` (evicting a light entry if
    /// the map is full); counts one sample towards its weight.
    pub fn entry(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        let i = match self.index.get(&key) {
            Some(&i) => i as usize,
            None => self.insert(key, init()),
        };
        self.weights[i] = self.weights[i].saturating_add(1);
        &mut self.entries[i].1
    }

    fn insert(&mut self, key: K, value: V) -> usize {
        if self.entries.len() < self.capacity {
            self.entries.push((key, value));
            self.weights.push(0);
            let i = self.entries.len() - 1;
            self.index.insert(key, i as u32);
            return i;
        }
        let victim = self.lightest_pick();
        self.index.remove(&self.entries[victim].0);
        self.entries[victim] = (key, value);
        self.weights[victim] = 0;
        self.index.insert(key, victim as u32);
        self.evictions += 1;
        victim
    }

    fn lightest_pick(&mut self) -> usize {
        let n = self.weights.len() as u64;
        let mut best = self.next_index(n);
        for _ in 1..PICKS {
            let i = self.next_index(n);
            if self.weights[i] < self.weights[best] {
                best = i;
            }
        }
        best
    }

    /// xorshift64*: cheap, and good enough to pick eviction candidates.
    fn next_index(&mut self, n: u64) -> usize {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) % n) as usize
    }

    /// Halves every weight, so keys busy long ago make room for new ones.
    pub fn decay(&mut self) {
        for w in &mut self.weights {
            *w /= 2;
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.index.get(key).map(|&i| &self.entries[i as usize].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(K, V)> {
        self.entries.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut (K, V)> {
        self.entries.iter_mut()
    }

    /// Drops entries for which `keep` is false.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let mut i = 0;
        while i < self.entries.len() {
            let (k, v) = &mut self.entries[i];
            if keep(k, v) {
                i += 1;
                continue;
            }
            let key = *k;
            self.index.remove(&key);
            self.entries.swap_remove(i);
            self.weights.swap_remove(i);
            if let Some((moved, _)) = self.entries.get(i) {
                self.index.insert(*moved, i as u32);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    /// Keys an attacker can craft offline against a public hash (the
    /// fixed-seed foldhash this map used): all share their low 10 bits,
    /// where a hash table starts probing, so a table of them is one long
    /// probe chain.
    fn crafted_against_fixed_foldhash(n: usize) -> Vec<[u8; 16]> {
        let public = foldhash::fast::FixedState::default();
        let mut keys = Vec::with_capacity(n);
        let mut candidate = [0u8; 16];
        candidate[0] = 0xfd;
        let mut i: u64 = 0;
        while keys.len() < n {
            candidate[8..].copy_from_slice(&i.to_be_bytes());
            if public.hash_one(candidate) & 1023 == 0 {
                keys.push(candidate);
            }
            i += 1;
        }
        keys
    }

    #[test]
    fn keys_crafted_against_a_public_hash_spread_over_the_buckets() {
        let keys = crafted_against_fixed_foldhash(1000);
        let t: Tracked<[u8; 16], ()> = Tracked::new(1024);
        let mut buckets: Vec<u64> = keys
            .iter()
            .map(|k| t.index.hasher().hash_one(k) & 1023)
            .collect();
        buckets.sort_unstable();
        buckets.dedup();
        // Random hashing puts 1000 keys in ~640 of 1024 buckets; the
        // public hash put them all in one.
        assert!(buckets.len() > 500, "{} buckets", buckets.len());
    }

    #[test]
    fn holds_at_most_capacity_and_counts_evictions() {
        let mut t: Tracked<u32, u64> = Tracked::new(100);
        for k in 0..1000 {
            *t.entry(k, || 0) += 1;
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.evictions(), 900);
        // Every key in the index points at its own entry.
        for (k, v) in t.iter() {
            assert_eq!(t.get(k), Some(v));
        }
    }

    #[test]
    fn a_heavy_key_survives_a_random_key_flood() {
        let mut t: Tracked<u32, u64> = Tracked::new(1024);
        // One key in 200 packets is the heavy one: 0.5 % of the traffic.
        for i in 0..1_000_000u32 {
            let k = if i % 200 == 0 { u32::MAX } else { i };
            *t.entry(k, || 0) += 1;
            if i % 100_000 == 0 {
                t.decay();
            }
        }
        let heavy = t.get(&u32::MAX).copied();
        assert!(heavy.is_some_and(|n| n > 4000), "heavy key lost: {heavy:?}");
        assert_eq!(t.len(), 1024);
    }

    #[test]
    fn decay_lets_a_once_busy_key_go() {
        let mut t: Tracked<u32, u64> = Tracked::new(4);
        for _ in 0..1000 {
            t.entry(0, || 0);
        }
        for k in 1..4 {
            t.entry(k, || 0);
        }
        // Without decay key 0 outweighs any newcomer for a long time.
        for _ in 0..11 {
            t.decay();
        }
        for k in 10..200 {
            t.entry(k, || 0);
            t.entry(k, || 0);
        }
        assert!(t.get(&0).is_none(), "a stale heavy key must make room");
    }

    #[test]
    fn retain_keeps_the_index_consistent() {
        let mut t: Tracked<u32, u64> = Tracked::new(64);
        for k in 0..64 {
            t.entry(k, || u64::from(k));
        }
        t.retain(|_, v| *v % 3 == 0);
        assert_eq!(t.len(), 22);
        for k in 0..64u32 {
            assert_eq!(t.get(&k).is_some(), k % 3 == 0, "key {k}");
            if let Some(v) = t.get(&k) {
                assert_eq!(*v, u64::from(k));
            }
        }
        // Room again: new keys go in without evicting.
        for k in 100..142 {
            t.entry(k, || 1);
        }
        assert_eq!(t.len(), 64);
        assert_eq!(t.evictions(), 0);
    }
}
