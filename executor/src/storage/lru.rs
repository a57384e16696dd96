//! The in-memory index of the local CAS: which blobs are on disk, their sizes, and the
//! order in which they were last used.
//!
//! It owns no I/O: the disk store asks it what to evict and deletes the files itself,
//! after the index lock is released. Keys are hashes (a file is named by its hash), and
//! a blob counts as present only when the size asked for matches the size on disk.

use std::collections::{BTreeMap, HashMap};

struct Entry {
    size: u64,
    /// Position in `order`; larger means used more recently.
    tick: u64,
}

/// Blobs by hash with least-recently-used ordering and a running byte total.
#[derive(Default)]
pub struct LruIndex {
    entries: HashMap<String, Entry>,
    order: BTreeMap<u64, String>,
    next_tick: u64,
    total_bytes: u64,
}

impl LruIndex {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Whether `hash` is indexed with exactly `size` bytes. Does not change recency.
    pub fn contains(&self, hash: &str, size: u64) -> bool {
        self.entries
            .get(hash)
            .is_some_and(|entry| entry.size == size)
    }

    /// Whether `hash` is indexed with any size.
    pub fn contains_hash(&self, hash: &str) -> bool {
        self.entries.contains_key(hash)
    }

    /// Marks `hash` as just used; false when it is not indexed with `size` bytes.
    pub fn touch(&mut self, hash: &str, size: u64) -> bool {
        let tick = self.bump();
        match self.entries.get_mut(hash) {
            Some(entry) if entry.size == size => {
                let old = std::mem::replace(&mut entry.tick, tick);
                let name = self.order.remove(&old).expect("order mirrors entries");
                self.order.insert(tick, name);
                true
            }
            _ => false,
        }
    }

    /// Indexes a blob as the most recently used one, replacing any entry of that hash
    /// (a file of the wrong size is overwritten by the rename that precedes this call).
    pub fn insert(&mut self, hash: &str, size: u64) {
        self.remove(hash);
        let tick = self.bump();
        self.entries.insert(hash.to_owned(), Entry { size, tick });
        self.order.insert(tick, hash.to_owned());
        self.total_bytes += size;
    }

    /// Forgets `hash`; returns its size if it was indexed.
    pub fn remove(&mut self, hash: &str) -> Option<u64> {
        let entry = self.entries.remove(hash)?;
        self.order.remove(&entry.tick);
        self.total_bytes -= entry.size;
        Some(entry.size)
    }

    /// Removes least recently used blobs until the total is at most `max_bytes`, never
    /// removing `keep` (the blob just written: an oversized blob stays until the next
    /// write rather than vanishing under its writer). Returns what was removed, so the
    /// caller can delete the files without holding the index.
    pub fn evict_to(&mut self, max_bytes: u64, keep: &str) -> Vec<(String, u64)> {
        let mut evicted = Vec::new();
        let mut cursor = self.order.iter();
        let mut victims = Vec::new();
        let mut projected = self.total_bytes;
        while projected > max_bytes {
            let Some((_, hash)) = cursor.next() else {
                break;
            };
            if hash == keep {
                continue;
            }
            let size = self.entries[hash].size;
            projected -= size;
            victims.push(hash.clone());
        }
        for hash in victims {
            if let Some(size) = self.remove(&hash) {
                evicted.push((hash, size));
            }
        }
        evicted
    }

    fn bump(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut index = LruIndex::default();
        index.insert("a", 10);
        index.insert("b", 10);
        index.insert("c", 10);
        assert!(index.touch("a", 10));
        index.insert("d", 10);
        let evicted = index.evict_to(25, "d");
        assert_eq!(evicted, vec![("b".to_owned(), 10), ("c".to_owned(), 10)]);
        assert_eq!(index.total_bytes(), 20);
        assert!(index.contains("a", 10) && index.contains("d", 10));
        assert!(!index.contains("b", 10));
    }

    #[test]
    fn keeps_the_blob_just_written_even_when_oversized() {
        let mut index = LruIndex::default();
        index.insert("old", 5);
        index.insert("huge", 100);
        let evicted = index.evict_to(50, "huge");
        assert_eq!(evicted, vec![("old".to_owned(), 5)]);
        assert!(index.contains("huge", 100));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn size_must_match() {
        let mut index = LruIndex::default();
        index.insert("a", 3);
        assert!(!index.contains("a", 4));
        assert!(!index.touch("a", 4));
        index.insert("a", 4);
        assert_eq!(index.total_bytes(), 4);
        assert_eq!(index.remove("a"), Some(4));
        assert_eq!(index.total_bytes(), 0);
    }
}
