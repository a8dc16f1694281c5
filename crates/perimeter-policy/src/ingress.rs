//! The ingress guard's admission: a cluster's IP allowlist compiled for its public listeners, and
//! the workload addresses they forward to.
//!
//! A source is admitted on a listener only by an entry that contains it and has that listener's
//! flag (`sql` or `ui`) set. An empty allowlist admits no one. IPv4-mapped IPv6 sources
//! (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers) are judged as the IPv4 address;
//! no other IPv6 form is reinterpreted (a 6to4 or NAT64 source is not the IPv4 host it names).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::Cidr;
use crate::document::{AllowlistDoc, IngressDoc};
use crate::error::quote;
use crate::prefix_table::{PrefixItem, PrefixTable};
use crate::snapshot::{Backend, CompileError, compile_backend};

/// An ingress listener: the public ones (`sql`, `ui`) judge sources by the IP allowlist; the
/// private one admits private endpoint connections, named in a PROXY v2 header, and forwards
/// them to the SQL workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngressListener {
    Sql,
    Ui,
    Private,
}

impl IngressListener {
    /// The public listeners.
    pub const ALL: [IngressListener; 2] = [IngressListener::Sql, IngressListener::Ui];

    pub fn as_str(self) -> &'static str {
        match self {
            IngressListener::Sql => "sql",
            IngressListener::Ui => "ui",
            IngressListener::Private => "private",
        }
    }
}

impl fmt::Display for IngressListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a source was admitted or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngressReason {
    /// An entry with the listener's flag contains the source.
    Allowlisted,
    /// The allowlist is empty: the public side is closed.
    AllowlistEmpty,
    /// No entry contains the source.
    NotAllowlisted,
    /// Entries contain the source, but none has the listener's flag set.
    ListenerNotAllowed,
    /// The gateway has no snapshot yet.
    NoSnapshot,
    /// `network_visibility: PRIVATE`: the public listeners are closed.
    PublicClosed,
    /// The private listener: the endpoint id names an admitted private endpoint connection.
    PrivateEndpoint,
    /// The private listener: no admitted private endpoint connection has the endpoint id.
    UnknownEndpoint,
    /// The private listener: the PROXY v2 header names no endpoint id.
    NoEndpointId,
    /// A public source on the private listener, or a private endpoint on a public one.
    WrongListener,
}

impl IngressReason {
    /// The metric label and event name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            IngressReason::Allowlisted => "allowlisted",
            IngressReason::AllowlistEmpty => "allowlist_empty",
            IngressReason::NotAllowlisted => "not_allowlisted",
            IngressReason::ListenerNotAllowed => "listener_not_allowed",
            IngressReason::NoSnapshot => "no_snapshot",
            IngressReason::PublicClosed => "network_visibility_private",
            IngressReason::PrivateEndpoint => "private_endpoint",
            IngressReason::UnknownEndpoint => "unknown_endpoint",
            IngressReason::NoEndpointId => "no_endpoint_id",
            IngressReason::WrongListener => "wrong_listener",
        }
    }
}

impl fmt::Display for IngressReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One compiled allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowlistEntry {
    cidr: Cidr,
    name: Arc<str>,
    sql: bool,
    ui: bool,
}

impl AllowlistEntry {
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the entry admits on `listener` (never on the private one).
    pub fn admits(&self, listener: IngressListener) -> bool {
        match listener {
            IngressListener::Sql => self.sql,
            IngressListener::Ui => self.ui,
            IngressListener::Private => false,
        }
    }
}

/// The verdict on a source, with the entry that decided it: the most specific entry containing
/// the source that admits it; when none admits, the most specific one containing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressDecision {
    pub admitted: bool,
    pub reason: IngressReason,
    pub entry: Option<AllowlistEntry>,
}

impl IngressDecision {
    /// `ADMITTED` or `REFUSED`.
    pub fn verdict(&self) -> &'static str {
        if self.admitted { "ADMITTED" } else { "REFUSED" }
    }

    /// A refusal that no entry decided.
    pub fn refused(reason: IngressReason) -> Self {
        Self {
            admitted: false,
            reason,
            entry: None,
        }
    }
}

/// The workload addresses of one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    region: Arc<str>,
    sql: Option<Backend>,
    ui: Option<Backend>,
}

impl Workload {
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Where `listener`'s admitted connections go (the private listener's: the SQL workload);
    /// `None` when the platform set no address.
    pub fn address(&self, listener: IngressListener) -> Option<&Backend> {
        match listener {
            IngressListener::Sql | IngressListener::Private => self.sql.as_ref(),
            IngressListener::Ui => self.ui.as_ref(),
        }
    }
}

/// The allowlist indexed for longest-prefix lookups: positions in [`Ingress::entries`].
struct AllowIndex {
    v4: PrefixTable<u32, u32>,
    v6: PrefixTable<u128, u32>,
}

impl AllowIndex {
    fn build(entries: &[AllowlistEntry]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match e.cidr.net() {
                IpNet::V4(n) => v4.push(PrefixItem {
                    first: u32::from(n.network()),
                    last: u32::from(n.broadcast()),
                    len: n.prefix_len(),
                    value: i as u32,
                }),
                IpNet::V6(n) => v6.push(PrefixItem {
                    first: u128::from(n.network()),
                    last: u128::from(n.broadcast()),
                    len: n.prefix_len(),
                    value: i as u32,
                }),
            }
        }
        Self {
            v4: PrefixTable::build(v4),
            v6: PrefixTable::build(v6),
        }
    }
}

/// The compiled ingress side of a snapshot.
#[derive(Clone)]
pub struct Ingress {
    /// Entries, most specific prefix first (ties in document order).
    entries: Vec<AllowlistEntry>,
    /// `entries` by prefix: a lookup costs a binary search whatever the allowlist's size.
    index: Arc<AllowIndex>,
    workloads: Vec<Workload>,
    /// The public listeners are open.
    public: bool,
    /// Admitted private endpoint ids, sorted.
    private_endpoints: Vec<Arc<str>>,
}

impl fmt::Debug for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingress")
            .field("entries", &self.entries)
            .field("workloads", &self.workloads)
            .field("public", &self.public)
            .field("private_endpoints", &self.private_endpoints)
            .finish_non_exhaustive()
    }
}

/// The index is built from the entries: equal entries, equal index.
impl PartialEq for Ingress {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
            && self.workloads == other.workloads
            && self.public == other.public
            && self.private_endpoints == other.private_endpoints
    }
}

impl Eq for Ingress {}

impl Default for Ingress {
    /// No snapshot: nothing admitted anywhere.
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: Arc::new(AllowIndex::build(&[])),
            workloads: Vec::new(),
            public: true,
            private_endpoints: Vec::new(),
        }
    }
}

impl Ingress {
    /// Judge `source` on the public `listener` (the private listener judges endpoint ids:
    /// [`Ingress::admit_private`]).
    pub fn admit(&self, source: IpAddr, listener: IngressListener) -> IngressDecision {
        if listener == IngressListener::Private {
            return IngressDecision::refused(IngressReason::WrongListener);
        }
        if !self.public {
            return IngressDecision::refused(IngressReason::PublicClosed);
        }
        if self.entries.is_empty() {
            return IngressDecision::refused(IngressReason::AllowlistEmpty);
        }
        let source = match source {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(source, IpAddr::V4),
            v4 => v4,
        };
        // Containing entries, longest prefix first (as `entries` is ordered).
        match source {
            IpAddr::V4(a) => self.judge(
                self.index
                    .v4
                    .covering(u32::from(a))
                    .map(|&i| &self.entries[i as usize]),
                listener,
            ),
            IpAddr::V6(a) => self.judge(
                self.index
                    .v6
                    .covering(u128::from(a))
                    .map(|&i| &self.entries[i as usize]),
                listener,
            ),
        }
    }

    /// The decision from the entries containing a source, longest prefix first.
    fn judge<'a>(
        &'a self,
        mut containing: impl Iterator<Item = &'a AllowlistEntry>,
        listener: IngressListener,
    ) -> IngressDecision {
        let Some(first) = containing.next() else {
            return IngressDecision::refused(IngressReason::NotAllowlisted);
        };
        match std::iter::once(first)
            .chain(containing)
            .find(|e| e.admits(listener))
        {
            Some(e) => IngressDecision {
                admitted: true,
                reason: IngressReason::Allowlisted,
                entry: Some(e.clone()),
            },
            None => IngressDecision {
                admitted: false,
                reason: IngressReason::ListenerNotAllowed,
                entry: Some(first.clone()),
            },
        }
    }

    /// Judge a connection on the private listener by the endpoint id its PROXY v2 header
    /// names (`None`: it names none). The IP allowlist does not apply there.
    pub fn admit_private(&self, endpoint_id: Option<&str>) -> IngressDecision {
        let Some(id) = endpoint_id.filter(|id| !id.is_empty()) else {
            return IngressDecision::refused(IngressReason::NoEndpointId);
        };
        let admitted = self
            .private_endpoints
            .binary_search_by(|e| (**e).cmp(id))
            .is_ok();
        IngressDecision {
            admitted,
            reason: if admitted {
                IngressReason::PrivateEndpoint
            } else {
                IngressReason::UnknownEndpoint
            },
            entry: None,
        }
    }

    /// Whether the public listeners are open (`network_visibility: PUBLIC`).
    pub fn public(&self) -> bool {
        self.public
    }

    /// Admitted private endpoint ids, sorted.
    pub fn private_endpoints(&self) -> &[Arc<str>] {
        &self.private_endpoints
    }

    pub fn entries(&self) -> &[AllowlistEntry] {
        &self.entries
    }

    /// The workload addresses of `region`, if the platform set any.
    pub fn workload(&self, region: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| &*w.region == region)
    }
}

/// Check a workload address (`host:port`, `[v6]:port`, host an IP or a DNS name, port 1-65535)
/// as the gateways will read it; the message says what is wrong.
pub fn validate_workload_address(address: &str) -> Result<(), String> {
    compile_backend(&crate::BackendDoc::plain(address))
        .map(|_| ())
        .map_err(|(_, message)| message)
}

/// Compile the ingress side of a document. Errors name the field.
pub(crate) fn compile_ingress(doc: &IngressDoc) -> Result<Ingress, CompileError> {
    let mut entries = Vec::with_capacity(doc.allowlist.len());
    for (i, e) in doc.allowlist.iter().enumerate() {
        entries.push(compile_entry(i, e)?);
    }
    // Stable: equal prefix lengths keep document order.
    entries.sort_by_key(|e: &AllowlistEntry| std::cmp::Reverse(prefix_len(e.cidr.net())));
    let mut seen = std::collections::HashSet::with_capacity(entries.len());
    for e in &entries {
        if !seen.insert(e.cidr) {
            return Err(CompileError::new(
                None,
                "ingress.allowlist".to_owned(),
                format!("CIDR {} appears more than once", e.cidr),
            ));
        }
    }
    let mut workloads: Vec<Workload> = Vec::with_capacity(doc.workloads.len());
    for (i, w) in doc.workloads.iter().enumerate() {
        if workloads.iter().any(|x| *x.region == *w.region) {
            return Err(CompileError::new(
                None,
                format!("ingress.workloads[{i}].region"),
                format!("region {} appears more than once", quote(&w.region)),
            ));
        }
        let address = |field: &str, raw: &str| -> Result<Option<Backend>, CompileError> {
            if raw.is_empty() {
                return Ok(None);
            }
            compile_backend(&crate::BackendDoc::plain(raw))
                .map(Some)
                .map_err(|(_, message)| {
                    CompileError::new(None, format!("ingress.workloads[{i}].{field}"), message)
                })
        };
        workloads.push(Workload {
            region: w.region.as_str().into(),
            sql: address("sql", &w.sql)?,
            ui: address("ui", &w.ui)?,
        });
    }
    let mut private_endpoints: Vec<Arc<str>> = Vec::with_capacity(doc.private_endpoints.len());
    for (i, id) in doc.private_endpoints.iter().enumerate() {
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(CompileError::new(
                None,
                format!("ingress.private_endpoints[{i}]"),
                format!(
                    "{} is not an endpoint id (1-128 letters, digits, '-' or '_')",
                    quote(id)
                ),
            ));
        }
        private_endpoints.push(id.as_str().into());
    }
    private_endpoints.sort();
    private_endpoints.dedup();
    Ok(Ingress {
        index: Arc::new(AllowIndex::build(&entries)),
        entries,
        workloads,
        public: doc.public,
        private_endpoints,
    })
}

fn compile_entry(i: usize, e: &AllowlistDoc) -> Result<AllowlistEntry, CompileError> {
    let cidr: Cidr = e.cidr.parse().map_err(|err: crate::CidrError| {
        CompileError::new(
            None,
            format!("ingress.allowlist[{i}].cidr"),
            err.to_string(),
        )
    })?;
    Ok(AllowlistEntry {
        cidr,
        name: e.name.as_str().into(),
        sql: e.sql,
        ui: e.ui,
    })
}

/// Prefix length, IPv4 and IPv6 on one scale (an IPv4 /32 is as specific as an IPv6 /128).
fn prefix_len(net: IpNet) -> u8 {
    match net {
        IpNet::V4(n) => n.prefix_len() + 96,
        IpNet::V6(n) => n.prefix_len(),
    }
}

#[cfg(test)]
mod tests;
