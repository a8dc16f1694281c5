//! Longest-prefix match over a set of CIDR prefixes, by binary search.
//!
//! Prefixes either nest or are disjoint, so the address space splits into elementary intervals,
//! each with one innermost covering prefix (or none). The table holds the sorted interval
//! starts; a lookup is one binary search, then a walk from the innermost prefix out through its
//! parents: longest prefix first, as specificity wants.

/// An address as an integer: `u32` for IPv4, `u128` for IPv6.
pub(crate) trait PrefixKey: Copy + Ord {
    fn succ(self) -> Option<Self>;
}

impl PrefixKey for u32 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl PrefixKey for u128 {
    fn succ(self) -> Option<Self> {
        self.checked_add(1)
    }
}

const NONE: u32 = u32::MAX;

pub(crate) struct PrefixNode<V> {
    parent: u32,
    pub(crate) value: V,
}

pub(crate) struct PrefixTable<K, V> {
    starts: Vec<K>,
    innermost: Vec<u32>,
    nodes: Vec<PrefixNode<V>>,
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
            starts: Vec::with_capacity(items.len() * 2),
            innermost: Vec::with_capacity(items.len() * 2),
            nodes: Vec::with_capacity(items.len()),
        };
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
        table.starts.shrink_to_fit();
        table.innermost.shrink_to_fit();
        table
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
        if self.starts.last() == Some(&start) {
            if let Some(last) = self.innermost.last_mut() {
                *last = node;
            }
        } else {
            self.starts.push(start);
            self.innermost.push(node);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The values of the prefixes covering `key`, longest prefix first.
    #[inline]
    pub(crate) fn covering(&self, key: K) -> Covering<'_, K, V> {
        let at = self.starts.partition_point(|&start| start <= key);
        let node = at
            .checked_sub(1)
            .and_then(|i| self.innermost.get(i))
            .copied()
            .unwrap_or(NONE);
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
