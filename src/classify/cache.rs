//! Bounded, sharded, thread-safe cache of SQL text -> [`Classification`] with CLOCK eviction.
//!
//! The key is the exact SQL text. The cache is split into up to 16 shards, each behind its own
//! `parking_lot::Mutex`, so concurrent sessions rarely contend. Each shard holds a fixed number of
//! slots and evicts with the CLOCK (second-chance) algorithm: a hit sets the slot's reference
//! bit; an insert into a full shard sweeps the hand, clearing bits, until it finds a slot whose
//! bit is clear and replaces it. Texts longer than [`MAX_KEY_LEN`] bytes are not cached (they are
//! rarely repeated and would make the memory bound depend on statement size).

use foldhash::{HashMap, HashMapExt};
use std::hash::BuildHasher;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Classification;

/// Longest SQL text (bytes) that is cached.
pub const MAX_KEY_LEN: usize = 8 * 1024;

const MAX_SHARDS: usize = 16;

/// Thread-safe bounded decision cache. Capacity 0 disables it.
pub struct DecisionCache {
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    capacity: usize,
}

struct Slot {
    key: Arc<str>,
    value: Classification,
    referenced: bool,
}

struct Shard {
    capacity: usize,
    index: HashMap<Arc<str>, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            capacity,
            index: HashMap::with_capacity(capacity.min(4096)),
            slots: Vec::with_capacity(capacity.min(4096)),
            hand: 0,
        }
    }

    fn get(&mut self, key: &str) -> Option<Classification> {
        let i = *self.index.get(key)?;
        let slot = self.slots.get_mut(i)?;
        slot.referenced = true;
        Some(slot.value)
    }

    fn insert(&mut self, key: &str, value: Classification) {
        if let Some(&i) = self.index.get(key) {
            if let Some(slot) = self.slots.get_mut(i) {
                slot.value = value;
                slot.referenced = true;
            }
            return;
        }
        let key: Arc<str> = Arc::from(key);
        if self.slots.len() < self.capacity {
            self.index.insert(key.clone(), self.slots.len());
            self.slots.push(Slot {
                key,
                value,
                referenced: false,
            });
            return;
        }
        if self.slots.is_empty() {
            return;
        }
        // CLOCK sweep: at most two turns (the first clears every bit).
        loop {
            let at = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[at];
            if slot.referenced {
                slot.referenced = false;
                continue;
            }
            self.index.remove(&slot.key);
            slot.key = key.clone();
            slot.value = value;
            self.index.insert(key, at);
            return;
        }
    }
}

impl DecisionCache {
    /// A cache holding at most `capacity` decisions (0 = disabled).
    pub fn new(capacity: usize) -> Self {
        let n = capacity.min(MAX_SHARDS);
        let shards = (0..n)
            .map(|i| {
                // Spread the remainder so the shard capacities sum to exactly `capacity`.
                let per = capacity / n + usize::from(i < capacity % n);
                Mutex::new(Shard::new(per))
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        DecisionCache {
            shards,
            hasher: std::collections::hash_map::RandomState::new(),
            capacity,
        }
    }

    fn shard(&self, key: &str) -> Option<&Mutex<Shard>> {
        if self.shards.is_empty() {
            return None;
        }
        let h = self.hasher.hash_one(key);
        let i = (h % self.shards.len() as u64) as usize;
        self.shards.get(i)
    }

    /// The cached decision for exactly this text, if any.
    pub fn get(&self, sql: &str) -> Option<Classification> {
        if sql.len() > MAX_KEY_LEN {
            return None;
        }
        self.shard(sql)?.lock().get(sql)
    }

    /// Remembers the decision for this text (evicting another entry when full).
    pub fn insert(&self, sql: &str, value: Classification) {
        if sql.len() > MAX_KEY_LEN {
            return;
        }
        if let Some(shard) = self.shard(sql) {
            shard.lock().insert(sql, value);
        }
    }

    /// Maximum number of decisions held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of decisions held now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().slots.len()).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::{Intent, Reason};

    fn c(intent: Intent) -> Classification {
        Classification {
            intent,
            reason: Reason::Read,
            hint: None,
        }
    }

    #[test]
    fn disabled_cache_stores_nothing() {
        let cache = DecisionCache::new(0);
        cache.insert("SELECT 1", c(Intent::Read));
        assert_eq!(cache.get("SELECT 1"), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn get_after_insert_and_overwrite() {
        let cache = DecisionCache::new(100);
        assert_eq!(cache.get("SELECT 1"), None);
        cache.insert("SELECT 1", c(Intent::Read));
        assert_eq!(cache.get("SELECT 1"), Some(c(Intent::Read)));
        cache.insert("SELECT 1", c(Intent::Write));
        assert_eq!(cache.get("SELECT 1"), Some(c(Intent::Write)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn bounded_and_clock_keeps_hot_entries() {
        let cache = DecisionCache::new(64);
        cache.insert("hot", c(Intent::Read));
        for i in 0..10_000 {
            cache.insert(&format!("SELECT {i}"), c(Intent::Write));
            // Touch the hot key now and then: its reference bit protects it.
            if i % 2 == 0 {
                assert_eq!(cache.get("hot"), Some(c(Intent::Read)), "round {i}");
            }
            assert!(cache.len() <= 64);
        }
        assert_eq!(cache.len(), 64);
        assert_eq!(cache.capacity(), 64);
    }

    #[test]
    fn small_capacities_sum_exactly() {
        for cap in [1usize, 3, 15, 16, 17, 33] {
            let cache = DecisionCache::new(cap);
            for i in 0..(cap * 20) {
                cache.insert(&format!("q{i}"), c(Intent::Read));
            }
            assert!(cache.len() <= cap, "cap {cap}");
        }
    }

    #[test]
    fn long_texts_are_not_cached() {
        let cache = DecisionCache::new(10);
        let long = "x".repeat(MAX_KEY_LEN + 1);
        cache.insert(&long, c(Intent::Read));
        assert_eq!(cache.get(&long), None);
    }

    #[test]
    fn concurrent_use() {
        let cache = Arc::new(DecisionCache::new(256));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let k = format!("SELECT {}", (i * 7 + t) % 500);
                        cache.insert(&k, c(Intent::Read));
                        if let Some(v) = cache.get(&k) {
                            assert_eq!(v, c(Intent::Read));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(cache.len() <= 256);
    }
}
