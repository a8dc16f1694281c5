//! Egress decisions over a compiled [`Snapshot`].
//!
//! The gateway decides in two steps because the client never chooses the IP address: first the
//! target as the client named it ([`Snapshot::decide_target`]), then each address the gateway
//! resolved for it, or the literal address ([`Snapshot::decide_address`]). What-if queries
//! without resolution use [`Snapshot::check`].
//!
//! # Precedence
//!
//! 1. **No policy**: a gateway without a snapshot ([`Snapshot::empty_deny`]) denies everything,
//!    `no_snapshot`.
//! 2. **Operator rules** (`crl_managed`, essential services of the platform) always allow what
//!    they match: an FQDN operator rule the name, port and path; a CIDR operator rule the
//!    dialled address and port. The address guard (5) still holds for FQDN operator rules.
//! 3. **Private endpoint names** (custom domain names, exact or `*.suffix`, and endpoint
//!    addresses) route to the endpoint, on any port: verdict `PrivateEndpoint`. They never reach
//!    the address guard (nothing is resolved or dialled on the public path).
//! 4. **The cluster's rules under its traffic policy**:
//!    - `DEFAULT_DENY` allows only what a rule allows. An FQDN rule allows a name it matches
//!      (exact, or `*.suffix` for names strictly below the suffix) on a port of its set (empty =
//!      all) and, when it carries paths, only a request whose (normalised) path a pattern
//!      matches: without a visible path (`None`) it does not allow, and when the only rules that
//!      would allow carry paths the reason is `path_needs_tls_inspection`. A CIDR rule allows any
//!      connection whose dialled address (IPv4-embedding IPv6 judged as its IPv4) and port it
//!      covers, named or literal. An IP literal is matched by CIDR rules only.
//!    - `ALLOW_ALL` allows everything the address guard lets through.
//!    - `REPORT_ONLY` behaves as `ALLOW_ALL`, and the decision carries in `would_deny` the reason
//!      `DEFAULT_DENY` would have denied with.
//! 5. **Address guard**, under every policy: a special address ([`classify`]: loopback,
//!    private, link-local, metadata, CGNAT, multicast, unspecified, broadcast, reserved, and the
//!    gateway's own addresses) is dialled only when a CIDR rule covers it and the port. An FQDN
//!    rule never makes a special address dialable.
//!
//! When several rules allow, the one that decided is named: operator rules before customer
//! rules; for a name, exact before wildcard and a longer wildcard suffix before a shorter one;
//! for an address, a longer CIDR prefix before a shorter one; an FQDN rule for the name before
//! a CIDR rule for the address; then document order.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::ops::Deref;
use std::sync::Arc;

use crate::addr_class::classify;
use crate::document::TrafficPolicy;
use crate::name_index::{NameIndex, NameProbe};
use crate::snapshot::{CidrIndex, Endpoint, RuleSlot, RuleTable, Rules, Snapshot};
use crate::{AddrClass, Hostname, ipv4_behind};

mod name_answer;
pub use name_answer::NameAnswer;

/// What the client asked to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination<'a> {
    /// A normalised DNS name (CONNECT host, SNI, Host header).
    Name(&'a Hostname),
    /// A canonical IP literal (see [`parse_ip_literal`](crate::parse_ip_literal)).
    Ip(IpAddr),
}

/// The rule that decided: a handle on a rule of the snapshot's rule table (cloning it costs
/// one reference count, on the table), read through its [`RuleMeta`] (`rule.id`,
/// `rule.name`). It keeps the table of rules (their ids, names, ports and paths) alive, not the
/// snapshot's indexes.
#[derive(Clone)]
pub struct RuleRef {
    table: Arc<RuleTable>,
    /// Always a rule of `table` (checked in [`RuleRef::new`]).
    index: u32,
}

impl RuleRef {
    /// The rule `index` of `table`; `None` if there is none (a decision then does not allow).
    #[inline]
    fn new(table: &Arc<RuleTable>, index: u32) -> Option<Self> {
        table.get(index)?;
        Some(Self {
            table: table.clone(),
            index,
        })
    }
}

/// What names a rule in decisions, logs and answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleMeta {
    pub id: Box<str>,
    pub name: Box<str>,
}

impl RuleRef {
    /// Whether the rule allows only the paths it lists (a rule with paths).
    pub fn has_paths(&self) -> bool {
        self.table
            .get(self.index)
            .is_some_and(|rule| !rule.paths().is_empty())
    }
}

impl Deref for RuleRef {
    type Target = RuleMeta;

    fn deref(&self) -> &RuleMeta {
        match self.table.get(self.index) {
            Some(rule) => rule.meta(),
            // `RuleRef::new` checked the index, and the table never changes.
            None => unreachable!("a RuleRef names a rule of its table"),
        }
    }
}

impl PartialEq for RuleRef {
    fn eq(&self, other: &Self) -> bool {
        (Arc::ptr_eq(&self.table, &other.table) && self.index == other.index) || **self == **other
    }
}

impl Eq for RuleRef {}

impl Hash for RuleRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleRef")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
    /// Route to this private endpoint (do not resolve or dial on the public path).
    PrivateEndpoint {
        endpoint_id: Arc<str>,
    },
}

impl Verdict {
    /// Stable snake_case name, for logs and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::PrivateEndpoint { .. } => "private_endpoint",
        }
    }
}

/// Why a decision came out as it did. [`Reason::as_str`] names are stable (metric labels,
/// `x-perimeter-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A customer rule allowed; the decision names it.
    AllowedByRule,
    /// An operator rule (`crl_managed`) allowed; the decision names it.
    AllowedByOperatorRule,
    /// The traffic policy is `ALLOW_ALL`.
    AllowAll,
    /// The traffic policy is `REPORT_ONLY`; `would_deny` says whether `DEFAULT_DENY` would deny.
    ReportOnly,
    /// The name is routed to a private endpoint.
    PrivateEndpoint,
    /// No rule names the destination.
    NoRuleForDestination,
    /// Rules name the destination, but not on this port.
    PortNotAllowed,
    /// Rules name the destination and port, but none of their path patterns matches the path.
    PathNotAllowed,
    /// The only rules that would allow carry paths, and the gateway cannot see the path
    /// (HTTPS without TLS inspection).
    PathNeedsTlsInspection,
    /// The address guard refused an address of this class that no CIDR rule covers.
    SpecialAddress(AddrClass),
    /// An IP literal is allowed only by a CIDR rule covering it, and none does.
    IpLiteralNeedsCidrRule,
    /// The gateway has no policy yet.
    NoSnapshot,
    /// `decide_address` for an IP-literal target was given another address.
    AddressNotTarget,
    /// `decide_address` was given a target decided by another snapshot.
    SnapshotMismatch,
    /// A connection forwarded to a private endpoint whose name no longer routes to that
    /// endpoint, or whose backend the endpoint no longer has (judged by the gateway on a newer
    /// snapshot; never a decision of its own).
    PrivateEndpointChanged,
}

impl Reason {
    /// Stable snake_case name. For [`Reason::SpecialAddress`] it is `special_address`; the
    /// class is [`Reason::addr_class`].
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::AllowedByRule => "allowed_by_rule",
            Reason::AllowedByOperatorRule => "allowed_by_operator_rule",
            Reason::AllowAll => "allow_all",
            Reason::ReportOnly => "report_only",
            Reason::PrivateEndpoint => "private_endpoint",
            Reason::NoRuleForDestination => "no_rule_for_destination",
            Reason::PortNotAllowed => "port_not_allowed",
            Reason::PathNotAllowed => "path_not_allowed",
            Reason::PathNeedsTlsInspection => "path_needs_tls_inspection",
            Reason::SpecialAddress(_) => "special_address",
            Reason::IpLiteralNeedsCidrRule => "ip_literal_needs_cidr_rule",
            Reason::NoSnapshot => "no_snapshot",
            Reason::AddressNotTarget => "address_not_target",
            Reason::SnapshotMismatch => "snapshot_mismatch",
            Reason::PrivateEndpointChanged => "private_endpoint_changed",
        }
    }

    /// The address class of a [`Reason::SpecialAddress`].
    pub fn addr_class(self) -> Option<AddrClass> {
        match self {
            Reason::SpecialAddress(class) => Some(class),
            _ => None,
        }
    }

    /// Whether this is a reason to allow (or route to a private endpoint).
    pub fn is_allow(self) -> bool {
        matches!(
            self,
            Reason::AllowedByRule
                | Reason::AllowedByOperatorRule
                | Reason::AllowAll
                | Reason::ReportOnly
                | Reason::PrivateEndpoint
        )
    }

    /// A short sentence for people (refusal bodies, the CLI).
    pub fn description(self) -> &'static str {
        match self {
            Reason::AllowedByRule => "allowed by an egress rule",
            Reason::AllowedByOperatorRule => "allowed by an operator-managed rule",
            Reason::AllowAll => "allowed: the traffic policy is ALLOW_ALL",
            Reason::ReportOnly => "allowed: the traffic policy is REPORT_ONLY",
            Reason::PrivateEndpoint => "routed to a private endpoint",
            Reason::NoRuleForDestination => "no egress rule allows this destination",
            Reason::PortNotAllowed => "no egress rule allows this port for this destination",
            Reason::PathNotAllowed => "no egress rule allows this path for this destination",
            Reason::PathNeedsTlsInspection => "path rule needs TLS inspection",
            Reason::SpecialAddress(AddrClass::Private) => "resolves only to private addresses",
            Reason::SpecialAddress(_) => {
                "special address (loopback, private, link-local, metadata, own ...) not named by a CIDR rule"
            }
            Reason::IpLiteralNeedsCidrRule => "an IP address is allowed only by a CIDR rule",
            Reason::NoSnapshot => "the gateway has no egress policy yet",
            Reason::AddressNotTarget => "the address is not the requested IP address",
            Reason::SnapshotMismatch => "the policy changed during the decision",
            Reason::PrivateEndpointChanged => {
                "the name no longer routes to this private endpoint and backend"
            }
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::SpecialAddress(class) => write!(f, "special_address:{class}"),
            reason => f.write_str(reason.as_str()),
        }
    }
}

/// A decision. There is no way to build one outside this crate: an `Allow` always names the
/// rule that allowed ([`Decision::rule`]) or carries a policy reason (`allow_all`,
/// `report_only`), and a deny always carries its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    verdict: Verdict,
    rule: Option<RuleRef>,
    reason: Reason,
    would_deny: Option<Reason>,
}

impl Decision {
    fn deny(reason: Reason) -> Self {
        Self {
            verdict: Verdict::Deny,
            rule: None,
            reason,
            would_deny: None,
        }
    }

    fn allow_rule(rule: RuleRef, operator: bool) -> Self {
        Self {
            verdict: Verdict::Allow,
            rule: Some(rule),
            reason: if operator {
                Reason::AllowedByOperatorRule
            } else {
                Reason::AllowedByRule
            },
            would_deny: None,
        }
    }

    fn allow_policy(policy: TrafficPolicy, default_deny_reason: Reason) -> Self {
        match policy {
            TrafficPolicy::ReportOnly => Self {
                verdict: Verdict::Allow,
                rule: None,
                reason: Reason::ReportOnly,
                would_deny: Some(default_deny_reason),
            },
            TrafficPolicy::AllowAll => Self {
                verdict: Verdict::Allow,
                rule: None,
                reason: Reason::AllowAll,
                would_deny: None,
            },
            TrafficPolicy::DefaultDeny => Self::deny(default_deny_reason),
        }
    }

    fn private_endpoint(endpoint: &Endpoint) -> Self {
        Self {
            verdict: Verdict::PrivateEndpoint {
                endpoint_id: endpoint.id_arc().clone(),
            },
            rule: None,
            reason: Reason::PrivateEndpoint,
            would_deny: None,
        }
    }

    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The rule that decided, for an allow by rule.
    pub fn rule(&self) -> Option<&RuleRef> {
        self.rule.as_ref()
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Under `REPORT_ONLY`: the reason `DEFAULT_DENY` would have denied with.
    pub fn would_deny(&self) -> Option<Reason> {
        self.would_deny
    }

    /// Whether the connection may proceed (allowed, or routed to a private endpoint).
    pub fn is_allowed(&self) -> bool {
        self.verdict != Verdict::Deny
    }
}

/// An allowing FQDN rule.
#[derive(Debug, Clone)]
struct Allowance {
    rule: RuleRef,
    operator: bool,
}

#[derive(Debug, Clone)]
enum TargetState {
    /// Decided without an address: a deny, or a private endpoint.
    Final(Decision),
    /// A name; addresses still to judge. `allow`: the FQDN rule that allows the name (port,
    /// path), if any. `deny`: what `DEFAULT_DENY` says of the name alone.
    Name {
        allow: Option<Allowance>,
        deny: Reason,
    },
    /// An IP literal, judged at step 2 (the gateway's own addresses are known only there).
    /// `allowed`: under `DEFAULT_DENY`, the port and the CIDR rule that allows the literal on
    /// it (whatever the address class), as step 1 found it.
    Ip {
        addr: IpAddr,
        allowed: Option<(u16, Allowance)>,
    },
}

/// Step 1 of a decision: the target as the client named it. Pass it to
/// [`Snapshot::decide_address`] of the same snapshot for every candidate address.
#[derive(Debug, Clone)]
pub struct TargetDecision {
    instance: u64,
    state: TargetState,
}

impl TargetDecision {
    /// The decision, when no address is needed: a deny, or a private endpoint route.
    pub fn final_decision(&self) -> Option<&Decision> {
        match &self.state {
            TargetState::Final(decision) => Some(decision),
            _ => None,
        }
    }

    /// Whether the gateway must judge addresses (resolve the name, or the literal) with
    /// [`Snapshot::decide_address`] before dialling.
    pub fn needs_address(&self) -> bool {
        !matches!(self.state, TargetState::Final(_))
    }

    /// The FQDN rule that allows the name, port and path, if any (the dialled address must
    /// still pass the address guard).
    pub fn allowing_rule(&self) -> Option<&RuleRef> {
        match &self.state {
            TargetState::Name {
                allow: Some(allowance),
                ..
            } => Some(&allowance.rule),
            _ => None,
        }
    }
}

/// What the FQDN rules say of a name: the allowing rules (indexes in the rule table), and why
/// others did not allow.
struct NameMatch {
    operator: Option<u32>,
    customer: Option<u32>,
    port_miss: bool,
    path_miss: bool,
    needs_tls: bool,
}

/// What the CIDR rules of one index say of an address and port.
struct CidrMatch {
    /// The allowing rule (its index in the rule table).
    allow: Option<u32>,
    covered: bool,
}

impl Snapshot {
    /// Step 1, before resolution: can anything allow this destination, port and (normalised,
    /// see [`normalize_path`](crate::normalize_path); `None` when the gateway cannot see it)
    /// path? See the module documentation for the precedence.
    ///
    /// A name that no FQDN rule allows may still be allowed per address by a CIDR rule, so the
    /// result needs addresses unless no CIDR rule allows the port at all.
    pub fn decide_target(
        &self,
        dest: Destination<'_>,
        port: u16,
        path: Option<&str>,
    ) -> TargetDecision {
        TargetDecision {
            instance: self.instance,
            state: self.target_state(dest, port, path),
        }
    }

    /// Step 2, per resolved (or literal) address: may the gateway dial `addr` on `port` for
    /// `target`? `own` says whether an address is one of the gateway's own.
    pub fn decide_address(
        &self,
        target: &TargetDecision,
        addr: IpAddr,
        port: u16,
        own: &dyn Fn(IpAddr) -> bool,
    ) -> Decision {
        if target.instance != self.instance {
            return Decision::deny(Reason::SnapshotMismatch);
        }
        match &target.state {
            TargetState::Final(decision) => decision.clone(),
            TargetState::Name { allow, deny } => {
                self.address_decision(allow.as_ref(), Some(*deny), addr, port, own)
            }
            TargetState::Ip {
                addr: literal,
                allowed,
            } if *literal == addr => match allowed {
                Some((on, allowance)) if *on == port => {
                    Decision::allow_rule(allowance.rule.clone(), allowance.operator)
                }
                _ => self.address_decision(None, None, addr, port, own),
            },
            TargetState::Ip { .. } => Decision::deny(Reason::AddressNotTarget),
        }
    }

    /// What-if (egress-check), without resolution: [`Snapshot::decide_target`], and for an IP
    /// destination also [`Snapshot::decide_address`] (with no own addresses). For a name the
    /// answer assumes a public address that no CIDR rule covers: CIDR rules and the address
    /// guard are judged per address when the gateway dials.
    pub fn check(&self, dest: Destination<'_>, port: u16, path: Option<&str>) -> Decision {
        let target = self.decide_target(dest, port, path);
        match &target.state {
            TargetState::Final(decision) => decision.clone(),
            TargetState::Name {
                allow: Some(allowance),
                ..
            } => Decision::allow_rule(allowance.rule.clone(), allowance.operator),
            TargetState::Name { allow: None, deny } => {
                Decision::allow_policy(self.traffic_policy, *deny)
            }
            TargetState::Ip { addr, .. } => self.decide_address(&target, *addr, port, &|_| false),
        }
    }

    fn target_state(&self, dest: Destination<'_>, port: u16, path: Option<&str>) -> TargetState {
        if !self.installed {
            return TargetState::Final(Decision::deny(Reason::NoSnapshot));
        }
        let default_deny = self.traffic_policy == TrafficPolicy::DefaultDeny;
        match dest {
            Destination::Name(name) => {
                NameProbe::with(name, |name| self.name_state(name, port, path, default_deny))
            }
            Destination::Ip(addr) => {
                let mut allowed = None;
                if default_deny {
                    let judged = ipv4_behind(addr);
                    let operator = self.match_cidr(&self.operator_cidrs, judged, port);
                    let (rule, operator) = match self.rule_ref(operator.allow) {
                        Some(rule) => (rule, true),
                        None => {
                            let customer = self.match_cidr(&self.cidrs, judged, port);
                            let Some(rule) = self.rule_ref(customer.allow) else {
                                return TargetState::Final(Decision::deny(literal_deny_reason(
                                    classify(judged),
                                    operator.covered || customer.covered,
                                )));
                            };
                            (rule, false)
                        }
                    };
                    allowed = Some((port, Allowance { rule, operator }));
                }
                TargetState::Ip { addr, allowed }
            }
        }
    }

    fn name_state(
        &self,
        name: &NameProbe<'_>,
        port: u16,
        path: Option<&str>,
        default_deny: bool,
    ) -> TargetState {
        let found = self.match_name(name, port, path);
        if let Some(rule) = self.rule_ref(found.operator) {
            return TargetState::Name {
                allow: Some(Allowance {
                    rule,
                    operator: true,
                }),
                deny: Reason::NoRuleForDestination,
            };
        }
        if let Some(endpoint) = self.match_endpoint(name) {
            return TargetState::Final(Decision::private_endpoint(endpoint));
        }
        let deny = found.deny_reason(path);
        let allow = self.rule_ref(found.customer).map(|rule| Allowance {
            rule,
            operator: false,
        });
        if allow.is_none() && default_deny && !self.cidr_ports.contains(port) {
            return TargetState::Final(Decision::deny(deny));
        }
        TargetState::Name { allow, deny }
    }

    /// `name_deny` is `None` for an IP literal.
    fn address_decision(
        &self,
        name_allow: Option<&Allowance>,
        name_deny: Option<Reason>,
        addr: IpAddr,
        port: u16,
        own: &dyn Fn(IpAddr) -> bool,
    ) -> Decision {
        let judged = ipv4_behind(addr);
        let class = if own(addr) || (judged != addr && own(judged)) {
            AddrClass::OwnAddress
        } else {
            classify(judged)
        };
        let special = class.is_special();
        // Operator rules first (an FQDN one for the name, then a CIDR one for the address),
        // then customer rules the same way. The customer CIDR index is probed only when no
        // FQDN rule settles the connection.
        let fqdn = name_allow.filter(|_| !special);
        if let Some(allowance) = fqdn.filter(|a| a.operator) {
            return Decision::allow_rule(allowance.rule.clone(), true);
        }
        let operator = self.match_cidr(&self.operator_cidrs, judged, port);
        if let Some(rule) = self.rule_ref(operator.allow) {
            return Decision::allow_rule(rule, true);
        }
        if let Some(allowance) = fqdn {
            return Decision::allow_rule(allowance.rule.clone(), allowance.operator);
        }
        let customer = self.match_cidr(&self.cidrs, judged, port);
        if let Some(rule) = self.rule_ref(customer.allow) {
            return Decision::allow_rule(rule, false);
        }
        let covered = operator.covered || customer.covered;

        let default_deny_reason = match name_deny {
            _ if special => Reason::SpecialAddress(class),
            None => literal_deny_reason(class, covered),
            Some(Reason::NoRuleForDestination) if covered => Reason::PortNotAllowed,
            Some(reason) => reason,
        };
        if special {
            // The address guard holds under every traffic policy.
            return Decision::deny(default_deny_reason);
        }
        Decision::allow_policy(self.traffic_policy, default_deny_reason)
    }

    /// A handle on rule `index` of the rule table.
    #[inline]
    fn rule_ref(&self, index: Option<u32>) -> Option<RuleRef> {
        RuleRef::new(&self.rule_table, index?)
    }

    /// The most specific allowing FQDN rules (operator and customer) for `name`, and why the
    /// others did not allow. Operator patterns are probed first (a small index), then the
    /// customer ones; in each, the name itself, then each wildcard suffix, longest first, until
    /// a rule allows.
    fn match_name(&self, name: &NameProbe<'_>, port: u16, path: Option<&str>) -> NameMatch {
        let mut found = NameMatch {
            operator: None,
            customer: None,
            port_miss: false,
            path_miss: false,
            needs_tls: false,
        };
        self.scan_index(&self.operator_names, name, port, path, &mut found);
        if found.operator.is_none() {
            self.scan_index(&self.names, name, port, path, &mut found);
        }
        found
    }

    fn scan_index(
        &self,
        index: &NameIndex<Rules>,
        name: &NameProbe<'_>,
        port: u16,
        path: Option<&str>,
        found: &mut NameMatch,
    ) {
        if !index.may_match(name) {
            return;
        }
        if let Some(rules) = name.full().and_then(|name| index.get(name)) {
            self.scan_rules(rules, port, path, found);
        }
        for suffix in name.wildcard_suffixes() {
            if found.operator.is_some() || found.customer.is_some() {
                return;
            }
            if let Some(rules) = index.get(suffix) {
                self.scan_rules(rules, port, path, found);
            }
        }
    }

    /// Whether the rule of `slot` allows `port`: from its head, or for a rule with many ports
    /// from the rule table (a rule that is not there allows nothing).
    #[inline]
    fn slot_allows_port(&self, slot: &RuleSlot, port: u16) -> bool {
        slot.head.allows_port(port).unwrap_or_else(|| {
            self.rule_table
                .get(slot.index)
                .is_some_and(|rule| rule.allows_port(port))
        })
    }

    fn scan_rules(&self, rules: &Rules, port: u16, path: Option<&str>, found: &mut NameMatch) {
        for slot in rules.iter(&self.slots) {
            if !self.slot_allows_port(slot, port) {
                found.port_miss = true;
                continue;
            }
            if slot.head.has_paths() {
                match path {
                    None => {
                        found.needs_tls = true;
                        continue;
                    }
                    Some(path) if !self.paths.any_matches(slot.paths, path) => {
                        found.path_miss = true;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let allowing = if slot.head.operator() {
                &mut found.operator
            } else {
                &mut found.customer
            };
            if allowing.is_none() {
                *allowing = Some(slot.index);
            }
            return;
        }
    }

    /// The private endpoint a name is routed to: an exact name before wildcards, a longer
    /// wildcard suffix before a shorter one.
    fn match_endpoint(&self, name: &NameProbe<'_>) -> Option<&Endpoint> {
        if !self.endpoint_names.may_match(name) {
            return None;
        }
        let index = name
            .full()
            .and_then(|name| self.endpoint_names.get(name))
            .or_else(|| {
                name.wildcard_suffixes()
                    .find_map(|suffix| self.endpoint_names.get(suffix))
            })?;
        self.endpoints.get(*index as usize)
    }

    /// The most specific rule of `index` allowing an address (already judged: IPv4 behind
    /// IPv6 forms) and port, and whether any prefix of `index` covers the address.
    fn match_cidr(&self, index: &CidrIndex, addr: IpAddr, port: u16) -> CidrMatch {
        let mut found = CidrMatch {
            allow: None,
            covered: false,
        };
        if index.is_empty() {
            return found;
        }
        let mut scan = |rules: &Rules| {
            found.covered = true;
            found.allow = rules
                .iter(&self.slots)
                .find(|slot| self.slot_allows_port(slot, port))
                .map(|slot| slot.index);
            found.allow.is_some()
        };
        match addr {
            IpAddr::V4(v4) => {
                let _ = index.v4.covering(u32::from(v4)).any(&mut scan);
            }
            IpAddr::V6(v6) => {
                let _ = index.v6.covering(u128::from(v6)).any(&mut scan);
            }
        }
        found
    }
}

impl NameMatch {
    /// What `DEFAULT_DENY` says of the name when no FQDN rule allows it.
    fn deny_reason(&self, path: Option<&str>) -> Reason {
        if self.needs_tls && path.is_none() {
            Reason::PathNeedsTlsInspection
        } else if self.path_miss {
            Reason::PathNotAllowed
        } else if self.port_miss {
            Reason::PortNotAllowed
        } else {
            Reason::NoRuleForDestination
        }
    }
}

/// Why `DEFAULT_DENY` refuses an IP literal no CIDR rule allows on the port.
fn literal_deny_reason(class: AddrClass, covered: bool) -> Reason {
    if class.is_special() {
        Reason::SpecialAddress(class)
    } else if covered {
        Reason::PortNotAllowed
    } else {
        Reason::IpLiteralNeedsCidrRule
    }
}

#[cfg(test)]
pub(crate) mod tests;
