//! The one consistency check of every listener (DESIGN "Consistency": domain fronting, SNI
//! spoofing): what the client's bytes name (a Host header, a TLS SNI) must be the target it was
//! admitted for.
//!
//! - To a name: the same name (and, for a Host with a port, the same port).
//! - To an IP literal: a Host may name the literal itself; an SNI (and, inside a tunnel, a Host)
//!   may name a host the policy allows on that port at the dialled address, judged the way the
//!   gateway would judge a connection to that name: allowed by name (an FQDN rule, an operator
//!   rule, or a traffic policy that allows every name), or by a CIDR rule covering the dialled
//!   address *and* the name resolving, by the gateway's resolver, to that address. A CIDR rule
//!   over a shared front end therefore does not admit every name it serves.

use std::net::IpAddr;

use perimeter_policy::{Destination, Hostname, Snapshot, TrafficPolicy, Verdict};

use super::ProxyContext;
use super::refusal::{Refusal, Why};
use super::target::{Target, TargetHost};

/// Whether a literal target admits other names (inside a tunnel), or only itself (the Host of
/// a CONNECT request or of an absolute-form request, which names its own target).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtLiteral {
    OnlyItself,
    AllowedNames,
}

/// Check a Host header value against `target`. A Host without a port names `port_if_omitted`.
pub(crate) async fn check_host(
    ctx: &ProxyContext,
    snap: &Snapshot,
    target: &Target,
    dialled: Option<IpAddr>,
    value: &[u8],
    port_if_omitted: u16,
    at_literal: AtLiteral,
) -> Result<(), Refusal> {
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|t| t.bytes().all(|b| b == b'\t' || (32..127).contains(&b)))
        .ok_or_else(|| Refusal::new(Why::HostMismatch, "the Host header is not ASCII text"))?;
    let (host, port) = Target::parse_host_header(text).map_err(|e| {
        Refusal::new(
            Why::HostMismatch,
            format!("the Host header {text:?} is not valid: {e}"),
        )
    })?;
    let mismatch = || {
        Refusal::new(
            Why::HostMismatch,
            format!("the Host header {text:?} does not name the requested {target}"),
        )
    };
    if port.unwrap_or(port_if_omitted) != target.port {
        return Err(mismatch());
    }
    match (&target.host, &host, at_literal, dialled) {
        (a, b, _, _) if a == b => Ok(()),
        (TargetHost::Ip(_), TargetHost::Name(name), AtLiteral::AllowedNames, Some(addr))
            if name_allowed_at(ctx, snap, name, target.port, addr).await =>
        {
            Ok(())
        }
        _ => Err(mismatch()),
    }
}

/// Check a ClientHello's SNI (`None`: it has none) against `target`, dialled at `dialled`.
///
/// A hello with `encrypted_client_hello` names its real destination only inside the
/// encryption: its SNI is the provider's public name, and the name the server routes on can
/// be any other it hosts (domain fronting the gateway cannot see). Under `DEFAULT_DENY` it is
/// refused (`tls_encrypted_client_hello`); `ALLOW_ALL` and `REPORT_ONLY` allow every name
/// anyway and let it pass. GREASE ECH looks the same from outside and is refused the same way.
pub(crate) async fn check_sni(
    ctx: &ProxyContext,
    snap: &Snapshot,
    target: &Target,
    dialled: IpAddr,
    sni: Option<&str>,
    ech: bool,
) -> Result<(), Why> {
    if ech && snap.traffic_policy() == TrafficPolicy::DefaultDeny {
        return Err(Why::EncryptedClientHello);
    }
    let Some(sni) = sni else {
        return match target.host {
            TargetHost::Name(_) => Err(Why::SniMissing),
            TargetHost::Ip(_) => Ok(()),
        };
    };
    let sni: Hostname = sni.parse().map_err(|_| Why::InvalidSni)?;
    match &target.host {
        TargetHost::Name(name) if *name == sni => Ok(()),
        TargetHost::Name(_) => Err(Why::SniMismatch),
        TargetHost::Ip(_) if name_allowed_at(ctx, snap, &sni, target.port, dialled).await => Ok(()),
        TargetHost::Ip(_) => Err(Why::SniNotAllowed),
    }
}

/// Whether the policy allows `name` on `port` at `addr` (see the module's doc).
pub(crate) async fn name_allowed_at(
    ctx: &ProxyContext,
    snap: &Snapshot,
    name: &Hostname,
    port: u16,
    addr: IpAddr,
) -> bool {
    let decided = snap.decide_target(Destination::Name(name), port, None);
    let d = snap.decide_address(&decided, addr, port, &|a| ctx.own.contains(a));
    if *d.verdict() != Verdict::Allow {
        return false;
    }
    let by_name =
        decided.allowing_rule().is_some() || snap.traffic_policy() != TrafficPolicy::DefaultDeny;
    if by_name {
        return true;
    }
    // Only a CIDR rule over `addr` allows: the name must lead there.
    match ctx.resolver.resolve(name).await {
        Ok(addrs) => addrs
            .iter()
            .any(|a| a.to_canonical() == addr.to_canonical()),
        Err(e) => {
            tracing::debug!(%name, error = %e, "a name checked at a literal target does not resolve");
            false
        }
    }
}
