//! Index of DNS names (rule patterns, private endpoint names) for the decision path.
//!
//! A query name is hashed once, from its last label to its first ([`NameProbe`]): the hash of
//! every suffix that starts at a label falls out of that one pass, so the name itself and each
//! of its wildcard suffixes cost one probe each, in every index, with no further hashing and no
//! allocation.
//!
//! An index ([`NameIndex`]) is an open-addressing table built once at compile time, laid out
//! for few cache misses: an array of 16-bit hash tags (linear probing; small, so a probe for an
//! absent name mostly stays in cache), and beside it, at the same position, a 64-byte record
//! holding the key and its value in one cache line. A probe compares tags, and only on a tag
//! match the key bytes: a name is found only when it is byte for byte the key. An index of few
//! names can also keep the last two labels of its keys ([`NameIndex::with_tail_filter`]), so
//! that one probe tells a name under none of its domains; a large one, the rule a hit in each
//! slot most likely reads first ([`NameIndex::with_hints`]), which a probe starts loading
//! while it compares the key.

use crate::hostname::MAX_HOSTNAME_LEN;
use crate::{Hostname, RuleRef};

/// Most labels a [`Hostname`] can have: one-character labels and their dots in 253 bytes.
const MAX_LABELS: usize = MAX_HOSTNAME_LEN.div_ceil(2);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// Fold one word into the running hash (FxHash-style: rotate, xor, multiply).
#[inline]
fn mix(hash: u64, word: u64) -> u64 {
    (hash.rotate_left(5) ^ word).wrapping_mul(SEED)
}

/// murmur3 fmix64: every output bit depends on every input bit, so the table can index by the
/// low bits and tag by the high ones.
#[inline]
fn finish(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The little-endian word at `at` (0 past the end).
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// The bytes `start..end` (at most 8) of `bytes` as a little-endian word, zero-extended: a
/// whole-word read ending at `end`, shifted down.
#[inline(always)]
fn word_before(bytes: &[u8], start: usize, end: usize) -> u64 {
    let len = end - start;
    if len == 0 {
        return 0;
    }
    let below = ((8 - len) * 8) as u32;
    if let Some(at) = end.checked_sub(8) {
        return word_at(bytes, at) >> below;
    }
    if bytes.len() >= 8 {
        // Near the start: the first word, without the bytes from `end` on.
        let above = ((8 - end) * 8) as u32;
        return (word_at(bytes, 0) << above) >> below;
    }
    // A name shorter than a word.
    bytes
        .iter()
        .take(end)
        .skip(start)
        .rev()
        .fold(0, |w, &b| (w << 8) | u64::from(b))
}

/// 0x80 in each byte of `word` that is a `.`, 0 elsewhere (exact: no borrow crosses bytes).
#[inline]
fn dots(word: u64) -> u64 {
    const DOTS: u64 = u64::from_ne_bytes([b'.'; 8]);
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    let t = word ^ DOTS;
    !(((t & LOW7).wrapping_add(LOW7)) | t | LOW7)
}

/// Fold the label `start..end` into the hash of the labels to its right: its length, then its
/// bytes a word at a time from its end. The length keeps `ab.c`, `a.bc`, `abc` and `ab\0`
/// apart (the encoding of a label sequence as words is injective).
#[inline(always)]
fn mix_label(mut hash: u64, name: &[u8], start: usize, mut end: usize) -> u64 {
    hash = mix(hash, (end - start) as u64);
    while end - start > 8 {
        end -= 8;
        hash = mix(hash, word_at(name, end));
    }
    mix(hash, word_before(name, start, end))
}

/// The hash of a whole name, as [`NameProbe`] computes it for the name and its suffixes.
fn hash_name(name: &[u8]) -> u64 {
    let mut hash = SEED;
    let mut end = name.len();
    for (i, _) in name.iter().enumerate().rev().filter(|&(_, &b)| b == b'.') {
        hash = mix_label(hash, name, i + 1, end);
        end = i;
    }
    finish(mix_label(hash, name, 0, end))
}

/// Suffix hashes a [`NameProbe`] keeps: names with more labels (rare) hash their longer
/// suffixes when probed.
const HASHED: usize = 16;

/// A name to look up, with the start and hash of each suffix that begins at a label: computed
/// once per decision, in one pass from the right, and shared by every index probed.
pub(crate) struct NameProbe<'a> {
    name: &'a [u8],
    /// `starts[i]`: where the suffix of `i + 1` labels starts.
    starts: [u8; MAX_LABELS],
    /// `hashes[i]`: the hash of the suffix of `i + 1` labels.
    hashes: [u64; HASHED],
    /// Number of labels; 0 for a name that is no [`Hostname`] (too long), which matches nothing.
    labels: usize,
}

impl<'a> NameProbe<'a> {
    /// Probe `name` in `f`. (The probe lives in this frame: it is never copied.)
    #[inline(always)]
    pub(crate) fn with<R>(name: &'a Hostname, f: impl FnOnce(&NameProbe<'a>) -> R) -> R {
        Self::with_bytes(name.as_str().as_bytes(), f)
    }

    #[inline(always)]
    fn with_bytes<R>(name: &'a [u8], f: impl FnOnce(&NameProbe<'a>) -> R) -> R {
        let mut probe = Self {
            name,
            starts: [0; MAX_LABELS],
            hashes: [0; HASHED],
            labels: 0,
        };
        if !name.is_empty() && name.len() <= MAX_HOSTNAME_LEN {
            probe.index();
        }
        f(&probe)
    }

    /// One pass from the right, a word at a time: each dot closes a label, whose suffix is
    /// hashed from the hash of the suffix before.
    #[inline(always)]
    fn index(&mut self) {
        let name = self.name;
        let mut hash = SEED;
        let mut labels = 0;
        let mut end = name.len();
        let mut word_end = name.len();
        while word_end > 0 {
            let at = word_end.saturating_sub(8);
            let mut found = dots(word_before(name, at, word_end));
            while found != 0 {
                // The rightmost dot left in the word.
                let bit = 63 - found.leading_zeros();
                let dot = at + (bit / 8) as usize;
                hash = mix_label(hash, name, dot + 1, end);
                if !self.record(labels, dot + 1, hash) {
                    return;
                }
                labels += 1;
                end = dot;
                found ^= 1 << bit;
            }
            word_end = at;
        }
        hash = mix_label(hash, name, 0, end);
        if self.record(labels, 0, hash) {
            self.labels = labels + 1;
        }
    }

    /// Note the suffix of `i + 1` labels; `false` past the most labels a name can have.
    #[inline(always)]
    fn record(&mut self, i: usize, start: usize, hash: u64) -> bool {
        let Some(slot) = self.starts.get_mut(i) else {
            return false;
        };
        // `start` < 253: the name is at most that long.
        *slot = start as u8;
        if let Some(slot) = self.hashes.get_mut(i) {
            *slot = finish(hash);
        }
        true
    }

    /// The hash of the last two labels, for a name of two labels or more.
    #[inline]
    fn tail(&self) -> Option<u64> {
        if self.labels < 2 {
            return None;
        }
        self.hashes.get(1).copied()
    }

    /// The whole name.
    #[inline]
    pub(crate) fn full(&self) -> Option<Key<'_>> {
        self.suffix(self.labels.checked_sub(1)?)
    }

    /// The proper suffixes of the name that a wildcard pattern can have, longest first: for
    /// `a.b.example.com`, `b.example.com` then `example.com`. A single label is never a
    /// wildcard suffix (it is a public suffix, refused at compile time), so `com` is not
    /// yielded.
    #[inline]
    pub(crate) fn wildcard_suffixes(&self) -> impl Iterator<Item = Key<'_>> {
        (1..self.labels.saturating_sub(1))
            .rev()
            .filter_map(|i| self.suffix(i))
    }

    /// The suffix of `i + 1` labels.
    #[inline]
    fn suffix(&self, i: usize) -> Option<Key<'_>> {
        let bytes = self.name.get(usize::from(*self.starts.get(i)?)..)?;
        let hash = match self.hashes.get(i) {
            Some(&hash) => hash,
            None => hash_name(bytes),
        };
        Some(Key { bytes, hash })
    }
}

/// A name (or suffix) and its hash.
#[derive(Clone, Copy)]
pub(crate) struct Key<'a> {
    bytes: &'a [u8],
    hash: u64,
}

impl Key<'_> {
    #[inline]
    fn tag(self) -> u16 {
        // Never 0, the tag of an empty slot.
        ((self.hash >> 48) as u16) | 1
    }
}

/// Keys of at most this many bytes (most names) are kept in their record, so that one cache
/// line holds a key and its value (a record is 64 bytes with a value of up to 32 bytes);
/// longer keys are kept in an arena.
const INLINE: usize = 31;

/// A key and its value (an empty slot's record: no key, a default value).
#[derive(Default)]
#[repr(align(64))]
struct Record<V> {
    value: V,
    len: u8,
    /// The key, when at most [`INLINE`] bytes long; else where it starts in the arena
    /// (little-endian `u32`).
    key: [u8; INLINE],
}

impl<V> Record<V> {
    #[inline]
    fn key<'a>(&'a self, arena: &'a [u8]) -> Option<&'a [u8]> {
        let len = usize::from(self.len);
        if len <= INLINE {
            self.key.get(..len)
        } else {
            let start = self
                .key
                .first_chunk()
                .copied()
                .map_or(0, u32::from_le_bytes) as usize;
            arena.get(start..start + len)
        }
    }
}

/// Normalised names (as in [`Hostname`]) to values; built once, then only probed.
///
/// Not DoS-resistant hashing, and it need not be: the keys are the snapshot's own names, fixed
/// at compile time; a query only probes, it never inserts, so no client can grow a probe
/// sequence, and every candidate is confirmed by comparing the key bytes.
pub(crate) struct NameIndex<V> {
    /// Open addressing, linear probing, at most 2/3 full: the hash tag of the key in each slot
    /// (never 0), 0 for an empty slot. Small, so that a probe for an absent name (most
    /// wildcard-suffix probes) mostly stays in cache.
    tags: Box<[u16]>,
    /// The record of each slot: it lies where the hash says, so it can be read while the tag
    /// is compared.
    records: Box<[Record<V>]>,
    /// For each slot, the rule a hit most likely reads first (see
    /// [`NameIndex::with_hints`]); empty without hints.
    hints: Box<[Option<RuleRef>]>,
    len: usize,
    /// Keys longer than [`INLINE`], back to back.
    arena: Box<[u8]>,
    /// Bit `n` set when some key is `n` bytes long (names are at most 253 bytes).
    lengths: [u64; 4],
    tails: Tails,
}

/// The last two labels of the keys, as hashes. Every key has at least two labels, and so has
/// every suffix a name is probed with: a name whose last two labels end no key matches none,
/// and one probe here spares the others.
struct Tails {
    /// Open addressing, linear probing, at most half full: 0 for an empty slot, else a tail's
    /// hash with the low bit set.
    slots: Box<[u64]>,
    /// No filter (or some key has a single label): everything may match.
    off: bool,
}

impl Tails {
    /// No filter.
    fn none() -> Self {
        Self {
            slots: Box::new([]),
            off: true,
        }
    }

    fn build<'n>(keys: impl Iterator<Item = &'n [u8]>) -> Self {
        let mut off = false;
        let mut hashes = Vec::new();
        for key in keys {
            let mut dots = key.iter().enumerate().rev().filter(|&(_, &b)| b == b'.');
            let (Some(_), second) = (dots.next(), dots.next()) else {
                off = true;
                continue;
            };
            let tail = key
                .get(second.map_or(0, |(i, _)| i + 1)..)
                .unwrap_or_default();
            hashes.push(hash_name(tail) | 1);
        }
        hashes.sort_unstable();
        hashes.dedup();
        let mut tails = Self {
            slots: vec![0; (hashes.len() * 2).max(1).next_power_of_two()].into_boxed_slice(),
            off,
        };
        for hash in hashes {
            let mask = tails.slots.len() - 1;
            let mut at = hash as usize & mask;
            while let Some(slot) = tails.slots.get_mut(at) {
                if *slot == 0 || *slot == hash {
                    *slot = hash;
                    break;
                }
                at = (at + 1) & mask;
            }
        }
        tails
    }

    /// Whether some key ends with the tail of this hash (`None`: a name of one label).
    #[inline]
    fn may_hold(&self, tail: Option<u64>) -> bool {
        let Some(hash) = tail else {
            return true;
        };
        if self.off {
            return true;
        }
        let hash = hash | 1;
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = hash as usize & mask;
        // The set is never full, so an empty slot ends every probe; the bound is for show.
        for _ in 0..self.slots.len() {
            match self.slots.get(at) {
                Some(&slot) if slot == hash => return true,
                Some(0) | None => return false,
                Some(_) => at = (at + 1) & mask,
            }
        }
        true
    }
}

impl<V: Default> NameIndex<V> {
    pub(crate) fn new() -> Self {
        Self::build(Vec::new())
    }

    /// Index `entries`; a name given twice keeps its last value. Names longer than 253 bytes
    /// (no [`Hostname`] is) are not indexed.
    pub(crate) fn build<'n>(entries: impl IntoIterator<Item = (&'n str, V)>) -> Self {
        let entries: Vec<(&str, V)> = entries.into_iter().collect();
        let capacity = (entries.len() + entries.len() / 2 + 1).next_power_of_two();
        let mut index = Self {
            tags: vec![0; capacity].into_boxed_slice(),
            records: std::iter::repeat_with(Record::default)
                .take(capacity)
                .collect(),
            hints: Box::new([]),
            len: 0,
            arena: Box::new([]),
            lengths: [0; 4],
            tails: Tails::none(),
        };
        let mut arena = Vec::new();
        for (name, value) in entries {
            let bytes = name.as_bytes();
            let key = Key {
                bytes,
                hash: hash_name(bytes),
            };
            match index.find(key, &arena) {
                Ok(at) => {
                    if let Some(record) = index.records.get_mut(at) {
                        record.value = value;
                    }
                }
                Err(at) => {
                    let (Ok(len), Ok(spill)) =
                        (u8::try_from(bytes.len()), u32::try_from(arena.len()))
                    else {
                        // Longer than a name, or past 4 GiB of names: not indexed, so its rules
                        // never allow (fail closed); no document comes near.
                        continue;
                    };
                    let mut stored = [0; INLINE];
                    if let Some(head) = stored.get_mut(..bytes.len()) {
                        head.copy_from_slice(bytes);
                    } else {
                        stored[..4].copy_from_slice(&spill.to_le_bytes());
                        arena.extend_from_slice(bytes);
                    }
                    if let (Some(tag), Some(record)) =
                        (index.tags.get_mut(at), index.records.get_mut(at))
                    {
                        *tag = key.tag();
                        *record = Record {
                            value,
                            len,
                            key: stored,
                        };
                        index.len += 1;
                    }
                    if let Some(bits) = index.lengths.get_mut(bytes.len() / 64) {
                        *bits |= 1 << (bytes.len() % 64);
                    }
                }
            }
        }
        index.arena = arena.into_boxed_slice();
        index
    }
}

impl<V> NameIndex<V> {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keep, for each slot, the rule a hit most likely reads first, as `hint` says: a probe
    /// reads it while it compares the key, so that the rule (another cache line, and likely a
    /// miss in a large index) comes in while the record does, not after.
    pub(crate) fn with_hints(mut self, hint: impl Fn(&V) -> Option<RuleRef>) -> Self {
        let slots = self.tags.iter().zip(self.records.iter());
        self.hints = slots
            .map(|(&tag, record)| if tag == 0 { None } else { hint(&record.value) })
            .collect();
        self
    }

    /// Keep the last two labels of the keys, for [`NameIndex::may_match`]: worth it for an
    /// index of few names (operator rules, private endpoints), which most queries fall outside
    /// of.
    pub(crate) fn with_tail_filter(mut self) -> Self {
        let keys = self.tags.iter().zip(self.records.iter());
        let keys = keys.filter(|&(&tag, _)| tag != 0);
        self.tails = Tails::build(keys.filter_map(|(_, record)| record.key(&self.arena)));
        self
    }

    /// Whether any key can match `name` or one of its suffixes: `false` when the index is
    /// empty, or (with a tail filter) no key ends with the name's last two labels.
    #[inline]
    pub(crate) fn may_match(&self, name: &NameProbe<'_>) -> bool {
        !self.is_empty() && self.tails.may_hold(name.tail())
    }

    /// `Ok(slot)` of `key`, or `Err(empty slot)` where it would go.
    #[inline]
    fn find(&self, key: Key<'_>, arena: &[u8]) -> Result<usize, usize> {
        let mask = self.tags.len().wrapping_sub(1);
        let tag = key.tag();
        let mut at = key.hash as usize & mask;
        // The table is never full, so an empty slot ends every probe; the bound is for show.
        for _ in 0..self.tags.len() {
            match self.tags.get(at) {
                Some(0) | None => return Err(at),
                Some(&t) if t == tag => {
                    if let Some(Some(rule)) = self.hints.get(at) {
                        rule.0.prefetch();
                    }
                    let stored = self.records.get(at).and_then(|r| r.key(arena));
                    if stored == Some(key.bytes) {
                        return Ok(at);
                    }
                }
                Some(_) => {}
            }
            at = (at + 1) & mask;
        }
        Err(usize::MAX)
    }

    /// The value for `key`.
    #[inline]
    pub(crate) fn get(&self, key: Key<'_>) -> Option<&V> {
        let len = key.bytes.len();
        let present = self
            .lengths
            .get(len / 64)
            .is_some_and(|bits| bits & (1 << (len % 64)) != 0);
        if !present {
            return None;
        }
        let at = self.find(key, &self.arena).ok()?;
        self.records.get(at).map(|r| &r.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl<'a> NameProbe<'a> {
        fn of(name: &'a [u8]) -> Self {
            Self::with_bytes(name, |probe| Self {
                name: probe.name,
                starts: probe.starts,
                hashes: probe.hashes,
                labels: probe.labels,
            })
        }
    }

    fn host(name: &str) -> Hostname {
        name.parse().unwrap()
    }

    fn suffixes(name: &str) -> Vec<String> {
        let name = host(name);
        NameProbe::with(&name, |probe| {
            probe
                .wildcard_suffixes()
                .map(|k| String::from_utf8(k.bytes.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn suffixes_longest_first_without_tld() {
        assert_eq!(
            suffixes("a.b.example.com"),
            ["b.example.com", "example.com"]
        );
        assert_eq!(suffixes("example.com"), Vec::<String>::new());
        assert_eq!(suffixes("x.example.com"), ["example.com"]);
        let empty = NameProbe::of(b"");
        assert!(empty.full().is_none());
        assert_eq!(empty.wildcard_suffixes().count(), 0);
        let long = vec![b'a'; MAX_HOSTNAME_LEN + 1];
        assert!(
            NameProbe::of(&long).full().is_none(),
            "longer than a Hostname"
        );
    }

    #[test]
    fn probe_hashes_equal_whole_name_hashes() {
        let name = host("a.bcdefghijk.lmnopqrstuvwxyz0123456789.example.co.uk");
        let probe = NameProbe::of(name.as_str().as_bytes());
        let full = probe.full().unwrap();
        assert_eq!(full.bytes, name.as_str().as_bytes());
        assert_eq!(full.hash, hash_name(full.bytes));
        for key in probe.wildcard_suffixes() {
            assert_eq!(key.hash, hash_name(key.bytes));
        }
        // Most labels a Hostname can have.
        let many = vec!["a"; MAX_LABELS].join(".");
        assert_eq!(many.len(), MAX_HOSTNAME_LEN);
        let probe = NameProbe::of(many.as_bytes());
        let full = probe.full().unwrap();
        assert_eq!(full.bytes, many.as_bytes());
        assert_eq!(full.hash, hash_name(full.bytes));
        let suffixes: Vec<Key<'_>> = probe.wildcard_suffixes().collect();
        assert_eq!(suffixes.len(), MAX_LABELS - 2);
        for (i, key) in suffixes.iter().enumerate() {
            assert_eq!(key.bytes, &many.as_bytes()[2 * i + 2..]);
            assert_eq!(key.hash, hash_name(key.bytes));
        }
    }

    #[test]
    fn probe_agrees_with_splitting_on_dots() {
        // Names of every shape up to a few words long: label lengths 1-19, 2-6 labels.
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        for _ in 0..2000 {
            let labels = 2 + next(5);
            let name: Vec<String> = (0..labels)
                .map(|_| {
                    let len = 1 + next(19);
                    (0..len)
                        .map(|_| char::from(b"abcxyz019-"[next(10) as usize]))
                        .collect::<String>()
                        .trim_matches('-')
                        .to_owned()
                })
                .map(|l| if l.is_empty() { "q".to_owned() } else { l })
                .collect();
            let name = name.join(".");
            let Ok(host) = name.parse::<Hostname>() else {
                continue;
            };
            let probe = NameProbe::of(host.as_str().as_bytes());
            let bytes = host.as_str().as_bytes();
            let full = probe.full().unwrap();
            assert_eq!(full.bytes, bytes);
            assert_eq!(full.hash, hash_name(bytes), "{host}");
            let want: Vec<&str> = host
                .as_str()
                .match_indices('.')
                .map(|(i, _)| &host.as_str()[i + 1..])
                .filter(|s| s.contains('.'))
                .collect();
            let got: Vec<Key<'_>> = probe.wildcard_suffixes().collect();
            assert_eq!(got.len(), want.len(), "{host}");
            for (key, want) in got.iter().zip(want) {
                assert_eq!(key.bytes, want.as_bytes(), "{host}");
                assert_eq!(key.hash, hash_name(key.bytes), "{host}");
            }
        }
    }

    #[test]
    fn hash_separates_label_boundaries() {
        let names: [&[u8]; 12] = [
            b"ab.c",
            b"a.bc",
            b"abc",
            b"abcdefgh.i",
            b"abcdefghi",
            b"i.abcdefgh",
            b"example.com",
            b"example.org",
            b"ab",
            b"ab\0",
            b"",
            b"\0",
        ];
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(hash_name(a), hash_name(b), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn index_finds_exactly_its_keys() {
        let index =
            NameIndex::build([("example.com", 1), ("a.example.org", 5), ("example.com", 2)]);
        assert_eq!(index.len(), 2);
        let get = |name: &str| {
            let name = host(name);
            let probe = NameProbe::of(name.as_str().as_bytes());
            index.get(probe.full().unwrap()).copied()
        };
        assert_eq!(get("example.com"), Some(2), "last value wins");
        assert_eq!(get("a.example.org"), Some(5));
        assert_eq!(get("example.org"), None);
        assert_eq!(get("exbmple.com"), None);
        // A key with the right hash but other bytes is not found.
        let forged = Key {
            bytes: b"exbmple.com",
            hash: hash_name(b"example.com"),
        };
        assert_eq!(index.get(forged), None);
        let empty: NameIndex<u8> = NameIndex::new();
        assert!(empty.is_empty());
        assert_eq!(empty.get(forged), None);
    }

    #[test]
    fn index_keeps_long_keys_apart() {
        let long = |c: &str, n: usize| format!("{}.example.com", vec![c; n].join("."));
        let names = [
            long("a", 9),  // 29 bytes: inline
            long("ab", 6), // 29 bytes
            long("a", 10), // 31 bytes: inline, full
            long("ab", 7), // 32 bytes: in the arena
            long("a", 11), // 33 bytes
            long("ab", 8),
            long("b", 120), // 251 bytes
        ];
        assert_eq!(names[2].len(), INLINE);
        assert_eq!(names[3].len(), INLINE + 1);
        let index = NameIndex::build(names.iter().enumerate().map(|(i, n)| (n.as_str(), i)));
        for (i, name) in names.iter().enumerate() {
            let probe = NameProbe::of(name.as_bytes());
            assert_eq!(index.get(probe.full().unwrap()), Some(&i), "{name}");
            let forged = format!("{}x", &name[..name.len() - 1]);
            let forged = Key {
                bytes: forged.as_bytes(),
                hash: probe.full().unwrap().hash,
            };
            assert_eq!(index.get(forged), None, "{name}");
        }
        let too_long = "a".repeat(300);
        let index = NameIndex::build([(too_long.as_str(), 1)]);
        assert!(index.is_empty(), "longer than a name: not indexed");
    }

    #[test]
    fn a_record_is_a_cache_line() {
        use std::mem::{align_of, size_of};
        assert_eq!(size_of::<Record<crate::snapshot::NameEntry>>(), 64);
        assert_eq!(size_of::<Record<crate::snapshot::EndpointEntry>>(), 64);
        assert_eq!(align_of::<Record<crate::snapshot::NameEntry>>(), 64);
    }

    #[test]
    fn tail_filter_tells_names_under_no_key() {
        let index = NameIndex::build([("api.example.com", 1), ("eu.example.org", 2)]);
        let may_match = |index: &NameIndex<i32>, name: &str| {
            NameProbe::with(&host(name), |probe| index.may_match(probe))
        };
        // Without a filter everything may match.
        assert!(may_match(&index, "www.example.net"));
        let index = index.with_tail_filter();
        for name in [
            "api.example.com",
            "x.y.example.com",
            "example.com",
            "a.example.org",
        ] {
            assert!(may_match(&index, name), "{name}");
        }
        for name in [
            "example.net",
            "api.example.net",
            "com.example",
            "www.sample.com",
        ] {
            assert!(!may_match(&index, name), "{name}");
        }
        // Lookups are unchanged.
        let probe = NameProbe::of(b"eu.example.org");
        assert_eq!(index.get(probe.full().unwrap()), Some(&2));
        // A key of one label turns the filter off.
        let single =
            NameIndex::build([("localhost", 1), ("api.example.com", 2)]).with_tail_filter();
        assert!(may_match(&single, "www.example.net"));
        let empty: NameIndex<i32> = NameIndex::new().with_tail_filter();
        assert!(!may_match(&empty, "api.example.com"));
    }

    #[test]
    fn index_of_many_names() {
        let names: Vec<String> = (0..5000).map(|i| format!("n{i}.example.com")).collect();
        let index = NameIndex::build(names.iter().enumerate().map(|(i, n)| (n.as_str(), i)));
        assert_eq!(index.len(), names.len());
        for (i, name) in names.iter().enumerate() {
            let name = host(name);
            let probe = NameProbe::of(name.as_str().as_bytes());
            assert_eq!(index.get(probe.full().unwrap()), Some(&i));
            assert_eq!(
                probe
                    .wildcard_suffixes()
                    .filter_map(|k| index.get(k))
                    .count(),
                0
            );
        }
        let name = host("n5000.example.com");
        assert_eq!(
            index.get(NameProbe::of(name.as_str().as_bytes()).full().unwrap()),
            None
        );
    }
}
