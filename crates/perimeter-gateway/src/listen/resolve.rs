//! Resolve and pin the address: names are resolved by the gateway's own resolver (the client
//! never chooses the address); with a pin (the transparent listener: the address the client
//! dialled) that address is the only candidate and must be among the resolved ones. Each
//! candidate goes through the address guard ([`Snapshot::decide_address`]); the first allowed
//! one is chosen.

use std::net::IpAddr;

use perimeter_policy::{Decision, Reason, Verdict};

use super::ProxyContext;
use super::decide::{Decided, private_endpoint};
use super::refusal::{Refusal, Why};
use super::target::TargetHost;

/// The address to dial and the decision that allows it.
pub(crate) struct Chosen {
    pub(crate) addr: IpAddr,
    pub(crate) decision: Decision,
}

pub(crate) async fn resolve_and_pin(
    ctx: &ProxyContext,
    decided: &Decided,
    pin: Option<IpAddr>,
) -> Result<Chosen, Refusal> {
    let target = &decided.target;
    let addrs: Vec<IpAddr> = match &target.host {
        TargetHost::Ip(ip) => vec![*ip],
        TargetHost::Name(name) => ctx.resolver.resolve(name).await.map_err(|e| {
            Refusal::new(
                Why::from(&e),
                format!("while resolving upstream {name}: {e}"),
            )
        })?,
    };
    let addrs = match pin {
        None => addrs,
        Some(ip) if addrs.contains(&ip) => vec![ip],
        Some(ip) => {
            return Err(Refusal::new(
                Why::OriginalDestinationMismatch,
                format!(
                    "the connection was addressed to {ip}, which is not among the addresses the gateway resolves for {}",
                    target.host
                ),
            ));
        }
    };
    let own = |a: IpAddr| ctx.own.contains(a);
    let mut first_deny: Option<Reason> = None;
    for addr in addrs {
        let d = decided
            .snap
            .decide_address(&decided.decision, addr, target.port, &own);
        match d.verdict() {
            Verdict::Allow => return Ok(Chosen { addr, decision: d }),
            Verdict::PrivateEndpoint { .. } => return Err(private_endpoint()),
            Verdict::Deny => {
                first_deny.get_or_insert(d.reason());
            }
        }
    }
    Err(match first_deny {
        Some(reason) => Refusal::policy(reason),
        None => Refusal::new(
            Why::DnsNoAddresses,
            format!("{} resolves to no address", target.host),
        ),
    })
}
