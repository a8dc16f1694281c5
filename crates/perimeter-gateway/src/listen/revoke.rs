//! Revocation: a connection admitted under one snapshot stops as soon as a later snapshot no
//! longer allows its target at the dialled address.
//!
//! Two halves, one judgement ([`still_allowed`]):
//! - [`Revocation::check`], synchronous and cheap (an atomic version compare while nothing
//!   changed), called between reading client bytes and sending them upstream, so no byte read
//!   after a revoking snapshot was applied goes upstream;
//! - [`Revocation::revoked`], a future that resolves once a newer snapshot denies, so an idle
//!   or downstream-only connection is closed too.
//!
//! A connection admitted by an ingress listener is judged the same way, by the IP allowlist of
//! each new snapshot ([`Revocation::for_ingress`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use perimeter_policy::{IngressListener, IngressReason, Reason, Snapshot, Verdict};
use tokio::sync::watch;

use super::ProxyContext;
use super::own::OwnAddresses;
use super::target::Target;

/// The admission of one connection, watched for revocation. Clones (the relay's upstream
/// direction and its watch) share what they judge; each keeps its own place in the snapshots.
#[derive(Clone)]
pub(crate) struct Revocation {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    /// The snapshot last judged (the admitting one at first).
    judged: Arc<Snapshot>,
    admitted: Arc<Admission>,
    /// Set once a snapshot revoked: every later check fails too.
    revoked: Option<Revoked>,
}

/// What was admitted: judged again under every new snapshot.
enum Admission {
    /// An egress connection.
    Egress {
        own: OwnAddresses,
        target: Target,
        addr: IpAddr,
        /// The normalised path of a forwarded request (decided with it); `None` for a tunnel.
        path: Option<String>,
        /// A connection forwarded to a private endpoint.
        endpoint: Option<EndpointRoute>,
    },
    /// A connection from `source` admitted by the IP allowlist on an ingress listener.
    Ingress {
        source: IpAddr,
        listener: IngressListener,
    },
    /// A connection admitted on the private ingress listener for an endpoint id.
    PrivateIngress { endpoint_id: Arc<str> },
}

/// How a connection was forwarded to a private endpoint: judged again the same way.
#[derive(Debug, Clone)]
pub(crate) struct EndpointRoute {
    pub(crate) id: Arc<str>,
    /// The backend dialled, as the endpoint lists it.
    pub(crate) backend: String,
    /// Chosen by the port alone (a redirected connection to the DNS answer address that named
    /// no endpoint), among the endpoints of this region: it must stay the one.
    pub(crate) by_port_in: Option<String>,
}

/// Why a connection was revoked.
#[derive(Debug, Clone)]
pub(crate) struct Revoked {
    pub(crate) version: u64,
    pub(crate) reason: RevokedBy,
}

/// The reason of the decision that revoked a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RevokedBy {
    Egress(Reason),
    Ingress(IngressReason),
}

impl RevokedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RevokedBy::Egress(r) => r.as_str(),
            RevokedBy::Ingress(r) => r.as_str(),
        }
    }
}

impl std::fmt::Display for RevokedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokedBy::Egress(r) => r.fmt(f),
            RevokedBy::Ingress(r) => r.fmt(f),
        }
    }
}

impl std::fmt::Display for Revoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy version {}: {}", self.version, self.reason)
    }
}

impl Revocation {
    /// Watch the connection to `target` dialled at `addr` (for `path`, a forwarded request's),
    /// admitted under `admitted`.
    pub(crate) fn new(
        ctx: &ProxyContext,
        admitted: Arc<Snapshot>,
        target: Target,
        addr: SocketAddr,
        path: Option<String>,
    ) -> Self {
        Self::watching(
            ctx.snapshots.clone(),
            ctx.own.clone(),
            admitted,
            target,
            addr,
            path,
        )
    }

    /// [`Revocation::new`] on a receiver of snapshots and a set of own addresses.
    pub(crate) fn watching(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        own: OwnAddresses,
        admitted: Arc<Snapshot>,
        target: Target,
        addr: SocketAddr,
        path: Option<String>,
    ) -> Self {
        let admission = Admission::Egress {
            own,
            target,
            addr: addr.ip(),
            path,
            endpoint: None,
        };
        Self::judging(snapshots, admitted, admission)
    }

    /// Watch a connection from `source` admitted on the ingress `listener` under `admitted`: it
    /// stands while each new snapshot's IP allowlist still admits it.
    pub(crate) fn for_ingress(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        admitted: Arc<Snapshot>,
        source: IpAddr,
        listener: IngressListener,
    ) -> Self {
        Self::judging(snapshots, admitted, Admission::Ingress { source, listener })
    }

    /// Watch a connection admitted on the private ingress listener for `endpoint_id`: it stands
    /// while each new snapshot still admits that endpoint's connection.
    pub(crate) fn for_private_ingress(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        admitted: Arc<Snapshot>,
        endpoint_id: Arc<str>,
    ) -> Self {
        Self::judging(
            snapshots,
            admitted,
            Admission::PrivateIngress { endpoint_id },
        )
    }

    /// Watch a connection forwarded to a private endpoint (`route`): it stands while the
    /// target still routes to that endpoint, the same way it was chosen, and the endpoint still
    /// has that backend.
    pub(crate) fn for_endpoint(
        ctx: &ProxyContext,
        admitted: Arc<Snapshot>,
        target: Target,
        addr: SocketAddr,
        route: EndpointRoute,
    ) -> Self {
        let admission = Admission::Egress {
            own: ctx.own.clone(),
            target,
            addr: addr.ip(),
            path: None,
            endpoint: Some(route),
        };
        Self::judging(ctx.snapshots.clone(), admitted, admission)
    }

    fn judging(
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        admitted: Arc<Snapshot>,
        admission: Admission,
    ) -> Self {
        // A snapshot applied between the decision and now is judged at the first check.
        if !Arc::ptr_eq(&snapshots.borrow_and_update(), &admitted) {
            snapshots.mark_changed();
        }
        Self {
            snapshots,
            judged: admitted,
            admitted: Arc::new(admission),
            revoked: None,
        }
    }

    /// `Err` once a snapshot applied since the last check no longer allows the connection.
    pub(crate) fn check(&mut self) -> Result<(), Revoked> {
        if let Some(r) = &self.revoked {
            return Err(r.clone());
        }
        // Closed (the sync is gone): the snapshot in hand stands.
        if !self.snapshots.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let current = self.snapshots.borrow_and_update().clone();
        self.judge(current)
    }

    fn judge(&mut self, current: Arc<Snapshot>) -> Result<(), Revoked> {
        if !Arc::ptr_eq(&current, &self.judged) {
            let judged = match &*self.admitted {
                Admission::Egress {
                    endpoint: Some(route),
                    target,
                    ..
                } => still_routed(&current, target, route).map_err(RevokedBy::Egress),
                Admission::Egress {
                    endpoint: None,
                    own,
                    target,
                    addr,
                    path,
                } => still_allowed(&current, target, path.as_deref(), *addr, own)
                    .map_err(RevokedBy::Egress),
                Admission::Ingress { source, listener } => {
                    let d = current.admit_ingress(*source, *listener);
                    if d.admitted {
                        Ok(())
                    } else {
                        Err(RevokedBy::Ingress(d.reason))
                    }
                }
                Admission::PrivateIngress { endpoint_id } => {
                    let d = current.admit_private_ingress(Some(endpoint_id));
                    if d.admitted {
                        Ok(())
                    } else {
                        Err(RevokedBy::Ingress(d.reason))
                    }
                }
            };
            if let Err(reason) = judged {
                let r = Revoked {
                    version: current.version(),
                    reason,
                };
                self.revoked = Some(r.clone());
                return Err(r);
            }
            self.judged = current;
        }
        Ok(())
    }

    /// Resolves once a snapshot denies the connection.
    pub(crate) async fn revoked(mut self) -> Revoked {
        loop {
            if let Err(r) = self.check() {
                return r;
            }
            if self.snapshots.changed().await.is_err() {
                // No more snapshots will come: the current one stands.
                return std::future::pending().await;
            }
            // `changed` marked the version seen; judge it here.
            let current = self.snapshots.borrow_and_update().clone();
            if let Err(r) = self.judge(current) {
                return r;
            }
        }
    }
}

/// Whether `snap` still routes `target` to the private endpoint of `route` the way it was
/// chosen (by name, or as the one endpoint of the region on the port), and that endpoint still
/// has the backend on the target's port.
pub(crate) fn still_routed(
    snap: &Snapshot,
    target: &Target,
    route: &EndpointRoute,
) -> Result<(), Reason> {
    let id = &*route.id;
    match &route.by_port_in {
        Some(region) => {
            let mut serving = super::endpoint::serving(snap, region, target.port);
            match (serving.next(), serving.next()) {
                (Some(e), None) if e.id() == id => {}
                _ => return Err(Reason::PrivateEndpointChanged),
            }
        }
        None => {
            let decided = snap.decide_target(target.destination(), target.port, None);
            match decided.final_decision() {
                Some(d) => match d.verdict() {
                    Verdict::PrivateEndpoint { endpoint_id } if &**endpoint_id == id => {}
                    Verdict::Deny => return Err(d.reason()),
                    _ => return Err(Reason::PrivateEndpointChanged),
                },
                None => return Err(Reason::PrivateEndpointChanged),
            }
        }
    }
    let still = snap.endpoint(id).is_some_and(|e| {
        e.backends_on(target.port)
            .any(|b| b.to_string() == route.backend)
    });
    if still {
        Ok(())
    } else {
        Err(Reason::PrivateEndpointChanged)
    }
}

/// Whether `snap` still allows a connection to `target` (for `path`) dialled at `addr`.
pub(crate) fn still_allowed(
    snap: &Snapshot,
    target: &Target,
    path: Option<&str>,
    addr: IpAddr,
    own: &OwnAddresses,
) -> Result<(), Reason> {
    let decided = snap.decide_target(target.destination(), target.port, path);
    let d = snap.decide_address(&decided, addr, target.port, &|a| own.contains(a));
    match d.verdict() {
        Verdict::Allow => Ok(()),
        Verdict::Deny => Err(d.reason()),
        Verdict::PrivateEndpoint { .. } => Err(Reason::PrivateEndpoint),
    }
}

#[cfg(test)]
mod tests {
    use perimeter_policy::{
        BackendDoc, EndpointDoc, PolicyDocument, RuleDoc, RuleType, TrafficPolicy, compile,
    };

    use super::*;
    use crate::listen::target::TargetHost;

    fn snapshot(version: u64, rules: usize, endpoints: &[(&str, &str)]) -> Snapshot {
        compile(&PolicyDocument {
            format: perimeter_policy::POLICY_FORMAT,
            version,
            cluster_id: "c".into(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            tls_inspection: None,
            ingress: Default::default(),
            rules: (0..rules)
                .map(|i| RuleDoc {
                    id: format!("r-{i}"),
                    name: format!("rule-{i}"),
                    rule_type: RuleType::Fqdn,
                    destination: format!("n{i}.example.com"),
                    ports: vec![443],
                    paths: vec![],
                    crl_managed: false,
                })
                .collect(),
            private_endpoints: endpoints
                .iter()
                .map(|(id, backend)| EndpointDoc {
                    id: (*id).into(),
                    region: "us-east-1".into(),
                    connection_id: format!("{id}-connection"),
                    endpoint_address: format!("{id}.endpoints.example.net"),
                    domain_names: vec![],
                    backends: vec![BackendDoc::plain(*backend)],
                    ports: vec![],
                    proxy_protocol: false,
                    special_addresses: true,
                })
                .collect(),
        })
        .unwrap()
    }

    fn by_port() -> (Target, EndpointRoute) {
        let target = Target {
            host: TargetHost::Ip("198.51.100.1".parse().unwrap()),
            port: 9092,
        };
        let route = EndpointRoute {
            id: Arc::from("pe-1"),
            backend: "127.0.0.1:9092".into(),
            by_port_in: Some("us-east-1".into()),
        };
        (target, route)
    }

    #[test]
    fn a_connection_routed_by_port_survives_unrelated_changes() {
        let (target, route) = by_port();
        let first = snapshot(1, 0, &[("pe-1", "127.0.0.1:9092")]);
        assert_eq!(still_routed(&first, &target, &route), Ok(()));
        // A rule added, another endpoint on another port: still the one endpoint on 9092.
        let later = snapshot(
            2,
            3,
            &[("pe-1", "127.0.0.1:9092"), ("pe-2", "127.0.0.1:5432")],
        );
        assert_eq!(still_routed(&later, &target, &route), Ok(()));
    }

    #[test]
    fn a_connection_routed_by_port_is_cut_when_it_is_no_longer_the_one() {
        let (target, route) = by_port();
        let gone = snapshot(2, 0, &[]);
        let two = snapshot(
            2,
            0,
            &[("pe-1", "127.0.0.1:9092"), ("pe-2", "127.0.0.2:9092")],
        );
        let moved = snapshot(2, 0, &[("pe-1", "127.0.0.3:9092")]);
        for snap in [gone, two, moved] {
            assert_eq!(
                still_routed(&snap, &target, &route),
                Err(Reason::PrivateEndpointChanged)
            );
        }
    }

    #[test]
    fn a_connection_routed_by_name_follows_the_name() {
        let target = Target {
            host: TargetHost::Name("pe-1.endpoints.example.net".parse().unwrap()),
            port: 9092,
        };
        let route = EndpointRoute {
            id: Arc::from("pe-1"),
            backend: "127.0.0.1:9092".into(),
            by_port_in: None,
        };
        let later = snapshot(2, 2, &[("pe-1", "127.0.0.1:9092")]);
        assert_eq!(still_routed(&later, &target, &route), Ok(()));
        // Deleted: under DEFAULT_DENY the name is now denied for lack of a rule.
        let gone = snapshot(3, 2, &[]);
        assert_eq!(
            still_routed(&gone, &target, &route),
            Err(Reason::NoRuleForDestination)
        );
    }
}
