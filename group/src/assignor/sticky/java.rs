//! The Java behaviours the sticky assignors' results depend on besides the
//! algorithm itself: `String.hashCode`, `TopicPartition.hashCode` and the
//! iteration order of a `java.util.HashMap` / `HashSet` built with the default
//! capacity.
//!
//! Kafka's assignor walks its input `HashMap<String, Subscription>` (member id
//! → subscription, filled in JoinGroup order) and, when it rebalances, takes
//! "the first" partition out of a `HashSet<TopicPartition>`. Which member or
//! partition comes first decides who keeps what, so we reproduce that order.
//!
//! A default `HashMap` iterates bucket by bucket (`spread(hash) & (capacity -
//! 1)`), and within a bucket in list order: `put` appends a new key to its
//! bucket, `computeIfAbsent` puts it first, removal unlinks, and a resize
//! splits every bucket keeping the relative order. So the order is "(bucket at
//! the current capacity, position)", which is what [`JavaHashOrder`] keeps.
//! The capacity starts at 16 and doubles when the size exceeds 3/4 of it
//! (`put` checks after adding, `computeIfAbsent` before), or when a bucket
//! grows past 8 keys while the table is smaller than 64 (Java's `treeifyBin`
//! resizes instead of building a tree then).
//!
//! Not modelled: a bucket of 9+ keys in a table of 64+ becomes a red-black
//! tree whose iteration order differs. That needs 9 member ids (or 9 moved
//! partitions of one topic between the same two members) in one bucket of a
//! group of 25+: broker-generated member ids (`client.id-UUID`) never get
//! there in practice; the result is still a valid assignment, only possibly
//! not Java's.

/// Java's `String.hashCode`: over UTF-16 code units, wrapping.
pub(crate) fn string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// Java's `TopicPartition.hashCode` from the topic's [`string_hash`].
pub(crate) fn topic_partition_hash(topic_hash: i32, partition: i32) -> i32 {
    31i32
        .wrapping_mul(31i32.wrapping_add(partition))
        .wrapping_add(topic_hash)
}

/// `HashMap.hash`: the high half folded into the low half.
fn spread(hash: i32) -> u32 {
    let h = u32::from_ne_bytes(hash.to_ne_bytes());
    h ^ (h >> 16)
}

const DEFAULT_CAPACITY: u32 = 16;
/// Buckets this long (before the insert) trigger `treeifyBin`.
const TREEIFY_THRESHOLD: usize = 8;
/// Below this capacity `treeifyBin` resizes instead.
const MIN_TREEIFY_CAPACITY: u32 = 64;

/// The iteration order of a default-capacity `java.util.HashMap` (or
/// `HashSet`) over the keys inserted and not removed since.
#[derive(Debug, Clone)]
pub(crate) struct JavaHashOrder<K> {
    /// `(key, spread hash, position in its bucket)`: appended keys count
    /// up from 0, prepended ones down from −1.
    entries: Vec<(K, u32, i64)>,
    /// 0 until the first insert, like Java's lazily allocated table.
    capacity: u32,
    threshold: usize,
    inserted: i64,
}

impl<K: PartialEq> Default for JavaHashOrder<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            capacity: 0,
            threshold: 0,
            inserted: 0,
        }
    }
}

impl<K: PartialEq> JavaHashOrder<K> {
    /// `put` / `add` of `key` with Java hash `hash`; false if already present
    /// (which, as in Java, keeps its place).
    pub(crate) fn insert(&mut self, key: K, hash: i32) -> bool {
        if self.contains(&key) {
            return false;
        }
        if self.capacity == 0 {
            self.resize();
        }
        let spread = spread(hash);
        // putVal walks the bucket and treeifies on appending a 9th key.
        let long_bucket = self.bucket_len(spread) >= TREEIFY_THRESHOLD;
        self.inserted += 1;
        self.entries.push((key, spread, self.inserted));
        if long_bucket && self.capacity < MIN_TREEIFY_CAPACITY {
            self.resize();
        }
        if self.entries.len() > self.threshold {
            self.resize();
        }
        true
    }

    /// `computeIfAbsent(key, …)` with a function that returns a value;
    /// false if already present.
    pub(crate) fn compute_if_absent(&mut self, key: K, hash: i32) -> bool {
        if self.contains(&key) {
            return false;
        }
        if self.capacity == 0 || self.entries.len() > self.threshold {
            self.resize();
        }
        let spread = spread(hash);
        // It counts the keys already there and treeifies from 8 on.
        let long_bucket = self.bucket_len(spread) >= TREEIFY_THRESHOLD - 1;
        self.inserted += 1;
        self.entries.push((key, spread, -self.inserted));
        if long_bucket && self.capacity < MIN_TREEIFY_CAPACITY {
            self.resize();
        }
        true
    }

    fn contains(&self, key: &K) -> bool {
        self.entries.iter().any(|(k, _, _)| k == key)
    }

    fn bucket_len(&self, spread: u32) -> usize {
        let mask = self.capacity - 1;
        self.entries
            .iter()
            .filter(|(_, h, _)| h & mask == spread & mask)
            .count()
    }

    /// `remove`; false if absent.
    pub(crate) fn remove(&mut self, key: &K) -> bool {
        match self.entries.iter().position(|(k, _, _)| k == key) {
            Some(i) => {
                self.entries.remove(i);
                true
            }
            None => false,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What `iterator().next()` returns.
    pub(crate) fn first(&self) -> Option<&K> {
        let mask = self.capacity.wrapping_sub(1);
        self.entries
            .iter()
            .min_by_key(|(_, h, seq)| (h & mask, *seq))
            .map(|(k, _, _)| k)
    }

    /// The keys in iteration order.
    pub(crate) fn into_ordered(mut self) -> Vec<K> {
        let mask = self.capacity.wrapping_sub(1);
        self.entries.sort_by_key(|(_, h, seq)| (h & mask, *seq));
        self.entries.into_iter().map(|(k, _, _)| k).collect()
    }

    fn resize(&mut self) {
        if self.capacity == 0 {
            self.capacity = DEFAULT_CAPACITY;
            self.threshold = 12;
        } else if self.capacity < 1 << 30 {
            // From 16 on Java doubles the threshold with the capacity. It
            // stops growing at 2^30; a group never gets near that.
            self.capacity <<= 1;
            self.threshold <<= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_hash_is_javas() {
        // Values from Java's "...".hashCode().
        assert_eq!(string_hash(""), 0);
        assert_eq!(string_hash("a"), 97);
        assert_eq!(string_hash("Aa"), string_hash("BB"));
        assert_eq!(string_hash("hello"), 99_162_322);
        assert_eq!(string_hash("consumer-1"), -166_239_206);
        // Outside the BMP Java hashes both surrogates.
        assert_eq!(string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn topic_partition_hash_is_javas() {
        // new TopicPartition("t", 0).hashCode() == 31 * 31 + "t".hashCode()
        assert_eq!(topic_partition_hash(string_hash("t"), 0), 961 + 116);
        assert_eq!(
            topic_partition_hash(string_hash("orders"), 7),
            31 * 38 + string_hash("orders")
        );
    }

    fn order(keys: &[&str]) -> Vec<String> {
        let mut map = JavaHashOrder::default();
        for k in keys {
            map.insert((*k).to_owned(), string_hash(k));
        }
        map.into_ordered()
    }

    #[test]
    fn iterates_by_bucket_then_insertion() {
        // new HashMap<>() with "b", "a", "c" iterates a, b, c (hashes 97, 98, 99).
        assert_eq!(order(&["b", "a", "c"]), ["a", "b", "c"]);
        // Same hash: insertion order.
        assert_eq!(order(&["BB", "Aa"]), ["BB", "Aa"]);
        assert_eq!(order(&["Aa", "BB"]), ["Aa", "BB"]);
        // 17 and 1 share bucket 1 of 16 ("\u{11}" vs "\u{1}").
        assert_eq!(
            order(&["\u{11}", "\u{1}", "\u{0}"]),
            ["\u{0}", "\u{11}", "\u{1}"]
        );
    }

    #[test]
    fn resizes_after_twelve_and_on_a_long_bucket() {
        // Hashes 0 and 16 share bucket 0 of 16; the 13th key makes the
        // table 32 wide and 16 moves to bucket 16, behind 1..=11.
        let mut keys: Vec<String> = ["\u{0}", "\u{10}"].map(str::to_owned).to_vec();
        keys.extend((1u8..=11).map(|i| char::from(i).to_string()));
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let twelve = order(&refs[..12]);
        let thirteen = order(&refs);
        assert_eq!(twelve[..3], ["\u{0}", "\u{10}", "\u{1}"]);
        assert_eq!(thirteen[..2], ["\u{0}", "\u{1}"]);
        assert_eq!(thirteen.last().map(String::as_str), Some("\u{10}"));

        // Nine keys with one hash: the ninth resizes 16 -> 32 early.
        let mut map = JavaHashOrder::default();
        for i in 0..9 {
            map.insert(i, 0);
        }
        assert_eq!(map.capacity, 32);
        map.insert(99, 0);
        assert_eq!(map.capacity, 64);
    }

    #[test]
    fn compute_if_absent_puts_first_and_resizes_late() {
        let mut map = JavaHashOrder::default();
        for k in ["Aa", "BB", "a"] {
            map.compute_if_absent(k, string_hash(k));
        }
        assert!(!map.compute_if_absent("a", string_hash("a")));
        // Same bucket: the later key first.
        assert_eq!(map.into_ordered(), ["BB", "Aa", "a"]);

        // 13 keys stay in 16 buckets (put would have resized at 13).
        let mut map = JavaHashOrder::default();
        for i in 0..13 {
            map.compute_if_absent(i, i);
        }
        assert_eq!(map.capacity, 16);
        map.compute_if_absent(13, 13);
        assert_eq!(map.capacity, 32);
    }

    #[test]
    fn first_and_remove() {
        let mut set = JavaHashOrder::default();
        assert!(set.first().is_none());
        assert!(set.insert("x", 5));
        assert!(set.insert("y", 5 + 16));
        assert!(!set.insert("x", 5));
        assert_eq!(set.first(), Some(&"x"));
        assert!(set.remove(&"x"));
        assert!(!set.remove(&"x"));
        // Re-added: now behind "y" in their shared bucket.
        set.insert("x", 5);
        assert_eq!(set.first(), Some(&"y"));
        assert!(!set.is_empty());
    }
}
