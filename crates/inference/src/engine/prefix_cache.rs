//! Keys/values of recent text-only requests (prompt + the first choice's answer), kept so a
//! request starting with the same tokens (the next turn of a chat, a repeat, a shared system
//! prompt) computes only the rest. A few conversations are kept, least recently used first
//! out, so interleaved clients do not evict each other; their count and the memory their
//! keys/values hold are both bounded.

use std::collections::VecDeque;

use crate::nn::kv_cache::KvCache;

/// One kept sequence: the token ids fed (the prompt's first), and their cache.
struct Entry {
    ids: Vec<u32>,
    prompt_len: usize,
    cache: KvCache,
}

/// How much the prefix cache may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixCacheLimits {
    /// Sequences (conversations) kept; 0 keeps none.
    pub slots: usize,
    /// Bytes of keys/values kept in all, summed over the sequences.
    pub max_bytes: usize,
}

impl Default for PrefixCacheLimits {
    fn default() -> Self {
        Self {
            slots: 4,
            max_bytes: 2 << 30,
        }
    }
}

/// Kept sequences within [`PrefixCacheLimits`], most recently used first.
pub(super) struct PrefixCache {
    entries: VecDeque<Entry>,
    limits: PrefixCacheLimits,
}

impl PrefixCache {
    /// An empty store.
    pub(super) fn new(limits: PrefixCacheLimits) -> Self {
        Self {
            entries: VecDeque::new(),
            limits,
        }
    }

    /// Sequences kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// A cache holding the longest kept prefix of `ids`, and its length; at least the last
    /// prompt token is left to compute (its logits are needed). A sequence whose whole
    /// prompt is reused (a repeat, or the next turn of its conversation: the answer's tokens
    /// may re-tokenize differently inside the new prompt) is taken out, as the new request
    /// supersedes it; one sharing less (a system prompt) is copied and stays available.
    pub(super) fn lookup(&mut self, ids: &[u32]) -> Option<(KvCache, usize)> {
        let limit = ids.len().saturating_sub(1);
        let (index, common) = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.ids.iter().zip(ids).take_while(|(a, b)| a == b).count()))
            // The longest; among equals, the most recent.
            .min_by_key(|&(i, common)| (std::cmp::Reverse(common.min(limit)), i))?;
        let shared = common.min(limit);
        if shared == 0 {
            return None;
        }
        // All but at most the last token of the entry's prompt is shared: the new request
        // holds everything of it worth keeping (a template may tokenize the end of the
        // assistant header differently once the answer follows it).
        let mut cache = if common + 1 >= self.entries[index].prompt_len {
            self.entries.remove(index)?.cache
        } else {
            let entry = self.entries.remove(index)?;
            let copy = entry.cache.prefix(shared).ok()?;
            self.entries.push_front(entry);
            copy
        };
        cache.truncate(shared).ok()?;
        Some((cache, shared))
    }

    /// Keeps `cache` (holding exactly `ids`, of which the first `prompt_len` were the
    /// prompt) as the most recent sequence; sequences it extends are dropped, and the least
    /// recently used beyond the slot count or the byte budget. A sequence larger than the
    /// whole budget is not kept.
    pub(super) fn insert(&mut self, ids: Vec<u32>, prompt_len: usize, cache: KvCache) {
        let bytes = cache.bytes();
        if self.limits.slots == 0 || ids.len() != cache.seq_len() || bytes > self.limits.max_bytes {
            return;
        }
        self.entries.retain(|e| !ids.starts_with(&e.ids));
        self.entries.push_front(Entry {
            ids,
            prompt_len,
            cache,
        });
        self.entries.truncate(self.limits.slots);
        let mut total: usize = self.entries.iter().map(|e| e.cache.bytes()).sum();
        while total > self.limits.max_bytes {
            match self.entries.pop_back() {
                Some(e) => total -= e.cache.bytes(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    fn slots(n: usize) -> PrefixCacheLimits {
        PrefixCacheLimits {
            slots: n,
            ..PrefixCacheLimits::default()
        }
    }

    /// A one-layer cache of `n` positions (the values do not matter here).
    fn cache(n: usize) -> KvCache {
        let mut c = KvCache::new(1);
        if n > 0 {
            let k = Tensor::zeros((1, 1, n, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
            c.layer_mut(0).unwrap().append(&k, &k).unwrap();
        }
        c
    }

    #[test]
    fn reuses_the_longest_kept_prefix_and_leaves_the_last_token() {
        let mut store = PrefixCache::new(slots(4));
        store.insert(vec![1, 2, 3], 2, cache(3));
        store.insert(vec![1, 2, 7, 8, 9], 3, cache(5));
        let (c, n) = store.lookup(&[1, 2, 7, 8, 10]).expect("hit");
        assert_eq!((n, c.seq_len()), (4, 4));
        // The same prompt again: everything but its last token.
        store.insert(vec![1, 2, 3, 4], 4, cache(4));
        let (_, n) = store.lookup(&[1, 2, 3, 4]).expect("hit");
        assert_eq!(n, 3);
        assert!(store.lookup(&[5, 6]).is_none());
    }

    #[test]
    fn a_shared_system_prompt_keeps_the_conversation_and_its_next_turn_takes_it() {
        let mut store = PrefixCache::new(slots(4));
        // Prompt [1, 2, 3, 4], answer [50, 51].
        store.insert(vec![1, 2, 3, 4, 50, 51], 4, cache(6));
        let (_, n) = store.lookup(&[1, 2, 9, 9]).expect("shared system prompt");
        assert_eq!(n, 2);
        assert_eq!(store.len(), 1, "partly reused: still kept");
        // The next turn, whose re-rendered answer tokenizes differently.
        let (c, n) = store.lookup(&[1, 2, 3, 4, 60, 61, 7]).expect("next turn");
        assert_eq!((n, c.seq_len()), (4, 4));
        assert_eq!(store.len(), 0, "superseded: taken out until re-inserted");
    }

    #[test]
    fn keeps_the_most_recent_slots_and_drops_extended_sequences() {
        let mut store = PrefixCache::new(slots(2));
        store.insert(vec![1, 2], 2, cache(2));
        store.insert(vec![1, 2, 3], 2, cache(3));
        assert_eq!(store.len(), 1, "[1, 2, 3] supersedes [1, 2]");
        store.insert(vec![4, 5], 1, cache(2));
        store.insert(vec![6, 7], 1, cache(2));
        assert_eq!(store.len(), 2);
        assert!(
            store.lookup(&[1, 2, 3, 0]).is_none(),
            "least recent evicted"
        );
        assert!(store.lookup(&[4, 5, 0]).is_some());
        // A cache that does not hold exactly its ids is not kept; nor is anything with 0 slots.
        store.insert(vec![8, 8, 8], 3, cache(2));
        assert!(store.lookup(&[8, 8, 8, 0]).is_none());
        let mut none = PrefixCache::new(slots(0));
        none.insert(vec![1, 2], 2, cache(2));
        assert!(none.lookup(&[1, 2, 3]).is_none());
    }

    #[test]
    fn the_byte_budget_evicts_the_least_recent_and_refuses_what_cannot_fit() {
        // cache(n) holds 2 tensors of n × 2 f32: 16 bytes per position.
        assert_eq!(cache(3).bytes(), 48);
        let mut store = PrefixCache::new(PrefixCacheLimits {
            slots: 8,
            max_bytes: 100,
        });
        store.insert(vec![1, 2, 3], 3, cache(3));
        store.insert(vec![4, 5, 6], 3, cache(3));
        assert_eq!(store.len(), 2, "96 bytes fit");
        store.insert(vec![7, 8], 2, cache(2));
        assert_eq!(store.len(), 2, "128 bytes do not: the oldest goes");
        assert!(store.lookup(&[1, 2, 3, 0]).is_none());
        assert!(store.lookup(&[4, 5, 6, 0]).is_some());
        store.insert(vec![9; 7], 7, cache(7));
        assert!(
            store.lookup(&[9; 8]).is_none(),
            "112 bytes alone exceed the budget"
        );
    }
}
