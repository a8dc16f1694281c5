//! The compiled policy snapshot: a [`PolicyDocument`] validated once and indexed for decisions.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

use crate::decide::RuleMeta;
#[cfg(doc)]
use crate::decide::RuleRef;
use crate::document::{POLICY_FORMAT, PolicyDocument, RuleDoc, TrafficPolicy};
use crate::error::quote;
use crate::ingress::{Ingress, IngressDecision, IngressListener, IngressReason, compile_ingress};
use crate::name_index::{NameIndex, wildcard_key};
use crate::prefix_table::{PrefixItem, PrefixTable};
use crate::{Cidr, HostPattern, Hostname, PathPattern, RuleInput, validate_rule};

/// A document that cannot be compiled: which rule (or private endpoint), which field, and why.
/// A gateway that gets one keeps enforcing its last-known-good snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{field}: {message}", self.subject())]
pub struct CompileError {
    /// Id of the offending rule, or of the private endpoint for `private_endpoints[..]` fields;
    /// `None` for document-level fields (`format`).
    pub rule_id: Option<String>,
    /// JSON path in the document: `format`, `rules[3].destination`, `rules[3].ports[0]`,
    /// `private_endpoints[1].domain_names[0]`.
    pub field: String,
    pub message: String,
}

impl CompileError {
    /// `rule "id" ` or `private endpoint "id" `, before the field.
    fn subject(&self) -> String {
        let kind = if self.field.starts_with("private_endpoints") {
            "private endpoint"
        } else {
            "rule"
        };
        self.rule_id
            .as_deref()
            .map(|id| format!("{kind} {} ", quote(id)))
            .unwrap_or_default()
    }

    pub(crate) fn new(rule_id: Option<&str>, field: String, message: impl Into<String>) -> Self {
        Self {
            rule_id: rule_id.map(str::to_owned),
            field,
            message: message.into(),
        }
    }
}

/// Ports a rule keeps inline.
const INLINE_PORTS: usize = 7;
/// [`RuleHead::count`] of a rule for every port.
const ALL_PORTS: u8 = u8::MAX;
/// [`RuleHead::count`] of a rule with more ports than fit inline.
const MANY_PORTS: u8 = u8::MAX - 1;
const OPERATOR: u8 = 1;
const PATHS: u8 = 2;
/// The index of no rule.
const NO_RULE: u32 = u32::MAX;

/// What the decision path reads of a rule, in 16 bytes: its ports when there are few, and
/// flags. Copied into every list that holds the rule (see [`Rules`]), so that a match reads
/// it from the cache line it found the list in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleHead {
    /// The inline ports, sorted; the lanes past `count` repeat the first port.
    ports: [u16; INLINE_PORTS],
    /// Inline ports, or [`ALL_PORTS`] or [`MANY_PORTS`].
    count: u8,
    /// [`OPERATOR`], [`PATHS`].
    flags: u8,
}

impl RuleHead {
    /// The head of no rule: it allows no port (its lanes hold port 0, which no rule has).
    const NONE: Self = Self {
        ports: [0; INLINE_PORTS],
        count: 0,
        flags: 0,
    };

    #[inline]
    pub(crate) fn operator(self) -> bool {
        self.flags & OPERATOR != 0
    }

    /// Whether the rule carries path patterns.
    #[inline]
    pub(crate) fn has_paths(self) -> bool {
        self.flags & PATHS != 0
    }

    /// Whether the rule allows `port`; `None` when its ports do not fit inline (see
    /// [`CompiledRule::allows_port`]).
    #[inline]
    pub(crate) fn allows_port(self, port: u16) -> Option<bool> {
        match self.count {
            ALL_PORTS => Some(true),
            MANY_PORTS => None,
            // Every lane holds one of the rule's ports.
            _ => Some(self.ports.iter().fold(false, |hit, &p| hit | (p == port))),
        }
    }
}

/// A rule in a list of the snapshot: its head, its index in the [`RuleTable`], and where its
/// path patterns are in the snapshot's [`PathArena`] (for a rule with paths).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleSlot {
    pub(crate) head: RuleHead,
    pub(crate) index: u32,
    pub(crate) paths: u32,
}

/// The rules of one name pattern or prefix, operator rules first, then in document order: the
/// first inline (most lists have one rule, which then costs no further lookup), the others a
/// range of the snapshot's slot table.
pub(crate) struct Rules {
    first: RuleSlot,
    start: u32,
    len: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            first: RuleSlot {
                head: RuleHead::NONE,
                index: NO_RULE,
                paths: NO_PATHS,
            },
            start: 0,
            len: 0,
        }
    }
}

impl Rules {
    #[inline]
    pub(crate) fn iter<'a>(&'a self, table: &'a [RuleSlot]) -> impl Iterator<Item = &'a RuleSlot> {
        let first = (self.first.index != NO_RULE).then_some(&self.first);
        let start = self.start as usize;
        let rest = table
            .get(start..start.saturating_add(self.len as usize))
            .unwrap_or_default();
        first.into_iter().chain(rest)
    }

    /// The rules `list` (indices into `rules`, whose path patterns are at `paths` in the path
    /// arena), operator rules first, then in document order; all but the first appended to
    /// `table`.
    fn new(
        table: &mut Vec<RuleSlot>,
        rules: &[CompiledRule],
        paths: &[u32],
        mut list: Vec<u32>,
    ) -> Self {
        list.sort_by_key(|&i| {
            let operator = rules.get(i as usize).is_some_and(|r| r.operator());
            (!operator, i)
        });
        let mut slots = list.iter().filter_map(|&index| {
            let rule = rules.get(index as usize)?;
            Some(RuleSlot {
                head: rule.head,
                index,
                paths: paths.get(index as usize).copied().unwrap_or(NO_PATHS),
            })
        });
        let Some(first) = slots.next() else {
            return Self::default();
        };
        let start = table.len() as u32;
        table.extend(slots);
        Rules {
            first,
            start,
            len: table.len() as u32 - start,
        }
    }
}

/// What the decision path reads of a rule only now and then: many ports, paths.
#[derive(Debug)]
struct RuleExtra {
    /// Sorted, when more than [`INLINE_PORTS`].
    ports: Box<[u16]>,
    /// Empty means every path.
    paths: Box<[PathPattern]>,
}

/// One rule of a snapshot. The decision path reads its head from the lists that hold it (the
/// name and prefix indexes), and the rule itself only when it has many ports or paths.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    head: RuleHead,
    meta: RuleMeta,
    extra: Option<Box<RuleExtra>>,
}

impl CompiledRule {
    /// From sorted, deduplicated ports (empty means every port) and path patterns.
    fn new(ports: Vec<u16>, paths: Vec<PathPattern>, operator: bool, meta: RuleMeta) -> Self {
        let mut head = RuleHead {
            ports: [ports.first().copied().unwrap_or(0); INLINE_PORTS],
            count: ALL_PORTS,
            flags: if operator { OPERATOR } else { 0 },
        };
        if !paths.is_empty() {
            head.flags |= PATHS;
        }
        let mut many = Vec::new();
        match ports.len() {
            0 => {}
            len @ 1..=INLINE_PORTS => {
                head.ports[..len].copy_from_slice(&ports);
                head.count = len as u8;
            }
            _ => {
                head.count = MANY_PORTS;
                many = ports;
            }
        }
        let extra = (!many.is_empty() || !paths.is_empty()).then(|| {
            Box::new(RuleExtra {
                ports: many.into_boxed_slice(),
                paths: paths.into_boxed_slice(),
            })
        });
        Self { head, meta, extra }
    }

    #[inline]
    pub(crate) fn meta(&self) -> &RuleMeta {
        &self.meta
    }

    fn extra(&self) -> Option<&RuleExtra> {
        self.extra.as_deref()
    }

    #[inline]
    pub(crate) fn operator(&self) -> bool {
        self.head.operator()
    }

    /// The rule's path patterns; empty means every path.
    #[inline]
    pub(crate) fn paths(&self) -> &[PathPattern] {
        if !self.head.has_paths() {
            return &[];
        }
        self.extra().map_or(&[], |extra| &extra.paths)
    }

    /// The rule's ports, sorted; empty means every port.
    fn ports(&self) -> &[u16] {
        match self.head.count {
            ALL_PORTS => &[],
            MANY_PORTS => self.extra().map_or(&[], |extra| &extra.ports),
            count => self
                .head
                .ports
                .get(..usize::from(count))
                .unwrap_or_default(),
        }
    }

    #[inline]
    pub(crate) fn allows_port(&self, port: u16) -> bool {
        self.head.allows_port(port).unwrap_or_else(|| {
            self.extra()
                .is_some_and(|extra| extra.ports.binary_search(&port).is_ok())
        })
    }
}

/// Where a rule without paths has its path patterns: nowhere.
const NO_PATHS: u32 = u32::MAX;
const EXACT_PATH: u8 = 0;
const PREFIX_PATH: u8 = 1;

/// The path patterns of the rules that have some, back to back in one buffer, so that a
/// decision reads a rule's patterns in one place: for each rule, the number of patterns, then
/// each pattern as a kind byte (exact or prefix), its length (`u16`, little-endian) and its
/// bytes. A rule's [`RuleSlot`] says where its patterns start.
#[derive(Default)]
pub(crate) struct PathArena {
    bytes: Box<[u8]>,
}

impl PathArena {
    /// Append `patterns` to `out`; where they start. A pattern longer than 65,535 bytes (none
    /// is: paths are at most 2,048) or past the 255th is left out, so it matches nothing.
    fn encode(out: &mut Vec<u8>, patterns: &[PathPattern]) -> u32 {
        let Ok(at) = u32::try_from(out.len()) else {
            return NO_PATHS;
        };
        let count_at = out.len();
        out.push(0);
        let mut count = 0u8;
        for pattern in patterns {
            let (kind, path) = match pattern {
                PathPattern::Exact(path) => (EXACT_PATH, path),
                PathPattern::Prefix(path) => (PREFIX_PATH, path),
            };
            let (Ok(len), Some(next)) = (u16::try_from(path.len()), count.checked_add(1)) else {
                continue;
            };
            out.push(kind);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            count = next;
        }
        if let Some(slot) = out.get_mut(count_at) {
            *slot = count;
        }
        at
    }

    /// Whether one of the patterns at `at` matches `path` (normalised), as
    /// [`PathPattern::matches`] says: an exact pattern equals it, a prefix starts it. Patterns
    /// that are not there match nothing.
    #[inline]
    pub(crate) fn any_matches(&self, at: u32, path: &str) -> bool {
        let path = path.as_bytes();
        let Some((&count, mut rest)) = self.bytes.get(at as usize..).and_then(<[u8]>::split_first)
        else {
            return false;
        };
        for _ in 0..count {
            let Some((&[kind, lo, hi], tail)) = rest.split_first_chunk::<3>() else {
                return false;
            };
            let len = usize::from(u16::from_le_bytes([lo, hi]));
            let (Some(pattern), Some(next)) = (tail.get(..len), tail.get(len..)) else {
                return false;
            };
            let hit = match kind {
                PREFIX_PATH => path.starts_with(pattern),
                _ => path == pattern,
            };
            if hit {
                return true;
            }
            rest = next;
        }
        false
    }
}

/// Every rule of a snapshot, in document order: shared by the snapshot and by every
/// [`RuleRef`] its decisions hand out (one reference count for all of them, so that naming the
/// rule that decided reads no memory of that rule).
#[derive(Debug, Default)]
pub(crate) struct RuleTable {
    rules: Box<[CompiledRule]>,
}

impl RuleTable {
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&CompiledRule> {
        self.rules.get(index as usize)
    }
}

/// CIDR prefixes to their rules, IPv4 and IPv6.
pub(crate) struct CidrIndex {
    pub(crate) v4: PrefixTable<u32, Rules>,
    pub(crate) v6: PrefixTable<u128, Rules>,
}

impl CidrIndex {
    fn empty() -> Self {
        Self {
            v4: PrefixTable::build(Vec::new()),
            v6: PrefixTable::build(Vec::new()),
        }
    }

    fn build(
        by_prefix: HashMap<IpNet, Vec<u32>>,
        slots: &mut Vec<RuleSlot>,
        rules: &[CompiledRule],
        paths: &[u32],
    ) -> Self {
        let mut v4_items = Vec::new();
        let mut v6_items = Vec::new();
        for (net, list) in by_prefix {
            let value = Rules::new(slots, rules, paths, list);
            match net {
                IpNet::V4(net) => v4_items.push(PrefixItem {
                    first: u32::from(net.network()),
                    last: u32::from(net.broadcast()),
                    len: net.prefix_len(),
                    value,
                }),
                IpNet::V6(net) => v6_items.push(PrefixItem {
                    first: u128::from(net.network()),
                    last: u128::from(net.broadcast()),
                    len: net.prefix_len(),
                    value,
                }),
            }
        }
        Self {
            v4: PrefixTable::build(v4_items),
            v6: PrefixTable::build(v6_items),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.v4.len() == 0 && self.v6.len() == 0
    }
}

/// Every port some CIDR rule allows.
pub(crate) struct PortSet {
    all: bool,
    bits: Box<[u64; 1024]>,
}

impl PortSet {
    fn new() -> Self {
        Self {
            all: false,
            bits: Box::new([0; 1024]),
        }
    }

    fn insert_all(&mut self, ports: &[u16]) {
        if ports.is_empty() {
            self.all = true;
        }
        for &port in ports {
            self.bits[usize::from(port / 64)] |= 1 << (port % 64);
        }
    }

    #[inline]
    pub(crate) fn contains(&self, port: u16) -> bool {
        self.all
            || self
                .bits
                .get(usize::from(port / 64))
                .is_some_and(|bits| bits & (1 << (port % 64)) != 0)
    }
}

static NEXT_SNAPSHOT_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled, immutable egress policy: [`compile`]d once from a [`PolicyDocument`], then shared
/// (`Arc<Snapshot>`) by every connection of a gateway and replaced whole, never mutated.
///
/// Decisions ([`Snapshot::decide_target`], [`Snapshot::decide_address`], [`Snapshot::check`])
/// use hash indexes of names and binary-searched prefix tables: no scan over the rules, no
/// allocation, no panic.
pub struct Snapshot {
    /// Tells decisions of this snapshot from those of another (a `TargetDecision` is only
    /// valid with the snapshot that made it).
    pub(crate) instance: u64,
    /// `false` only for [`Snapshot::empty_deny`].
    pub(crate) installed: bool,
    version: u64,
    cluster_id: String,
    pub(crate) traffic_policy: TrafficPolicy,
    /// Every rule, in document order.
    pub(crate) rule_table: Arc<RuleTable>,
    /// The rules of names and prefixes past their first (see [`Rules`]).
    pub(crate) slots: Box<[RuleSlot]>,
    /// The path patterns of the rules.
    pub(crate) paths: PathArena,
    rule_count: usize,
    /// FQDN patterns of operator rules (few: probed first, cache-hot).
    pub(crate) operator_names: NameIndex<Rules>,
    /// FQDN patterns of customer rules.
    pub(crate) names: NameIndex<Rules>,
    /// CIDRs of operator rules (few: probed first, cache-hot).
    pub(crate) operator_cidrs: CidrIndex,
    /// CIDRs of customer rules.
    pub(crate) cidrs: CidrIndex,
    pub(crate) cidr_ports: PortSet,
    pub(crate) endpoints: Vec<Endpoint>,
    /// Private endpoint names (exact and wildcard patterns) to the endpoint's index.
    pub(crate) endpoint_names: NameIndex<u32>,
    /// The IP allowlist and workload addresses of the ingress listeners.
    ingress: Ingress,
    /// TLS inspection, when the cluster turned it on.
    inspection: Option<Arc<Inspection>>,
}

/// A cluster's TLS inspection settings, compiled: its CA (PEM, for the gateway to sign leaf
/// certificates with; this crate does no cryptography) and the never-inspect patterns.
#[derive(Clone, PartialEq, Eq)]
pub struct Inspection {
    pub ca_certificate: String,
    pub ca_key: String,
    pub never_inspect: Vec<HostPattern>,
}

impl fmt::Debug for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspection")
            .field("ca_certificate", &self.ca_certificate)
            .field("ca_key", &"(redacted)")
            .field("never_inspect", &self.never_inspect)
            .finish()
    }
}

impl Inspection {
    /// Whether `name` is on the never-inspect list.
    pub fn never_inspects(&self, name: &Hostname) -> bool {
        self.never_inspect.iter().any(|p| p.matches(name))
    }
}

impl Snapshot {
    /// The snapshot of a gateway that has no policy yet: every decision is a deny with reason
    /// `no_snapshot`.
    pub fn empty_deny() -> Self {
        Self {
            instance: NEXT_SNAPSHOT_ID.fetch_add(1, Ordering::Relaxed),
            installed: false,
            version: 0,
            cluster_id: String::new(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            rule_table: Arc::default(),
            slots: Box::new([]),
            paths: PathArena::default(),
            rule_count: 0,
            operator_names: NameIndex::new(),
            names: NameIndex::new(),
            operator_cidrs: CidrIndex::empty(),
            cidrs: CidrIndex::empty(),
            cidr_ports: PortSet::new(),
            endpoints: Vec::new(),
            endpoint_names: NameIndex::new(),
            ingress: Ingress::default(),
            inspection: None,
        }
    }

    /// TLS inspection settings, when the cluster turned inspection on.
    pub fn inspection(&self) -> Option<&Arc<Inspection>> {
        self.inspection.as_ref()
    }

    /// The document version this snapshot was compiled from (0 for [`Snapshot::empty_deny`]).
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The traffic policy (`DEFAULT_DENY` for [`Snapshot::empty_deny`], which denies everything
    /// anyway).
    pub fn traffic_policy(&self) -> TrafficPolicy {
        self.traffic_policy
    }

    /// Whether this snapshot was compiled from a document (not [`Snapshot::empty_deny`]).
    pub fn is_installed(&self) -> bool {
        self.installed
    }

    /// Number of rules, customer and operator.
    pub fn rule_count(&self) -> usize {
        self.rule_count
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The private endpoint with this id.
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id() == id)
    }

    /// The ingress side: allowlist and workload addresses.
    pub fn ingress(&self) -> &Ingress {
        &self.ingress
    }

    /// Judge a public ingress connection from `source` on `listener` by the IP allowlist. A
    /// gateway without a snapshot admits no one.
    pub fn admit_ingress(&self, source: IpAddr, listener: IngressListener) -> IngressDecision {
        if !self.installed {
            return IngressDecision::refused(IngressReason::NoSnapshot);
        }
        self.ingress.admit(source, listener)
    }

    /// Judge a private ingress connection by the endpoint id its PROXY v2 header names. A
    /// gateway without a snapshot admits no one.
    pub fn admit_private_ingress(&self, endpoint_id: Option<&str>) -> IngressDecision {
        if !self.installed {
            return IngressDecision::refused(IngressReason::NoSnapshot);
        }
        self.ingress.admit_private(endpoint_id)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("installed", &self.installed)
            .field("version", &self.version)
            .field("cluster_id", &self.cluster_id)
            .field("traffic_policy", &self.traffic_policy)
            .field("rules", &self.rule_count)
            .field("names", &self.names.len())
            .field("operator_names", &self.operator_names.len())
            .field("v4_prefixes", &self.cidrs.v4.len())
            .field("v6_prefixes", &self.cidrs.v6.len())
            .field(
                "operator_prefixes",
                &(self.operator_cidrs.v4.len() + self.operator_cidrs.v6.len()),
            )
            .field("endpoints", &self.endpoints.len())
            .field("allowlist", &self.ingress.entries().len())
            .finish()
    }
}

/// Compile a policy document into a [`Snapshot`]: check the format, re-validate every rule with
/// the parsers the API uses ([`validate_rule`]) and every private endpoint, and build the
/// indexes. Errors name the rule (or endpoint) id and the field.
///
/// Rule and endpoint ids must be non-empty and unique (each among its kind), and no two private
/// endpoints may claim the same name: routing would be ambiguous.
pub fn compile(doc: &PolicyDocument) -> Result<Snapshot, CompileError> {
    if doc.format != POLICY_FORMAT {
        return Err(CompileError::new(
            None,
            "format".to_owned(),
            format!(
                "policy document format {} is not known to this gateway (it compiles format {POLICY_FORMAT}); upgrade the gateway",
                doc.format
            ),
        ));
    }
    if u32::try_from(doc.rules.len()).is_err()
        || u32::try_from(doc.private_endpoints.len()).is_err()
    {
        return Err(CompileError::new(
            None,
            "rules".to_owned(),
            "too many rules or private endpoints",
        ));
    }

    let mut parsed = Vec::with_capacity(doc.rules.len());
    let mut patterns = Vec::with_capacity(doc.rules.len());
    let mut ids = HashSet::with_capacity(doc.rules.len());
    for (i, rule) in doc.rules.iter().enumerate() {
        let (compiled, destination) = compile_rule(i, rule)?;
        if !ids.insert(rule.id.as_str()) {
            return Err(CompileError::new(
                Some(&rule.id),
                format!("rules[{i}].id"),
                format!("rule id {} appears more than once", quote(&rule.id)),
            ));
        }
        parsed.push(compiled);
        patterns.push(destination);
    }
    let rules = parsed;
    let mut path_bytes = Vec::new();
    let paths: Vec<u32> = rules
        .iter()
        .map(|rule| match rule.paths() {
            [] => NO_PATHS,
            patterns => PathArena::encode(&mut path_bytes, patterns),
        })
        .collect();

    // FQDN patterns by name (operator and customer apart); CIDRs by prefix.
    let mut by_name: [HashMap<&Hostname, ExactAndWildcard>; 2] = Default::default();
    let mut by_prefix: [HashMap<IpNet, Vec<u32>>; 2] = Default::default();
    let mut cidr_ports = PortSet::new();
    for (i, (destination, rule)) in patterns.iter().zip(&rules).enumerate() {
        let index = i as u32;
        let names = &mut by_name[usize::from(rule.operator())];
        match destination {
            Destination::Pattern(HostPattern::Exact(name)) => {
                names.entry(name).or_default().0.push(index)
            }
            Destination::Pattern(HostPattern::Wildcard(suffix)) => {
                names.entry(suffix).or_default().1.push(index)
            }
            Destination::Cidr(cidr) => {
                by_prefix[usize::from(rule.operator())]
                    .entry(cidr.net())
                    .or_default()
                    .push(index);
                cidr_ports.insert_all(rule.ports());
            }
        }
    }

    // An exact pattern is indexed under its name, a wildcard one under `.suffix` (see
    // `wildcard_key`): one list of rules per key.
    let mut slots = Vec::new();
    let [customer, operator] = by_name;
    let mut index_names = |by_name: HashMap<&Hostname, ExactAndWildcard>| {
        let mut entries: Vec<(String, Rules)> = Vec::with_capacity(by_name.len());
        for (name, (exact, wildcard)) in by_name {
            if !exact.is_empty() {
                let rules = Rules::new(&mut slots, &rules, &paths, exact);
                entries.push((name.as_str().to_owned(), rules));
            }
            if !wildcard.is_empty() {
                let rules = Rules::new(&mut slots, &rules, &paths, wildcard);
                entries.push((wildcard_key(name.as_str()), rules));
            }
        }
        NameIndex::build(entries)
    };
    let operator_names = index_names(operator).with_tail_filter();
    let names = index_names(customer);

    let [customer, operator] = by_prefix;
    let operator_cidrs = CidrIndex::build(operator, &mut slots, &rules, &paths);
    let cidrs = CidrIndex::build(customer, &mut slots, &rules, &paths);

    let (endpoints, endpoint_names) = compile_endpoints(&doc.private_endpoints)?;
    let ingress = compile_ingress(&doc.ingress)?;
    let inspection = match &doc.tls_inspection {
        None => None,
        Some(t) => {
            let err = |field: String, message: String| {
                CompileError::new(None, format!("tls_inspection.{field}"), message)
            };
            if !t.ca_certificate.contains("-----BEGIN CERTIFICATE-----") {
                return Err(err("ca_certificate".into(), "not a PEM certificate".into()));
            }
            if !t.ca_key.contains("-----BEGIN PRIVATE KEY-----") {
                return Err(err(
                    "ca_key".into(),
                    "not a PEM (PKCS#8) private key".into(),
                ));
            }
            let never_inspect = t
                .never_inspect
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    p.parse::<HostPattern>()
                        .map_err(|e| err(format!("never_inspect[{i}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(Arc::new(Inspection {
                ca_certificate: t.ca_certificate.clone(),
                ca_key: t.ca_key.clone(),
                never_inspect,
            }))
        }
    };

    Ok(Snapshot {
        instance: NEXT_SNAPSHOT_ID.fetch_add(1, Ordering::Relaxed),
        installed: true,
        version: doc.version,
        cluster_id: doc.cluster_id.clone(),
        traffic_policy: doc.traffic_policy,
        rule_table: Arc::new(RuleTable {
            rules: rules.into_boxed_slice(),
        }),
        slots: slots.into_boxed_slice(),
        paths: PathArena {
            bytes: path_bytes.into_boxed_slice(),
        },
        rule_count: doc.rules.len(),
        operator_names,
        names,
        operator_cidrs,
        cidrs,
        cidr_ports,
        endpoints,
        endpoint_names,
        ingress,
        inspection,
    })
}

/// Indices of the rules of an exact pattern and of its wildcard twin.
type ExactAndWildcard = (Vec<u32>, Vec<u32>);

enum Destination {
    Pattern(HostPattern),
    Cidr(Cidr),
}

fn compile_rule(i: usize, rule: &RuleDoc) -> Result<(CompiledRule, Destination), CompileError> {
    let err = |field: &str, message: String| {
        CompileError::new(Some(&rule.id), format!("rules[{i}].{field}"), message)
    };
    if rule.id.is_empty() {
        return Err(err("id", "rule id is empty".to_owned()));
    }
    let ports: Vec<i64> = rule.ports.iter().map(|&p| i64::from(p)).collect();
    let valid = validate_rule(&RuleInput {
        rule_type: rule.rule_type.as_str(),
        destination: &rule.destination,
        ports: Some(&ports),
        paths: Some(&rule.paths),
    })
    .map_err(|e| {
        // The API calls the field "type"; the document "rule_type".
        let field = if e.field == "type" {
            "rule_type"
        } else {
            &e.field
        };
        err(field, e.message.clone())
    })?;
    let destination = match valid.destination {
        crate::RuleDestination::Host(h) => Destination::Pattern(h),
        crate::RuleDestination::Cidr(c) => Destination::Cidr(c),
    };
    let paths = valid.paths;
    let compiled = CompiledRule::new(
        valid.ports,
        paths,
        rule.crl_managed,
        RuleMeta {
            id: Box::from(rule.id.as_str()),
            name: Box::from(rule.name.as_str()),
        },
    );
    Ok((compiled, destination))
}

mod endpoints;

pub(crate) use endpoints::compile_backend;
use endpoints::compile_endpoints;
pub use endpoints::{Backend, BackendHost, Endpoint};

#[cfg(test)]
mod tests;
