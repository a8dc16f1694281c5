//! Route to a private endpoint: a target that the policy routes to one of the cluster's egress
//! private endpoints (its `endpoint_address` or a custom domain name) is forwarded inside the
//! gateway to the endpoint service's backends. No egress rule is needed and the address guard
//! does not apply: the backends are the addresses the service's owner registered, never an
//! address the client chose, and the name is never resolved on the public path.
//!
//! 1. **route** ([`route`], at admission): the endpoint must be of this gateway's region and
//!    serve the port; unless the port is routed by TLS server name, a backend is dialled now
//!    (round robin over the port's backends, the next on failure), so a dead service is a 502
//!    before the `200`.
//! 2. **forward** ([`forward`], after the `200` or at once on the transparent listener): a port
//!    routed by server name reads the ClientHello first and dials the backend whose
//!    `server_names` match its SNI (an exact name before a wildcard), without terminating TLS; a
//!    ClientHello that names no backend is refused. A service with `proxy_protocol` gets a PROXY
//!    v2 header first ([`proxy_header`]). The relay then checks every client byte against
//!    revocation: once a snapshot no longer routes the name to this endpoint and backend (the
//!    endpoint deleted, failed, its domain names changed), the connection is cut.
//! 3. The bytes relayed are metered per endpoint (`perimeter_private_endpoint_bytes_total` and
//!    the pushed `bytes_processed`), and the connection's decision event says where it went.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use perimeter_policy::{Backend, BackendHost, Snapshot};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::ProxyContext;
use super::dial::dial;
use super::event::Draft;
use super::first_bytes::{FirstBytes, read_first_bytes};
use super::refusal::{Refusal, Why};
use super::relay::{Activity, RelayEnd, relay, relay_stream};
use super::revoke::{EndpointRoute, Revocation};
use super::target::Target;
use super::tunnel::TunnelClient;
use crate::decision::EventVerdict;

pub(crate) mod proxy_header;

/// The decision reason of a connection forwarded to a private endpoint.
pub(crate) const ROUTED: &str = "private_endpoint";

/// Where the next connection of a port with several backends starts.
static NEXT_BACKEND: AtomicUsize = AtomicUsize::new(0);

/// A connection the policy routes to a private endpoint.
pub(crate) struct Routed {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) target: Target,
    pub(crate) endpoint_id: Arc<str>,
    /// The backend connection and the backend as the endpoint lists it; `None` while the
    /// port is routed by TLS server name (dialled once the ClientHello says which).
    pub(crate) upstream: Option<(TcpStream, SocketAddr, String)>,
    /// Chosen as the one endpoint of this region serving the port ([`by_port`]), in that
    /// region; `None`: chosen by its name.
    pub(crate) by_port_in: Option<String>,
}

/// Step 1: check the endpoint serves this gateway's region and the port, and dial a backend
/// unless the port is routed by server name.
pub(crate) async fn route(
    ctx: &ProxyContext,
    snap: Arc<Snapshot>,
    target: Target,
    endpoint_id: Arc<str>,
) -> Result<Routed, Refusal> {
    let Some(endpoint) = snap.endpoint(&endpoint_id) else {
        return Err(Refusal::new(
            Why::PrivateEndpointNotServed,
            format!("private endpoint {endpoint_id} is not in this gateway's policy"),
        ));
    };
    let region = ctx.sink.region();
    if !region.is_empty() && !endpoint.region().is_empty() && endpoint.region() != region {
        return Err(Refusal::new(
            Why::PrivateEndpointOtherRegion,
            format!(
                "private endpoint {endpoint_id} is in region {}; this gateway serves region {region}",
                endpoint.region()
            ),
        ));
    }
    let port = target.port;
    if endpoint.backends_on(port).next().is_none() {
        return Err(Refusal::new(
            Why::PrivateEndpointPort,
            format!(
                "private endpoint {endpoint_id} serves no backend on port {port}; its ports: {}",
                endpoint
                    .ports()
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let upstream = if endpoint.routes_by_sni(port) {
        None
    } else {
        let backends: Vec<&Backend> = endpoint.backends_on(port).collect();
        Some(dial_backends(ctx, &backends, port, endpoint.special_addresses()).await?)
    };
    Ok(Routed {
        snap: snap.clone(),
        target,
        endpoint_id,
        upstream,
        by_port_in: None,
    })
}

/// The private endpoint of this gateway's region that serves `port`, for a redirected
/// connection to the DNS listener's answer address that names none (no SNI, no Host): there
/// must be exactly one.
pub(crate) fn by_port(ctx: &ProxyContext, snap: &Snapshot, port: u16) -> Result<Arc<str>, Refusal> {
    let region = ctx.sink.region();
    let mut serving = serving(snap, &region, port);
    match (serving.next(), serving.next()) {
        (Some(e), None) => Ok(Arc::from(e.id())),
        (None, _) => Err(Refusal::new(
            Why::PrivateEndpointPort,
            format!("no private endpoint of this gateway's region serves port {port}"),
        )),
        (Some(a), Some(b)) => Err(Refusal::new(
            Why::PrivateEndpointPort,
            format!(
                "private endpoints {} and {} both serve port {port}: name one (TLS SNI or HTTP Host)",
                a.id(),
                b.id()
            ),
        )),
    }
}

/// The private endpoints of `region` (every endpoint while the gateway's region is not known)
/// that serve `port`.
pub(crate) fn serving<'a>(
    snap: &'a Snapshot,
    region: &'a str,
    port: u16,
) -> impl Iterator<Item = &'a perimeter_policy::Endpoint> + 'a {
    snap.endpoints().iter().filter(move |e| {
        (region.is_empty() || e.region().is_empty() || e.region() == region)
            && e.backends_on(port).next().is_some()
    })
}

/// The backends a TLS connection to `port` with server name `sni` may go to: the one whose
/// `server_names` match it best, else the port's backends that name none (they take every
/// other connection); `None`: no backend takes it.
fn pick_for_sni<'a>(
    endpoint: &'a perimeter_policy::Endpoint,
    port: u16,
    sni: Option<&str>,
) -> Option<Vec<&'a Backend>> {
    let named = sni
        .and_then(|s| s.parse().ok())
        .and_then(|name| endpoint.backend_for_sni(port, &name));
    if let Some(b) = named {
        return Some(vec![b]);
    }
    let plain: Vec<&Backend> = endpoint
        .backends_on(port)
        .filter(|b| b.server_names().is_empty())
        .collect();
    (!plain.is_empty()).then_some(plain)
}

/// Dial one of `backends`, starting at the next in turn and trying the others on failure.
async fn dial_backends(
    ctx: &ProxyContext,
    backends: &[&Backend],
    port: u16,
    special: bool,
) -> Result<(TcpStream, SocketAddr, String), Refusal> {
    let start = NEXT_BACKEND.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for i in 0..backends.len() {
        let backend = backends[(start + i) % backends.len()];
        let addrs: Vec<IpAddr> = match backend.host() {
            BackendHost::Ip(ip) => vec![*ip],
            BackendHost::Name(name) => match ctx.resolver.resolve(name).await {
                Ok(a) => a,
                Err(e) => {
                    last = Some(Refusal::new(
                        Why::from(&e),
                        format!("while resolving backend {backend} of port {port}: {e}"),
                    ));
                    continue;
                }
            },
        };
        for ip in addrs {
            let addr = SocketAddr::new(ip, backend.port());
            if let Err(r) = backend_guard(ctx, addr, special) {
                tracing::warn!(%backend, address = %addr, "{}", r.message);
                last = Some(r);
                continue;
            }
            match dial(ctx, addr).await {
                Ok(s) => return Ok((s, addr, backend.to_string())),
                Err(r) => last = Some(r),
            }
        }
    }
    Err(last.unwrap_or_else(|| {
        Refusal::new(
            Why::UpstreamConnectFailed,
            format!("no backend of port {port} could be dialled"),
        )
    }))
}

/// What a forwarder never dials, whoever registered it: cloud metadata and link-local
/// addresses, addresses no host is dialled on, and the gateway's own listeners (a loop); and,
/// unless a platform operator registered the service's backends as special (`special`),
/// loopback, private and CGNAT addresses: the address guard, as egress applies it. Checked on
/// the address actually dialled, after a backend name was resolved.
fn backend_guard(ctx: &ProxyContext, addr: SocketAddr, special: bool) -> Result<(), Refusal> {
    guard_class(addr, special)?;
    if ctx.own.is_listener(addr) {
        return Err(Refusal::new(
            Why::PrivateEndpointBackendRefused,
            format!("backend {addr} is one of this gateway's own listeners"),
        ));
    }
    Ok(())
}

/// The address classes of [`backend_guard`].
fn guard_class(addr: SocketAddr, special: bool) -> Result<(), Refusal> {
    let class = perimeter_policy::classify(addr.ip().to_canonical());
    if class.refused_as_backend() {
        return Err(Refusal::policy(perimeter_policy::Reason::SpecialAddress(
            class,
        )));
    }
    if !special && class != perimeter_policy::AddrClass::Public {
        return Err(Refusal::new(
            Why::PrivateEndpointBackendRefused,
            format!(
                "backend {addr} is a {} address, and its service was not registered with allow_special_addresses (a platform operator's choice)",
                class.as_str()
            ),
        ));
    }
    Ok(())
}

/// Steps 2 and 3: pick the backend by server name where the port needs it, send the PROXY
/// header where the service wants it, relay with revocation, meter, finish the event.
/// `already`: client bytes read before; `local`: the address the client connected to.
pub(crate) async fn forward(
    ctx: ProxyContext,
    routed: Routed,
    mut draft: Draft,
    mut client: TunnelClient,
    already: Bytes,
) {
    let Routed {
        snap,
        target,
        endpoint_id,
        upstream,
        by_port_in,
    } = routed;
    draft.rule = None;
    let Some(endpoint) = snap.endpoint(&endpoint_id) else {
        return draft.finish_why(&Why::PrivateEndpointNotServed, 0, 0);
    };
    let mut buf = BytesMut::with_capacity(already.len().max(4096));
    buf.extend_from_slice(&already);
    drop(already);
    let dialled = match upstream {
        Some(u) => Ok(u),
        None => {
            let max = ctx.limits.max_header_bytes.max(8192);
            let read = async {
                match &mut client {
                    TunnelClient::Socket(c) => read_first_bytes(c, &mut buf, max).await,
                    TunnelClient::Stream(c) => read_first_bytes(c, &mut buf, max).await,
                }
            };
            let first = tokio::time::timeout(ctx.limits.first_bytes_timeout, read).await;
            let sni = match first {
                Err(_) => return draft.finish_why(&Why::FirstBytesTimeout, 0, 0),
                Ok(Err(_)) | Ok(Ok(FirstBytes::NeedMore)) => {
                    return draft.finish_why(&Why::IncompleteFirstBytes, 0, 0);
                }
                Ok(Ok(FirstBytes::Invalid(why))) => return draft.finish_why(&why, 0, 0),
                Ok(Ok(FirstBytes::Tls { sni, .. })) => sni,
                Ok(Ok(FirstBytes::Http | FirstBytes::Other)) => None,
            };
            draft.sni_or_host.clone_from(&sni);
            let picked = pick_for_sni(endpoint, target.port, sni.as_deref());
            match picked {
                Some(backends) => {
                    dial_backends(&ctx, &backends, target.port, endpoint.special_addresses()).await
                }
                None => {
                    tracing::info!(endpoint = %endpoint_id, destination = %target, sni = sni.as_deref().unwrap_or(""), "refusing a connection to a private endpoint: its ClientHello names no backend");
                    return draft.finish_why(&Why::PrivateEndpointServerName, 0, 0);
                }
            }
        }
    };
    let (mut upstream, addr, backend) = match dialled {
        Ok(u) => u,
        Err(r) => {
            tracing::info!(endpoint = %endpoint_id, destination = %target, reason = r.why.as_str(), "closing a connection to a private endpoint: {}", r.message);
            return draft.finish_why(&r.why, 0, 0);
        }
    };
    // The destination a load balancer would name: the gateway address the client reached, at
    // the endpoint's port.
    let local = match &client {
        TunnelClient::Socket(c) => c.local_addr().ok().map(|a| a.ip()),
        TunnelClient::Stream(_) => None,
    };
    let local = SocketAddr::new(local.unwrap_or(addr.ip()), target.port);
    if let Err(e) = preamble(&snap, &endpoint_id, &mut upstream, draft.source, local).await {
        tracing::debug!(endpoint = %endpoint_id, error = %e, "backend failed before the PROXY header");
        return draft.finish_why(&Why::UpstreamFailed, 0, 0);
    }
    let activity = Activity::new();
    let revocation = Revocation::for_endpoint(
        &ctx,
        snap.clone(),
        target.clone(),
        addr,
        EndpointRoute {
            id: endpoint_id.clone(),
            backend: backend.clone(),
            by_port_in,
        },
    );
    let idle = ctx.limits.idle_timeout;
    let pending = buf.freeze();
    let counted = activity.clone();
    // Metered while it lives (connections to a broker last for days) by the sink's sweep, not
    // by a timer of its own; the rest when it ends, before its event.
    let metered = ctx
        .sink
        .meter_live(snap.cluster_id(), &endpoint_id, activity.clone());
    let end = match client {
        TunnelClient::Socket(c) => {
            Box::pin(relay(c, upstream, pending, counted, idle, revocation, None)).await
        }
        TunnelClient::Stream(c) => {
            Box::pin(relay_stream(
                c, upstream, pending, counted, idle, revocation,
            ))
            .await
        }
    };
    drop(metered);
    let (up, down) = (activity.up(), activity.down());
    draft.rule = Some(format!("private-endpoint:{endpoint_id}"));
    match end {
        RelayEnd::Revoked(why) => {
            tracing::info!(endpoint = %endpoint_id, destination = %target, %backend, reason = %why, "closing a connection to a private endpoint: the new policy no longer routes it there");
            draft.finish_why(&Why::PolicyRevoked, up, down);
        }
        RelayEnd::Failed { direction, error } => {
            tracing::debug!(endpoint = %endpoint_id, direction = direction.as_str(), error = %error, "private endpoint connection ended with an error");
            draft.finish(EventVerdict::Allowed, ROUTED, up, down);
        }
        RelayEnd::Refused { why, .. } => draft.finish_why(&why, up, down),
        RelayEnd::Closed | RelayEnd::Idle => draft.finish(EventVerdict::Allowed, ROUTED, up, down),
    }
}

/// Open a backend connection of endpoint `id` from `source` (which connected to `local`): the
/// PROXY v2 header first where the endpoint's service wants one.
pub(crate) async fn preamble(
    snap: &Snapshot,
    id: &str,
    backend: &mut TcpStream,
    source: SocketAddr,
    local: SocketAddr,
) -> std::io::Result<()> {
    match snap.endpoint(id) {
        Some(e) if e.proxy_protocol() => {
            let header = proxy_header::encode(source, local, e.connection_id());
            backend.write_all(&header).await
        }
        _ => Ok(()),
    }
}

/// The client left before the connection was forwarded: the routing stands, nothing moved.
pub(crate) fn abandon(mut draft: Draft) {
    draft.rule = None;
    draft.finish(EventVerdict::Allowed, ROUTED, 0, 0);
}

#[cfg(test)]
mod tests {
    use perimeter_policy::{BackendDoc, EndpointDoc, PolicyDocument, TrafficPolicy, compile};

    use super::*;

    fn snapshot(backends: Vec<BackendDoc>) -> Snapshot {
        compile(&PolicyDocument {
            format: perimeter_policy::POLICY_FORMAT,
            version: 1,
            cluster_id: "c".into(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            ingress: Default::default(),
            rules: vec![],
            private_endpoints: vec![EndpointDoc {
                id: "pe-1".into(),
                region: "us-east-1".into(),
                connection_id: "pe-1-connection".into(),
                endpoint_address: "pe-1.example.net".into(),
                domain_names: vec![],
                backends,
                ports: vec![],
                proxy_protocol: false,
                special_addresses: true,
            }],
            tls_inspection: None,
        })
        .unwrap()
    }

    fn picked(snap: &Snapshot, sni: Option<&str>) -> Option<Vec<String>> {
        let e = snap.endpoint("pe-1").unwrap();
        pick_for_sni(e, 9092, sni).map(|v| v.iter().map(ToString::to_string).collect())
    }

    /// Issue 14, finding 6: a backend name that resolves to loopback, a private address or
    /// the metadata address is refused when dialled unless its service was registered with
    /// special addresses (and metadata, link-local, unspecified always).
    #[test]
    fn backends_are_guarded_on_the_address_dialled() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for special in [false, true] {
            for always in [
                "169.254.169.254:80",
                "0.0.0.0:80",
                "[fe80::1]:80",
                "[::]:80",
            ] {
                assert!(guard_class(addr(always), special).is_err(), "{always}");
            }
            assert!(guard_class(addr("198.51.100.7:9092"), special).is_ok());
        }
        for guarded in [
            "127.0.0.1:5432",
            "[::1]:80",
            "10.0.0.5:9092",
            "100.64.0.1:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            let refused = guard_class(addr(guarded), false).unwrap_err();
            assert_eq!(refused.why, Why::PrivateEndpointBackendRefused, "{guarded}");
            assert!(
                refused.message.contains("allow_special_addresses"),
                "{guarded}"
            );
            assert!(guard_class(addr(guarded), true).is_ok(), "{guarded}");
        }
    }

    #[test]
    fn sni_picks_the_named_backend_else_the_plain_ones() {
        let named = |a: &str, n: &str| BackendDoc {
            address: a.into(),
            server_names: vec![n.into()],
        };
        let only_named = snapshot(vec![
            named("10.0.0.1:9092", "b-1.k.example"),
            named("10.0.0.2:9092", "*.k.example"),
        ]);
        assert_eq!(
            picked(&only_named, Some("b-1.k.example")),
            Some(vec!["10.0.0.1:9092".to_string()])
        );
        assert_eq!(
            picked(&only_named, Some("b-7.k.example")),
            Some(vec!["10.0.0.2:9092".to_string()])
        );
        assert_eq!(picked(&only_named, Some("other.example")), None);
        assert_eq!(picked(&only_named, None), None);

        let mixed = snapshot(vec![
            named("10.0.0.1:9092", "b-1.k.example"),
            BackendDoc::plain("10.0.0.9:9092"),
        ]);
        assert_eq!(
            picked(&mixed, Some("b-1.k.example")),
            Some(vec!["10.0.0.1:9092".to_string()])
        );
        for sni in [Some("other.example"), None] {
            assert_eq!(
                picked(&mixed, sni),
                Some(vec!["10.0.0.9:9092".to_string()]),
                "{sni:?}"
            );
        }
    }
}
