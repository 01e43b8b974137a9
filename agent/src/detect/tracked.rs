//! A bounded map of tracked keys for the detectors.
//!
//! When full, a new key replaces the lightest of [`PICKS`] entries chosen
//! at random: an approximate Space-Saving that keeps every update O(1)
//! (the exact algorithm's min-heap or stream summary costs far more per
//! packet). Heavy keys survive: an entry is only evicted if it is the
//! lightest of its picks, so under a random-key flood the keys that carry
//! real volume keep their state while one-packet keys churn. Written by
//! hand because the crates with top-K structures count only, and the
//! detectors need their own state per key.

use std::{collections::HashMap, hash::Hash};

/// Entries compared per eviction.
pub const PICKS: usize = 8;

/// State that knows how much it matters.
pub trait Weighted {
    /// Higher survives eviction longer.
    fn weight(&self) -> u64;
}

pub struct Tracked<K, V> {
    index: HashMap<K, u32, foldhash::fast::FixedState>,
    entries: Vec<(K, V)>,
    capacity: usize,
    rng: u64,
    evictions: u64,
}

impl<K: Copy + Eq + Hash, V: Weighted> Tracked<K, V> {
    pub fn new(capacity: usize) -> Tracked<K, V> {
        let capacity = capacity.max(1);
        Tracked {
            index: HashMap::with_capacity_and_hasher(capacity, Default::default()),
            entries: Vec::with_capacity(capacity),
            capacity,
            rng: 0x9E37_79B9_7F4A_7C15,
            evictions: 0,
        }
    }

    /// The state of `key`, created with `init` (evicting a light entry if
    /// the map is full).
    pub fn entry(&mut self, key: K, init: impl FnOnce() -> V) -> &mut V {
        let i = match self.index.get(&key) {
            Some(&i) => i as usize,
            None => self.insert(key, init()),
        };
        &mut self.entries[i].1
    }

    fn insert(&mut self, key: K, value: V) -> usize {
        if self.entries.len() < self.capacity {
            self.entries.push((key, value));
            let i = self.entries.len() - 1;
            self.index.insert(key, i as u32);
            return i;
        }
        let victim = self.lightest_pick();
        self.index.remove(&self.entries[victim].0);
        self.entries[victim] = (key, value);
        self.index.insert(key, victim as u32);
        self.evictions += 1;
        victim
    }

    fn lightest_pick(&mut self) -> usize {
        let n = self.entries.len() as u64;
        let mut best = self.next_index(n);
        let mut best_w = self.entries[best].1.weight();
        for _ in 1..PICKS {
            let i = self.next_index(n);
            let w = self.entries[i].1.weight();
            if w < best_w {
                best = i;
                best_w = w;
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
    use super::*;

    struct Count(u64);
    impl Weighted for Count {
        fn weight(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn holds_at_most_capacity_and_counts_evictions() {
        let mut t: Tracked<u32, Count> = Tracked::new(100);
        for k in 0..1000 {
            t.entry(k, || Count(0)).0 += 1;
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.evictions(), 900);
        // Every key in the index points at its own entry.
        for (k, v) in t.iter() {
            assert_eq!(t.get(k).map(|c| c.0), Some(v.0));
        }
    }

    #[test]
    fn a_heavy_key_survives_a_random_key_flood() {
        let mut t: Tracked<u32, Count> = Tracked::new(1024);
        // One key in 200 packets is the heavy one: 0.5 % of the traffic.
        for i in 0..1_000_000u32 {
            let k = if i % 200 == 0 { u32::MAX } else { i };
            t.entry(k, || Count(0)).0 += 1;
        }
        let heavy = t.get(&u32::MAX).map(|c| c.0);
        assert!(heavy.is_some_and(|n| n > 4000), "heavy key lost: {heavy:?}");
        assert_eq!(t.len(), 1024);
    }

    #[test]
    fn retain_keeps_the_index_consistent() {
        let mut t: Tracked<u32, Count> = Tracked::new(64);
        for k in 0..64 {
            t.entry(k, || Count(u64::from(k)));
        }
        t.retain(|_, v| v.0 % 3 == 0);
        assert_eq!(t.len(), 22);
        for k in 0..64u32 {
            assert_eq!(t.get(&k).is_some(), k % 3 == 0, "key {k}");
            if let Some(v) = t.get(&k) {
                assert_eq!(v.0, u64::from(k));
            }
        }
        // Room again: new keys go in without evicting.
        for k in 100..142 {
            t.entry(k, || Count(1));
        }
        assert_eq!(t.len(), 64);
        assert_eq!(t.evictions(), 0);
    }
}
