//! Hash index of DNS names (rule patterns, private endpoint names), probed by the decision path
//! with borrowed suffixes of the queried name: no allocation per query.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A small multiplicative hasher in the style of `rustc-hash` (FxHash), with a final avalanche
/// so that the low bits the table indexes by depend on every input byte.
///
/// Not DoS-resistant, and it need not be: the keys are the snapshot's own names, fixed at
/// compile time; a query only probes, it never inserts, so no client can grow a collision chain.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // murmur3 fmix64.
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Names (normalised, as in [`Hostname`](crate::Hostname)) to values.
///
/// Two filters in front of the table let most probes of absent names (most wildcard-suffix
/// probes are) end without touching it: the set of key lengths, and a one-hash Bloom filter of
/// about 16 bits per key, small enough to stay in cache.
pub(crate) struct NameIndex<V> {
    map: HashMap<Box<str>, V, BuildHasherDefault<FxHasher>>,
    /// Bit `n` set when some key is `n` bytes long (names are at most 253 bytes).
    lengths: [u64; 4],
    /// Bloom filter bits, indexed by the top `filter_bits` bits of the key hash; empty until
    /// [`NameIndex::finish`].
    filter: Box<[u64]>,
    filter_bits: u32,
}

impl<V> NameIndex<V> {
    pub(crate) fn new() -> Self {
        Self::with_capacity(0)
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            map: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            lengths: [0; 4],
            filter: Box::new([]),
            filter_bits: 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The value for `name`, inserted with `make` if absent. Call [`NameIndex::finish`] after
    /// the last insertion.
    pub(crate) fn entry(&mut self, name: &str, make: impl FnOnce() -> V) -> &mut V {
        if let Some(bits) = self.lengths.get_mut(name.len() / 64) {
            *bits |= 1 << (name.len() % 64);
        }
        self.map.entry(Box::from(name)).or_insert_with(make)
    }

    /// Build the Bloom filter and release spare capacity.
    pub(crate) fn finish(&mut self) {
        self.map.shrink_to_fit();
        // At least 16 bits per key, a power of two, at least 64.
        let want = (self.map.len() * 16).max(64).next_power_of_two();
        self.filter_bits = want.trailing_zeros();
        let mut filter = vec![0u64; want / 64].into_boxed_slice();
        for key in self.map.keys() {
            let bit = self.filter_bit(key);
            if let Some(word) = filter.get_mut(bit / 64) {
                *word |= 1 << (bit % 64);
            }
        }
        self.filter = filter;
    }

    #[inline]
    fn filter_bit(&self, name: &str) -> usize {
        let hash = self.map.hasher().hash_one(name);
        // The table indexes by the low bits; the filter by the high ones.
        (hash >> (64 - self.filter_bits.clamp(1, 63))) as usize
    }

    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<&V> {
        let len = name.len();
        let present = self
            .lengths
            .get(len / 64)
            .is_some_and(|bits| bits & (1 << (len % 64)) != 0);
        if !present {
            return None;
        }
        let bit = self.filter_bit(name);
        // An index never finished has an empty filter: fall through to the table.
        if let Some(word) = self.filter.get(bit / 64)
            && word & (1 << (bit % 64)) == 0
        {
            return None;
        }
        self.map.get(name)
    }
}

/// The proper suffixes of a normalised name that a wildcard pattern can have, longest first:
/// for `a.b.example.com`, `b.example.com` then `example.com`. A single label is never a
/// wildcard suffix (it is a public suffix, refused at compile time), so `com` is not yielded.
#[inline]
pub(crate) fn wildcard_suffixes(name: &str) -> impl Iterator<Item = &str> {
    let last_dot = name.rfind('.').unwrap_or(0);
    name.bytes()
        .enumerate()
        .take(last_dot)
        .filter(|&(_, b)| b == b'.')
        .filter_map(move |(i, _)| name.get(i + 1..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_longest_first_without_tld() {
        let got: Vec<&str> = wildcard_suffixes("a.b.example.com").collect();
        assert_eq!(got, ["b.example.com", "example.com"]);
        assert_eq!(wildcard_suffixes("example.com").count(), 0);
        assert_eq!(wildcard_suffixes("").count(), 0);
        assert_eq!(wildcard_suffixes("nodot").count(), 0);
    }

    #[test]
    fn index_gets_borrowed_names() {
        let mut index = NameIndex::new();
        *index.entry("example.com", || 0) += 1;
        *index.entry("example.com", || 0) += 1;
        *index.entry("a.example.org", || 0) += 5;
        assert_eq!(index.get("example.com"), Some(&2), "before finish");
        index.finish();
        assert_eq!(index.get("example.com"), Some(&2));
        assert_eq!(index.get("a.example.org"), Some(&5));
        assert_eq!(index.get("example.org"), None);
        assert_eq!(index.get("exbmple.com"), None);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn hasher_separates_tails() {
        use std::hash::Hash;
        let hash = |s: &str| {
            let mut h = FxHasher::default();
            s.hash(&mut h);
            h.finish()
        };
        assert_ne!(hash("ab"), hash("ab\0"));
        assert_ne!(hash("example.com"), hash("example.org"));
        assert_ne!(hash(""), hash("\0"));
    }
}
