//! Index of DNS name patterns (rule patterns, private endpoint names) for the decision path.
//!
//! Keys are patterns: an exact pattern `example.com` is the key `example.com`, a wildcard
//! pattern `*.example.com` the key `.example.com` ([`wildcard_key`]). A query name is never a
//! wildcard key (it does not start with a dot), and the wildcard key of each of its proper
//! suffixes is a slice of the name itself, dot included: `.example.com` in `a.example.com`.
//!
//! A query name is cut into 8-byte words from its end once ([`NameProbe`], [`Words`]): the
//! hash of the name, of each of its wildcard keys and of its last two labels then costs a few
//! operations each, shared by every index probed, with no allocation.
//!
//! An index ([`NameIndex`]) is an open-addressing table built once at compile time, laid out
//! for few cache misses: an array of 16-bit hash tags (linear probing; small, so a probe for an
//! absent name mostly stays in cache), and beside it, at the same position, a 128-byte record
//! (an aligned pair of cache lines) holding the key, up to 95 bytes inline, and its value: the
//! rules of a pattern, the first with its head (ports, flags) inline, so a hit decides from
//! that record. A probe compares tags, and only on a tag match the key bytes: a pattern is
//! found only when it is byte for byte the key. An index of few names can also keep the last
//! two labels of its keys ([`NameIndex::with_tail_filter`]), so that one probe tells a name
//! under none of its domains.

use crate::Hostname;
use crate::hostname::MAX_HOSTNAME_LEN;

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

/// The 8 bytes of `bytes` that end at `end`, as a little-endian word; for `end` < 8, the bytes
/// `0..end` in its high bytes (as if `bytes` began with zeros).
#[inline(always)]
fn word_ending(bytes: &[u8], end: usize) -> u64 {
    if let Some(at) = end.checked_sub(8) {
        return word_at(bytes, at);
    }
    if end == 0 {
        return 0;
    }
    let above = ((8 - end) * 8) as u32;
    if bytes.len() >= 8 {
        return word_at(bytes, 0) << above;
    }
    // A key shorter than a word.
    bytes
        .iter()
        .take(end)
        .rev()
        .fold(0, |w, &b| (w << 8) | u64::from(b))
        << above
}

/// 0x80 in each byte of `word` that is a `.`, 0 elsewhere (exact: no borrow crosses bytes).
#[inline]
fn dots(word: u64) -> u64 {
    const DOTS: u64 = u64::from_ne_bytes([b'.'; 8]);
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    let t = word ^ DOTS;
    !(((t & LOW7).wrapping_add(LOW7)) | t | LOW7)
}

/// The key of the wildcard pattern `*.suffix`: `.suffix`.
pub(crate) fn wildcard_key(suffix: &str) -> String {
    format!(".{suffix}")
}

/// Most words of a key (keys are at most 255 bytes long).
const WORDS: usize = 32;

/// A key cut into words from its end: `words[k]` is the `k`-th word counting from the end
/// ([`word_ending`] at `len - 8k`), and `running[k]` the hash of the words `0..k`.
///
/// The hash of the suffix of `m` bytes is `running[m / 8]` mixed with the top `m % 8` bytes of
/// `words[m / 8]` (the suffix's first bytes, before its whole words) and with `m`
/// ([`Words::hash_from`]): a few operations for any suffix, and the same as the hash of that
/// suffix as a key of its own, which has the same words from its end. Words, head bytes and
/// length determine the bytes, so the encoding is injective.
struct Words {
    words: [u64; WORDS],
    running: [u64; WORDS + 1],
    len: usize,
}

impl Words {
    const EMPTY: Self = Self {
        words: [0; WORDS],
        running: [SEED; WORDS + 1],
        len: 0,
    };

    /// Cut `bytes` (at most [`WORDS`] words; longer keys are cut short and match nothing),
    /// calling `each(k, word)` on each word from the end.
    #[inline(always)]
    fn cut(&mut self, bytes: &[u8], mut each: impl FnMut(usize, u64)) {
        self.len = bytes.len();
        let mut hash = SEED;
        let mut end = bytes.len();
        for (k, (word_k, running)) in self
            .words
            .iter_mut()
            .zip(self.running.iter_mut().skip(1))
            .enumerate()
        {
            if end == 0 {
                break;
            }
            let word = word_ending(bytes, end);
            each(k, word);
            hash = mix(hash, word);
            *word_k = word;
            *running = hash;
            end = end.saturating_sub(8);
        }
    }

    /// The hash of the suffix that starts at `start`.
    #[inline(always)]
    fn hash_from(&self, start: usize) -> u64 {
        let m = self.len.saturating_sub(start);
        let (whole, head) = (m / 8, m % 8);
        let running = self.running.get(whole).copied().unwrap_or(SEED);
        let head = match head {
            0 => 0,
            head => self.words.get(whole).copied().unwrap_or(0) >> (64 - 8 * head as u32),
        };
        finish(mix(mix(running, head), m as u64))
    }
}

/// The hash of a whole key (a name, a wildcard key `.suffix`, a tail), as [`NameProbe`]
/// computes it for the name and its suffixes.
fn hash_name(key: &[u8]) -> u64 {
    let mut words = Words::EMPTY;
    words.cut(key, |_, _| {});
    words.hash_from(0)
}

/// A name to look up, cut into words from its end once per decision ([`Words`]), with the
/// position of each dot: the hash of the name, of each wildcard key in it and of its last two
/// labels then costs a few operations each, shared by every index probed.
pub(crate) struct NameProbe<'a> {
    name: &'a [u8],
    words: Words,
    /// `dots[i]`: where the `i + 1`-th dot from the end is.
    dots: [u8; MAX_LABELS],
    /// Number of labels; 0 for a name that is no [`Hostname`] (empty or too long), which
    /// matches nothing.
    labels: usize,
    /// The hash of the last two labels, for a name of two labels or more (the tail filters
    /// of the small indexes all ask for it).
    tail: Option<u64>,
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
            words: Words::EMPTY,
            dots: [0; MAX_LABELS],
            labels: 0,
            tail: None,
        };
        if !name.is_empty() && name.len() <= MAX_HOSTNAME_LEN {
            probe.index();
        }
        f(&probe)
    }

    /// Cut the name into words, and note its dots, rightmost first.
    #[inline(always)]
    fn index(&mut self) {
        let (name, dots_at) = (self.name, &mut self.dots);
        let mut found = 0;
        self.words.cut(name, |k, word| {
            // The dots of the word that ends `8k` bytes before the end, rightmost first (a
            // word at the start has zeros, not dots, before the name).
            let end = name.len() - 8 * k;
            let mut bits = dots(word);
            while bits != 0 {
                let bit = 63 - bits.leading_zeros();
                let at = (end + (bit / 8) as usize).wrapping_sub(8);
                if let Some(slot) = dots_at.get_mut(found) {
                    // `at` < 253: the name is at most that long.
                    *slot = at as u8;
                }
                found += 1;
                bits ^= 1 << bit;
            }
        });
        self.labels = found + 1;
        let tail = match self.labels {
            0 | 1 => None,
            2 => Some(0),
            _ => self.dot(1).map(|dot| dot + 1),
        };
        self.tail = tail.map(|start| self.words.hash_from(start));
    }

    /// Where the `i + 1`-th dot from the end is.
    #[inline(always)]
    fn dot(&self, i: usize) -> Option<usize> {
        self.dots.get(i).map(|&at| usize::from(at))
    }

    /// The hash of the last two labels, for a name of two labels or more.
    #[inline]
    fn tail(&self) -> Option<u64> {
        self.tail
    }

    /// The key of the exact pattern of the whole name.
    #[inline]
    pub(crate) fn full(&self) -> Option<Key<'_>> {
        (self.labels > 0).then(|| Key {
            bytes: self.name,
            hash: self.words.hash_from(0),
        })
    }

    /// The keys of the wildcard patterns that match the name, longest suffix first: for
    /// `a.b.example.com`, `.b.example.com` (of `*.b.example.com`) then `.example.com`. A single
    /// label is never a wildcard suffix (it is a public suffix, refused at compile time), so
    /// `.com` is not yielded.
    #[inline]
    pub(crate) fn wildcard_suffixes(&self) -> impl Iterator<Item = Key<'_>> {
        // The dots before suffixes of two labels or more: all but the last one.
        (1..self.labels.saturating_sub(1)).rev().filter_map(|i| {
            let start = self.dot(i)?;
            Some(Key {
                bytes: self.name.get(start..)?,
                hash: self.words.hash_from(start),
            })
        })
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

/// Keys of at most this many bytes (almost all names) are kept in their record, so that a
/// probe reads one record (128 bytes, two cache lines that load together) for a key and its
/// value of up to 32 bytes; longer keys are kept in an arena.
const INLINE: usize = 95;

/// A key and its value (an empty slot's record: no key, a default value), in an aligned pair
/// of cache lines: a key of up to 31 bytes lies in the first line with the value, a longer one
/// spills into the second, which loads with the first (the pair is adjacent, and the
/// comparison reads both at once, see [`Record::holds`]).
#[repr(C, align(128))]
struct Record<V> {
    value: V,
    len: u8,
    /// The key, when at most [`INLINE`] bytes long; else where it starts in the arena
    /// (little-endian `u32`).
    key: [u8; INLINE],
}

impl<V: Default> Default for Record<V> {
    fn default() -> Self {
        Self {
            value: V::default(),
            len: 0,
            key: [0; INLINE],
        }
    }
}

impl<V> Record<V> {
    /// Whether this record's key is `key`. For a key that fits inline, the key bytes and the
    /// length are compared together: the comparison does not wait for the record's length to
    /// know which bytes to read, so both of the record's cache lines load at once.
    #[inline]
    fn holds(&self, key: &[u8], arena: &[u8]) -> bool {
        if key.len() <= INLINE {
            let same = self.key.get(..key.len()) == Some(key);
            same & (usize::from(self.len) == key.len())
        } else {
            usize::from(self.len) == key.len() && self.key(arena) == Some(key)
        }
    }

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
    /// Open addressing, linear probing, at most 4/5 full: the hash tag of the key in each slot
    /// (never 0), 0 for an empty slot. Small, so that a probe for an absent name (most
    /// wildcard-suffix probes) mostly stays in cache.
    tags: Box<[u16]>,
    /// The record of each slot: it lies where the hash says, so it can be read while the tag
    /// is compared.
    records: Box<[Record<V>]>,
    len: usize,
    /// Keys longer than [`INLINE`], back to back.
    arena: Box<[u8]>,
    /// Bit `n` set when some key is `n` bytes long (keys are at most 254 bytes).
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
        Self::build(Vec::<(&[u8], V)>::new())
    }

    /// Index `entries` (keys: a name, or a [`wildcard_key`]); a key given twice keeps its last
    /// value. Keys longer than 255 bytes (no pattern's is) are not indexed.
    pub(crate) fn build<K: AsRef<[u8]>>(entries: impl IntoIterator<Item = (K, V)>) -> Self {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let capacity = (entries.len() + entries.len() / 4 + 1).next_power_of_two();
        let mut index = Self {
            tags: vec![0; capacity].into_boxed_slice(),
            records: std::iter::repeat_with(Record::default)
                .take(capacity)
                .collect(),
            len: 0,
            arena: Box::new([]),
            lengths: [0; 4],
            tails: Tails::none(),
        };
        let mut arena = Vec::new();
        for (name, value) in entries {
            let bytes = name.as_ref();
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
                        // Longer than a pattern, or past 4 GiB of names: not indexed, so its
                        // rules never allow (fail closed); no document comes near.
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
        !self.is_empty() && (self.tails.off || self.tails.may_hold(name.tail()))
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
                    if self
                        .records
                        .get(at)
                        .is_some_and(|r| r.holds(key.bytes, arena))
                    {
                        return Ok(at);
                    }
                }
                Some(_) => {}
            }
            at = (at + 1) & mask;
        }
        Err(usize::MAX)
    }

    /// Whether some key is as long as `key`.
    #[inline]
    fn has_length(&self, key: Key<'_>) -> bool {
        let len = key.bytes.len();
        self.lengths
            .get(len / 64)
            .is_some_and(|bits| bits & (1 << (len % 64)) != 0)
    }

    /// The value for `key`.
    #[inline]
    pub(crate) fn get(&self, key: Key<'_>) -> Option<&V> {
        if !self.has_length(key) {
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
                words: Words {
                    words: probe.words.words,
                    running: probe.words.running,
                    len: probe.words.len,
                },
                dots: probe.dots,
                labels: probe.labels,
                tail: probe.tail,
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
        // Wildcard keys: `.suffix` for `*.suffix`.
        assert_eq!(
            suffixes("a.b.example.com"),
            [".b.example.com", ".example.com"]
        );
        assert_eq!(suffixes("example.com"), Vec::<String>::new());
        assert_eq!(suffixes("x.example.com"), [".example.com"]);
        assert_eq!(wildcard_key("example.com"), ".example.com");
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
            // `.a.a...`: the wildcard key, from the dot before the suffix.
            assert_eq!(key.bytes, &many.as_bytes()[2 * i + 1..]);
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
            // The wildcard keys: each proper suffix of two labels or more, with its dot.
            let want: Vec<&str> = host
                .as_str()
                .match_indices('.')
                .map(|(i, _)| &host.as_str()[i..])
                .filter(|s| s[1..].contains('.'))
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
        // A name of `len` bytes: `a.` labels before example.com, the first one `ba` if need be.
        let long = |len: usize| {
            let mut name = "example.com".to_owned();
            while len - name.len() >= 2 {
                name.insert_str(0, "a.");
            }
            if name.len() < len {
                name.insert(0, 'b');
            }
            name
        };
        let names: Vec<String> = [33, 35, 90, INLINE, INLINE + 1, 101, 140, 251]
            .into_iter()
            .map(long)
            .collect();
        assert_eq!(names[3].len(), INLINE, "inline, full");
        assert_eq!(names[4].len(), INLINE + 1, "in the arena");
        // Wildcard keys of the same names are one byte longer, and other keys.
        let keys: Vec<String> = names
            .iter()
            .flat_map(|n| [n.clone(), wildcard_key(n)])
            .collect();
        let index = NameIndex::build(keys.iter().enumerate().map(|(i, n)| (n.as_str(), i)));
        assert_eq!(index.len(), keys.len());
        for (i, name) in names.iter().enumerate() {
            let probe = NameProbe::of(name.as_bytes());
            assert_eq!(index.get(probe.full().unwrap()), Some(&(2 * i)), "{name}");
            let below = format!("w.{name}");
            let probe = NameProbe::of(below.as_bytes());
            let wild = probe.wildcard_suffixes().next().unwrap();
            assert_eq!(index.get(wild), Some(&(2 * i + 1)), "*.{name}");
            let forged = format!("{}x", &name[..name.len() - 1]);
            let forged = Key {
                bytes: forged.as_bytes(),
                hash: NameProbe::of(name.as_bytes()).full().unwrap().hash,
            };
            assert_eq!(index.get(forged), None, "{name}");
        }
        let too_long = "a".repeat(300);
        let index = NameIndex::build([(too_long.as_str(), 1)]);
        assert!(index.is_empty(), "longer than a name: not indexed");
    }

    #[test]
    fn a_record_is_a_pair_of_cache_lines() {
        use std::mem::{align_of, offset_of, size_of};
        assert_eq!(size_of::<Record<crate::snapshot::Rules>>(), 128);
        assert_eq!(size_of::<Record<u32>>(), 128);
        assert_eq!(align_of::<Record<crate::snapshot::Rules>>(), 128);
        // The value, the length and the first 31 bytes of the key in the first line.
        assert_eq!(offset_of!(Record<crate::snapshot::Rules>, key), 33);
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
