//! What the gateway's DNS listener may answer for a name ([`Snapshot::answer_name`]), and which
//! of the addresses it resolved for an answerable name it may hand out
//! ([`Snapshot::answer_address`]).
//!
//! A DNS answer carries no port or path, so a name is answerable when the policy could let a
//! connection to it through on some port:
//!
//! 1. an operator FQDN rule matches the name (any port, any path): answerable, named;
//! 2. a private endpoint name (exact or wildcard, or an endpoint address): the endpoint;
//! 3. a customer FQDN rule matches the name (any port, any path): answerable, named;
//! 4. otherwise `ALLOW_ALL` answers, `REPORT_ONLY` answers and records what `DEFAULT_DENY` would
//!    say, and `DEFAULT_DENY` refuses. A name that only a CIDR rule could allow is refused under
//!    `DEFAULT_DENY`: which of its addresses a CIDR rule covers is known only by resolving it, and
//!    a refused name is never resolved (a query must not carry data out).
//!
//! Within the rules the order is the decisions' own: exact before wildcard, a longer wildcard
//! suffix before a shorter one, then document order.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Reason, RuleRef};
use crate::addr_class::classify;
use crate::document::TrafficPolicy;
use crate::name_index::{NameIndex, NameProbe};
use crate::snapshot::{Rules, Snapshot};
use crate::{AddrClass, Hostname, ipv4_behind};

/// What a name gets from the DNS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameAnswer {
    /// A private endpoint's name: answer the gateway's transparent address.
    Endpoint { endpoint_id: Arc<str> },
    /// An FQDN rule allows the name on some port: answer the addresses the gateway resolves.
    Allowed { rule: RuleRef, operator: bool },
    /// No rule allows the name and the traffic policy is `ALLOW_ALL`: answer.
    AllowAll,
    /// No rule allows the name and the traffic policy is `REPORT_ONLY`: answer, and record that
    /// `DEFAULT_DENY` would have refused it for this reason.
    WouldDeny(Reason),
    /// Refuse, for this reason; the name is never resolved.
    Denied(Reason),
}

impl NameAnswer {
    /// Whether the listener answers the name (with the transparent address or resolved ones).
    pub fn is_answered(&self) -> bool {
        !matches!(self, NameAnswer::Denied(_))
    }

    /// The stable reason, as decision events carry it (for [`NameAnswer::WouldDeny`] the reason
    /// `DEFAULT_DENY` would have given).
    pub fn reason(&self) -> Reason {
        match self {
            NameAnswer::Endpoint { .. } => Reason::PrivateEndpoint,
            NameAnswer::Allowed { operator: true, .. } => Reason::AllowedByOperatorRule,
            NameAnswer::Allowed { .. } => Reason::AllowedByRule,
            NameAnswer::AllowAll => Reason::AllowAll,
            NameAnswer::WouldDeny(reason) | NameAnswer::Denied(reason) => *reason,
        }
    }

    /// The rule that allows the name, if a rule does.
    pub fn rule(&self) -> Option<&RuleRef> {
        match self {
            NameAnswer::Allowed { rule, .. } => Some(rule),
            _ => None,
        }
    }
}

impl Snapshot {
    /// What the DNS listener answers for `name` (see the module documentation). Pure: nothing
    /// is resolved.
    pub fn answer_name(&self, name: &Hostname) -> NameAnswer {
        if !self.installed {
            return NameAnswer::Denied(Reason::NoSnapshot);
        }
        NameProbe::with(name, |probe| {
            if let Some(rule) = self.any_port_rule(&self.operator_names, probe) {
                return NameAnswer::Allowed {
                    rule,
                    operator: true,
                };
            }
            if let Some(endpoint) = self.match_endpoint(probe) {
                return NameAnswer::Endpoint {
                    endpoint_id: endpoint.id_arc().clone(),
                };
            }
            if let Some(rule) = self.any_port_rule(&self.names, probe) {
                return NameAnswer::Allowed {
                    rule,
                    operator: false,
                };
            }
            match self.traffic_policy {
                TrafficPolicy::AllowAll => NameAnswer::AllowAll,
                TrafficPolicy::ReportOnly => NameAnswer::WouldDeny(Reason::NoRuleForDestination),
                TrafficPolicy::DefaultDeny => NameAnswer::Denied(Reason::NoRuleForDestination),
            }
        })
    }

    /// May the DNS listener hand out `addr`, resolved for an answerable name? The address
    /// guard's answer for any port: a special address (loopback, private, link-local,
    /// metadata ..., or one of the gateway's own, as `own` says) only when a CIDR rule covers
    /// it on some port. `Err` carries the class of a refused address.
    pub fn answer_address(
        &self,
        addr: IpAddr,
        own: &dyn Fn(IpAddr) -> bool,
    ) -> Result<(), AddrClass> {
        let judged = ipv4_behind(addr);
        let class = if own(addr) || (judged != addr && own(judged)) {
            AddrClass::OwnAddress
        } else {
            classify(judged)
        };
        if !class.is_special() {
            return Ok(());
        }
        // The port does not matter for `covered`.
        let covered = self.match_cidr(&self.operator_cidrs, judged, 0).covered
            || self.match_cidr(&self.cidrs, judged, 0).covered;
        if covered { Ok(()) } else { Err(class) }
    }

    /// The most specific rule of `index` matching the name, whatever its ports and paths.
    fn any_port_rule(&self, index: &NameIndex<Rules>, name: &NameProbe<'_>) -> Option<RuleRef> {
        if !index.may_match(name) {
            return None;
        }
        let first = |rules: &Rules| rules.iter(&self.slots).next().map(|slot| slot.index);
        let found = name
            .full()
            .and_then(|key| index.get(key))
            .and_then(first)
            .or_else(|| {
                name.wildcard_suffixes()
                    .find_map(|suffix| index.get(suffix).and_then(first))
            });
        self.rule_ref(found)
    }
}

#[cfg(test)]
mod tests;
