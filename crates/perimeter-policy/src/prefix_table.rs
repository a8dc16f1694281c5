//! Longest-prefix match over a set of CIDR prefixes, by binary search.
//!
//! Prefixes either nest or are disjoint, so the address space splits into elementary intervals,
//! each with one innermost covering prefix (or none). The table holds the sorted intervals,
//! each with its innermost prefix; a lookup is one binary search, then a walk from the innermost
//! prefix out through its parents: longest prefix first, as specificity wants.
//!
//! The binary search is short: a bucket table, indexed by the address bits just below those all
//! interval starts share, gives the few intervals that start in the address's bucket. Before
//! it, a bitmap of the address's top 16 bits (8 KiB) tells most addresses no prefix covers,
//! in one load.

/// An address as an integer: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait PrefixKey: Copy + Ord {
    fn succ(self) -> Option<Self>;
    fn wide(self) -> u128;
    /// The top 16 bits.
    fn top(self) -> usize;
}

impl PrefixKey for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }

    #[inline]
    fn wide(self) -> u128 {
        u128::from(self)
    }

    #[inline]
    fn top(self) -> usize {
        (self >> 16) as usize
    }
}

impl PrefixKey for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }

    #[inline]
    fn wide(self) -> u128 {
        self
    }

    #[inline]
    fn top(self) -> usize {
        (self >> 112) as usize
    }
}

/// Most buckets (as a power of two) of a table: 256 KiB of bucket bounds.
const MAX_BUCKET_BITS: u32 = 16;

const NONE: u32 = u32::MAX;

pub(crate) struct PrefixNode<V> {
    parent: u32,
    pub(crate) value: V,
}

/// An elementary interval: from `start` to the next interval's start, `node` is the innermost
/// covering prefix ([`NONE`] for none).
#[derive(Debug, Clone, Copy)]
struct Interval<K> {
    start: K,
    node: u32,
}

pub(crate) struct PrefixTable<K, V> {
    intervals: Vec<Interval<K>>,
    nodes: Vec<PrefixNode<V>>,
    /// `buckets[b]..buckets[b + 1]`: the intervals whose start `s` has
    /// `(s >> shift) - base == b`.
    buckets: Box<[u32]>,
    shift: u32,
    base: u128,
    /// Bit `t` set when some prefix covers an address whose top 16 bits are `t`; empty for
    /// an empty table.
    tops: Box<[u64]>,
}

/// One prefix to index: its first and last address, its length, and its value.
pub(crate) struct PrefixItem<K, V> {
    pub(crate) first: K,
    pub(crate) last: K,
    pub(crate) len: u8,
    pub(crate) value: V,
}

impl<K: PrefixKey, V> PrefixTable<K, V> {
    /// Build from distinct prefixes (no two with the same first address and length).
    pub(crate) fn build(mut items: Vec<PrefixItem<K, V>>) -> Self {
        // Enclosing prefixes before the prefixes they contain.
        items.sort_by(|a, b| a.first.cmp(&b.first).then(a.len.cmp(&b.len)));
        let mut table = Self {
            intervals: Vec::with_capacity(items.len() * 2),
            nodes: Vec::with_capacity(items.len()),
            buckets: Box::new([]),
            shift: 0,
            base: 0,
            tops: Box::new([]),
        };
        if !items.is_empty() {
            let mut tops = vec![0u64; (1 << 16) / 64];
            for item in &items {
                for top in item.first.top()..=item.last.top() {
                    if let Some(bits) = tops.get_mut(top / 64) {
                        *bits |= 1 << (top % 64);
                    }
                }
            }
            table.tops = tops.into_boxed_slice();
        }
        // Open prefixes, outermost first, with their last address.
        let mut open: Vec<(u32, K)> = Vec::new();
        for item in items {
            table.close_before(&mut open, Some(item.first));
            let parent = open.last().map_or(NONE, |&(node, _)| node);
            let node = table.nodes.len() as u32;
            table.nodes.push(PrefixNode {
                parent,
                value: item.value,
            });
            table.emit(item.first, node);
            open.push((node, item.last));
        }
        table.close_before(&mut open, None);
        table.intervals.shrink_to_fit();
        table.bucket();
        table
    }

    /// Build the bucket table: about one bucket per interval, over the bits below those that
    /// the first and last interval start share.
    fn bucket(&mut self) {
        let (Some(first), Some(last)) = (self.intervals.first(), self.intervals.last()) else {
            return;
        };
        let (first, last) = (first.start.wide(), last.start.wide());
        let bits = self
            .intervals
            .len()
            .next_power_of_two()
            .trailing_zeros()
            .min(MAX_BUCKET_BITS);
        let mut shift = 0;
        while shift < 127 && (last >> shift) - (first >> shift) >= 1 << bits {
            shift += 1;
        }
        let base = first >> shift;
        let count = ((last >> shift) - base) as usize + 1;
        let intervals = &self.intervals;
        self.buckets = (0..=count)
            .map(|b| {
                intervals.partition_point(|i| (((i.start.wide() >> shift) - base) as usize) < b)
                    as u32
            })
            .collect();
        self.shift = shift;
        self.base = base;
    }

    /// The number of intervals that start at or below `key`.
    #[inline]
    fn rank(&self, key: K) -> usize {
        let high = key.wide() >> self.shift;
        let Some(b) = high.checked_sub(self.base) else {
            return 0; // Below the first start.
        };
        let b = usize::try_from(b).unwrap_or(usize::MAX);
        match (
            self.buckets.get(b),
            b.checked_add(1).and_then(|c| self.buckets.get(c)),
        ) {
            (Some(&lo), Some(&hi)) => {
                let (lo, hi) = (lo as usize, hi as usize);
                lo + self
                    .intervals
                    .get(lo..hi)
                    .map_or(0, |bucket| bucket.partition_point(|i| i.start <= key))
            }
            // Past the last bucket: above the last start (or no intervals at all).
            _ => self.intervals.len(),
        }
    }

    /// Close every open prefix that ends before `next` (all of them for `None`): from the
    /// address after its end, the prefix enclosing it is innermost again.
    fn close_before(&mut self, open: &mut Vec<(u32, K)>, next: Option<K>) {
        while let Some(&(_, last)) = open.last() {
            if next.is_some_and(|next| last >= next) {
                break;
            }
            open.pop();
            if let Some(after) = last.succ() {
                let enclosing = open.last().map_or(NONE, |&(node, _)| node);
                self.emit(after, enclosing);
            }
        }
    }

    fn emit(&mut self, start: K, node: u32) {
        match self.intervals.last_mut() {
            Some(last) if last.start == start => last.node = node,
            _ => self.intervals.push(Interval { start, node }),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The values of the prefixes covering `key`, longest prefix first.
    #[inline]
    pub(crate) fn covering(&self, key: K) -> Covering<'_, K, V> {
        let top = key.top();
        let maybe = self
            .tops
            .get(top / 64)
            .is_some_and(|bits| bits & (1 << (top % 64)) != 0);
        if !maybe {
            return Covering {
                table: self,
                node: NONE,
            };
        }
        let at = self.rank(key);
        debug_assert_eq!(at, self.intervals.partition_point(|i| i.start <= key));
        let node = at
            .checked_sub(1)
            .and_then(|i| self.intervals.get(i))
            .map_or(NONE, |i| i.node);
        Covering { table: self, node }
    }
}

pub(crate) struct Covering<'a, K, V> {
    table: &'a PrefixTable<K, V>,
    node: u32,
}

impl<'a, K, V> Iterator for Covering<'a, K, V> {
    type Item = &'a V;

    #[inline]
    fn next(&mut self) -> Option<&'a V> {
        let node = self.table.nodes.get(self.node as usize)?;
        self.node = node.parent;
        Some(&node.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(first: [u8; 4], len: u8, value: &'static str) -> PrefixItem<u32, &'static str> {
        let first = u32::from_be_bytes(first);
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        PrefixItem {
            first,
            last: first | !mask,
            len,
            value,
        }
    }

    fn lookup(table: &PrefixTable<u32, &'static str>, addr: [u8; 4]) -> Vec<&'static str> {
        table.covering(u32::from_be_bytes(addr)).copied().collect()
    }

    #[test]
    fn nested_and_disjoint_prefixes() {
        let table = PrefixTable::build(vec![
            v4([10, 0, 0, 0], 8, "10/8"),
            v4([10, 1, 0, 0], 16, "10.1/16"),
            v4([10, 1, 2, 0], 24, "10.1.2/24"),
            v4([10, 255, 255, 0], 24, "10.255.255/24"),
            v4([10, 2, 0, 0], 16, "10.2/16"),
            v4([192, 0, 2, 1], 32, "192.0.2.1/32"),
            v4([255, 255, 255, 255], 32, "bcast"),
        ]);
        assert_eq!(table.len(), 7);
        assert_eq!(lookup(&table, [9, 255, 255, 255]), Vec::<&str>::new());
        assert_eq!(lookup(&table, [10, 0, 0, 0]), ["10/8"]);
        assert_eq!(
            lookup(&table, [10, 1, 2, 3]),
            ["10.1.2/24", "10.1/16", "10/8"]
        );
        assert_eq!(lookup(&table, [10, 1, 3, 0]), ["10.1/16", "10/8"]);
        assert_eq!(lookup(&table, [10, 2, 255, 255]), ["10.2/16", "10/8"]);
        assert_eq!(lookup(&table, [10, 3, 0, 0]), ["10/8"]);
        assert_eq!(
            lookup(&table, [10, 255, 255, 255]),
            ["10.255.255/24", "10/8"]
        );
        assert_eq!(lookup(&table, [11, 0, 0, 0]), Vec::<&str>::new());
        assert_eq!(lookup(&table, [192, 0, 2, 1]), ["192.0.2.1/32"]);
        assert_eq!(lookup(&table, [192, 0, 2, 2]), Vec::<&str>::new());
        assert_eq!(lookup(&table, [255, 255, 255, 255]), ["bcast"]);
    }

    #[test]
    fn buckets_agree_with_binary_search() {
        let mut seed = 11u64;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            seed
        };
        for n in [0usize, 1, 2, 3, 17, 300, 5000] {
            // IPv4 over the whole space.
            let items: Vec<_> = (0..n)
                .map(|_| {
                    let len = (next() % 33) as u8;
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    let first = (next() >> 32) as u32 & mask;
                    (first, len)
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .map(|(first, len)| {
                    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                    PrefixItem {
                        first,
                        last: first | !mask,
                        len,
                        value: (),
                    }
                })
                .collect();
            let prefixes: Vec<(u32, u32)> = items.iter().map(|i| (i.first, i.last)).collect();
            let table = PrefixTable::build(items);
            let starts: Vec<u32> = table.intervals.iter().map(|i| i.start).collect();
            let mut probes = starts.clone();
            probes.extend(starts.iter().map(|s| s.wrapping_sub(1)));
            probes.extend((0..1000).map(|_| (next() >> 32) as u32));
            probes.extend([0, u32::MAX]);
            for key in probes {
                let want = starts.partition_point(|&s| s <= key);
                assert_eq!(table.rank(key), want, "n {n} key {key:#x}");
                let covering = prefixes
                    .iter()
                    .filter(|&&(first, last)| first <= key && key <= last);
                assert_eq!(
                    table.covering(key).count(),
                    covering.count(),
                    "n {n} key {key:#x}"
                );
            }
            // IPv6 in a narrow range, as real allocations are.
            let items: Vec<_> = (0..n as u128)
                .map(|i| {
                    let first = (0x2400_u128 << 112) | (i << 64);
                    PrefixItem {
                        first,
                        last: first | u128::from(u64::MAX),
                        len: 64,
                        value: (),
                    }
                })
                .collect();
            let table = PrefixTable::build(items);
            let starts: Vec<u128> = table.intervals.iter().map(|i| i.start).collect();
            let mut probes = starts.clone();
            probes.extend(starts.iter().map(|s| s.wrapping_sub(1)));
            probes.extend((0..1000).map(|_| (0x2400_u128 << 112) | u128::from(next()) << 56));
            probes.extend([0, u128::MAX]);
            for key in probes {
                let want = starts.partition_point(|&s| s <= key);
                assert_eq!(table.rank(key), want, "n {n} key {key:#x}");
            }
        }
    }

    #[test]
    fn default_route_and_adjacent() {
        let table = PrefixTable::build(vec![
            v4([0, 0, 0, 0], 0, "all"),
            v4([10, 0, 0, 0], 8, "10/8"),
            v4([11, 0, 0, 0], 8, "11/8"),
        ]);
        assert_eq!(lookup(&table, [0, 0, 0, 0]), ["all"]);
        assert_eq!(lookup(&table, [10, 9, 9, 9]), ["10/8", "all"]);
        assert_eq!(lookup(&table, [11, 0, 0, 0]), ["11/8", "all"]);
        assert_eq!(lookup(&table, [12, 0, 0, 0]), ["all"]);
        assert_eq!(lookup(&table, [255, 255, 255, 255]), ["all"]);
        let empty: PrefixTable<u32, &str> = PrefixTable::build(Vec::new());
        assert_eq!(lookup(&empty, [1, 2, 3, 4]), Vec::<&str>::new());
    }
}
