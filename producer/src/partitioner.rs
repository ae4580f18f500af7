//! Partition choice, compatible with the Java client.
//!
//! With a key: Kafka's `BuiltInPartitioner.partitionForKey`, i.e.
//! `toPositive(murmur2(key)) % partitions`, so a key lands on the same
//! partition whichever client wrote it. Without a key: round robin, which
//! spreads records evenly over all partitions.

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed
/// `0x9747b28c`, with Java's signed 32-bit arithmetic.
pub(crate) fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let len = data.len();
    // Java computes `seed ^ length` on an int; lengths above 2^31 cannot occur there.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&b) = tail.first() {
        h ^= u32::from(b);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client picks for `key` among `partitions` (> 0).
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2(key) & 0x7fff_ffff;
    positive % partitions.max(1)
}

/// Chooses partitions: by key when there is one, else round robin.
#[derive(Debug, Clone)]
pub(crate) struct Partitioner {
    partitions: i32,
    next: i32,
}

impl Partitioner {
    /// For a topic with `partitions` (> 0) partitions.
    pub(crate) fn new(partitions: i32) -> Self {
        Self {
            partitions: partitions.max(1),
            next: 0,
        }
    }

    /// The partition for the next record.
    pub(crate) fn choose(&mut self, key: Option<&[u8]>) -> i32 {
        match key {
            Some(k) => partition_for_key(k, self.partitions),
            None => {
                let p = self.next;
                self.next = (self.next + 1) % self.partitions;
                p
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (key, Utils.murmur2, partition of 3, partition of 6), computed with
    /// Kafka 4.4's `org.apache.kafka.common.utils.Utils` in jshell.
    const JAVA_VECTORS: &[(&str, i32, i32, i32)] = &[
        ("", 275646681, 0, 3),
        ("a", -1563381124, 1, 4),
        ("ab", 316155434, 2, 2),
        ("abc", 479470107, 0, 3),
        ("21", -973932308, 0, 0),
        ("foobar", -790332482, 0, 0),
        ("key-0", 29210041, 1, 1),
        ("key-1", 193331640, 0, 0),
        ("key-5", -1698326880, 2, 2),
        ("key-7", 713419675, 1, 1),
        ("a-little-bit-long-string", -985981536, 2, 2),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
            2,
            5,
        ),
        ("ünïcödé", 201421315, 1, 1),
    ];

    #[test]
    fn murmur2_matches_the_java_client() {
        for &(key, hash, p3, p6) in JAVA_VECTORS {
            assert_eq!(murmur2(key.as_bytes()), hash, "murmur2({key:?})");
            assert_eq!(partition_for_key(key.as_bytes(), 3), p3, "{key:?} of 3");
            assert_eq!(partition_for_key(key.as_bytes(), 6), p6, "{key:?} of 6");
        }
    }

    #[test]
    fn keyless_records_spread_evenly() {
        let mut p = Partitioner::new(4);
        let mut counts = [0; 4];
        for _ in 0..400 {
            counts[p.choose(None) as usize] += 1;
        }
        assert_eq!(counts, [100; 4]);
    }
}
