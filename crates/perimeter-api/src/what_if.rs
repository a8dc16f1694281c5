//! The verdict of egress-check: what the cluster's gateways decide for a destination, taken
//! the way their dial step takes it.
//!
//! 1. [`Snapshot::decide_target`] on the destination as named (and the path, when given): a
//!    deny or a private endpoint route is final, nothing is resolved.
//! 2. A name is resolved (by the caller, with the gateways' resolver); each address is judged
//!    in order with [`Snapshot::decide_address`] (CIDR rules, the address guard), and the first
//!    allowed one is the one dialled. When none is allowed, the reason is the first address's.
//! 3. An IP literal is judged as that one address.
//!
//! The gateways' own addresses are known to each gateway only; here no address counts as one
//! (loopback and private addresses are special anyway).
//!
//! Without addresses for a name (no resolver, or the name does not resolve), the verdict is
//! [`Snapshot::check`]: the FQDN rules' word on the name, as if it resolved to a public address
//! no CIDR rule covers.
//!
//! TLS inspection: a cluster that inspects refuses, at the CONNECT and before anything is
//! resolved, a name that only rules with paths allow when it is on the never-inspect list
//! ([`never_inspected`]): its paths can never be seen, so no path allows it over HTTPS. Any
//! other path is decided against the path rules, inspection on or off (plain HTTP shows its
//! path either way).

use std::net::IpAddr;

use perimeter_policy::{Decision, Destination, Reason, Snapshot};

/// The reason the gateways give a CONNECT refused by [`never_inspected`] (their
/// `x-perimeter-error`).
pub const PATH_RULE_NEVER_INSPECTED: &str = "path_rule_never_inspected";

/// Whether the gateways refuse `dest` at the CONNECT because the cluster inspects, only rules
/// with paths allow it on `port` (without a path the target step answers
/// `path_needs_tls_inspection`), and it is on the cluster's never-inspect list: the gateways'
/// own test, whatever the path.
pub fn never_inspected(snap: &Snapshot, dest: Destination<'_>, port: u16) -> bool {
    let Destination::Name(name) = dest else {
        return false;
    };
    snap.inspection().is_some_and(|i| i.never_inspects(name))
        && governed_by_path_rules(snap, dest, port)
}

/// Whether only rules with paths allow `dest` on `port`: a CONNECT to it needs TLS inspection.
pub fn governed_by_path_rules(snap: &Snapshot, dest: Destination<'_>, port: u16) -> bool {
    snap.decide_target(dest, port, None)
        .final_decision()
        .is_some_and(|d| d.reason() == Reason::PathNeedsTlsInspection)
}

/// One resolved address and what the gateways decide for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressOutcome {
    pub addr: IpAddr,
    pub decision: Decision,
    /// The first allowed address: the one the gateways dial.
    pub dialled: bool,
}

/// The verdict, and for a name the addresses judged on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    /// For a name judged per address: every address in order. `None` for an IP literal, for a
    /// destination decided before any address, and for a name without addresses.
    pub addresses: Option<Vec<AddressOutcome>>,
}

/// Whether the gateways resolve `dest` before deciding (a name that step 1 does not settle).
pub fn needs_resolution(
    snap: &Snapshot,
    dest: Destination<'_>,
    port: u16,
    path: Option<&str>,
) -> bool {
    matches!(dest, Destination::Name(_)) && snap.decide_target(dest, port, path).needs_address()
}

/// The gateways' verdict on `dest`; `resolved` are the addresses of a name, in the order the
/// gateways try them (`None`: not known).
pub fn gateway_verdict(
    snap: &Snapshot,
    dest: Destination<'_>,
    port: u16,
    path: Option<&str>,
    resolved: Option<&[IpAddr]>,
) -> Outcome {
    let target = snap.decide_target(dest, port, path);
    let not_own = |_: IpAddr| false;
    if let Some(d) = target.final_decision() {
        return Outcome {
            decision: d.clone(),
            addresses: None,
        };
    }
    let addrs = match (dest, resolved) {
        (Destination::Ip(addr), _) => {
            return Outcome {
                decision: snap.decide_address(&target, addr, port, &not_own),
                addresses: None,
            };
        }
        (Destination::Name(_), Some(addrs)) if !addrs.is_empty() => addrs,
        (Destination::Name(_), _) => {
            return Outcome {
                decision: snap.check(dest, port, path),
                addresses: None,
            };
        }
    };
    let mut judged: Vec<AddressOutcome> = addrs
        .iter()
        .map(|&addr| AddressOutcome {
            addr,
            decision: snap.decide_address(&target, addr, port, &not_own),
            dialled: false,
        })
        .collect();
    let chosen = judged
        .iter()
        .position(|a| a.decision.is_allowed())
        .unwrap_or(0);
    if judged[chosen].decision.is_allowed() {
        judged[chosen].dialled = true;
    }
    Outcome {
        decision: judged[chosen].decision.clone(),
        addresses: Some(judged),
    }
}

#[cfg(test)]
mod tests;
