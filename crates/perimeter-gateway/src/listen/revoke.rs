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
        /// A connection forwarded to a private endpoint: its id and the backend dialled.
        endpoint: Option<(Arc<str>, String)>,
    },
    /// A connection from `source` admitted by the IP allowlist on an ingress listener.
    Ingress {
        source: IpAddr,
        listener: IngressListener,
    },
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
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        own: OwnAddresses,
        admitted: Arc<Snapshot>,
        target: Target,
        addr: SocketAddr,
        path: Option<String>,
    ) -> Self {
        // A snapshot applied between the decision and now is judged at the first check.
        if !Arc::ptr_eq(&snapshots.borrow_and_update(), &admitted) {
            snapshots.mark_changed();
        }
        Self {
            snapshots,
            judged: admitted,
            admitted: Arc::new(Admission::Egress {
                own,
                target,
                addr: addr.ip(),
                path,
                endpoint: None,
            }),
            revoked: None,
        }
    }

    /// Watch a connection from `source` admitted on the ingress `listener` under `admitted`: it
    /// stands while each new snapshot's IP allowlist still admits it.
    pub(crate) fn for_ingress(
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        admitted: Arc<Snapshot>,
        source: IpAddr,
        listener: IngressListener,
    ) -> Self {
        if !Arc::ptr_eq(&snapshots.borrow_and_update(), &admitted) {
            snapshots.mark_changed();
        }
        Self {
            snapshots,
            judged: admitted,
            admitted: Arc::new(Admission::Ingress { source, listener }),
            revoked: None,
        }
    }

    /// Watch a connection that the private endpoint `endpoint` forwards to `backend` (as the
    /// endpoint lists it): it stands while the target still routes to that endpoint and the
    /// endpoint still has that backend.
    pub(crate) fn for_endpoint(
        ctx: &ProxyContext,
        admitted: Arc<Snapshot>,
        target: Target,
        addr: SocketAddr,
        endpoint: Arc<str>,
        backend: String,
    ) -> Self {
        let mut r = Self::new(ctx, admitted, target, addr, None);
        if let Some(Admission::Egress { endpoint: e, .. }) = Arc::get_mut(&mut r.admitted) {
            *e = Some((endpoint, backend));
        }
        r
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
                    endpoint: Some((id, backend)),
                    target,
                    ..
                } => still_routed(&current, target, id, backend).map_err(RevokedBy::Egress),
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

/// Whether `snap` still routes `target` to private endpoint `id`, and that endpoint still has
/// `backend` on the target's port.
pub(crate) fn still_routed(
    snap: &Snapshot,
    target: &Target,
    id: &str,
    backend: &str,
) -> Result<(), Reason> {
    let decided = snap.decide_target(target.destination(), target.port, None);
    let routed = decided.final_decision().map(|d| d.verdict());
    match routed {
        Some(Verdict::PrivateEndpoint { endpoint_id }) if &**endpoint_id == id => {}
        Some(Verdict::Deny) => {
            return Err(decided
                .final_decision()
                .map_or(Reason::PrivateEndpointChanged, |d| d.reason()));
        }
        _ => return Err(Reason::PrivateEndpointChanged),
    }
    let still = snap
        .endpoint(id)
        .is_some_and(|e| e.backends_on(target.port).any(|b| b.to_string() == backend));
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
