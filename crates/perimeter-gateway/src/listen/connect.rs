//! The explicit proxy: `CONNECT host:port` tunnels and absolute-form plain HTTP
//! (`GET http://host/path`), for workloads that use the gateway as `HTTPS_PROXY`/`HTTP_PROXY`.
//!
//! Every connection (tunnel) and every forwarded request is decided once:
//!
//! 1. The named destination is parsed ([`Target`]): hostnames normalised, IP literals only in
//!    canonical spellings (else 400); a Host header must agree with it (else 400).
//! 2. [`Snapshot::decide_target`] with the normalised path when the gateway sees one (plain
//!    HTTP); a deny is 403 with `x-perimeter-error: <reason>`.
//! 3. Names are resolved by the gateway's own [`Resolver`](crate::dns::Resolver) (the client
//!    never chooses the address): a DNS failure is 502, a timeout 504, never a policy deny.
//! 4. [`Snapshot::decide_address`] per address in order (the address guard); the first allowed
//!    address is dialled (timeout 504, refusal 502). No allowed address: 403 with the reason of
//!    the first.
//! 5. CONNECT: `200`, then the client's first bytes are checked before they are relayed (what
//!    the upstream sends first, as in SMTP or MySQL, is passed on meanwhile): a
//!    TLS ClientHello's SNI must equal the CONNECT name (for an IP literal, a name the policy
//!    allows for that address and port), plaintext HTTP must carry a Host equal to the name.
//!    On a mismatch the tunnel is closed and the decision event says why. While relaying, a new
//!    snapshot that no longer allows the target and address closes the tunnel.
//! 6. Absolute-form HTTP: forwarded in origin-form (normalised path, original query) over the
//!    dialled connection; the response is streamed back; the client connection stays alive.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use perimeter_policy::{
    Decision, Destination, Hostname, Reason, Snapshot, TargetDecision, Verdict, normalize_path,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::head::{FirstHead, HostField, Prefixed};
use super::ProxyContext;
use super::relay::{
    Activity, Counted, Direction, RelayEnd, relay, relay_stream, shutdown_write, write_all,
};
use super::target::{Target, TargetHost};
use crate::decision::{DecisionEvent, EventVerdict};
use crate::dns::DnsError;
use crate::tls::{ClientHello, parse_client_hello};

pub(super) mod head;

/// Body of every response the proxy sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

const X_PERIMETER_ERROR: &str = "x-perimeter-error";

/// Serve the explicit proxy on `listener` until `shutdown` resolves. Connections in flight are
/// left to finish on their own (tunnels end with their clients or the idle timeout).
pub async fn serve(
    listener: TcpListener,
    ctx: ProxyContext,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(ctx.limits.max_connections.max(1)));
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: one setsockopt here
    // instead of one per connection (checked on the first connection).
    let mut nodelay = NoDelay::new(&listener);
    let http = http1_builder(&ctx.limits);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            a = super::accept(&listener, "proxy") => a,
        };
        nodelay.apply(&stream);
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(serve_connection(
                    ctx.clone(),
                    http.clone(),
                    stream,
                    peer,
                    permit,
                ));
            }
            Err(_) => {
                metrics::counter!("perimeter_gateway_overloaded_total").increment(1);
                tokio::spawn(overloaded(stream));
            }
        }
    }
}

/// Answer 503 to a connection over the limit, without parsing anything it sends.
async fn overloaded(stream: TcpStream) {
    let answer = head::refusal_bytes(
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway_overloaded",
        "the gateway is serving as many connections as it may; retry later",
        head::Then::Close,
    );
    answer_and_close(stream, &answer).await;
}

/// Send a last answer and close, draining what the client still sends for a moment (at most
/// 2 s) so that it reads the answer instead of a reset.
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(answer).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// TCP_NODELAY for accepted sockets: set once on the listener, and per socket only if the
/// first accepted one did not inherit it.
pub(super) struct NoDelay {
    inherited: Option<bool>,
}

impl NoDelay {
    pub(super) fn new(listener: &TcpListener) -> Self {
        let set =
            nix::sys::socket::setsockopt(listener, nix::sys::socket::sockopt::TcpNoDelay, &true);
        Self {
            inherited: if set.is_ok() { None } else { Some(false) },
        }
    }

    pub(super) fn apply(&mut self, stream: &TcpStream) {
        let inherited = *self
            .inherited
            .get_or_insert_with(|| stream.nodelay().unwrap_or(false));
        if !inherited {
            let _ = stream.set_nodelay(true);
        }
    }
}

/// The HTTP/1 server settings of the proxy's connections, built once per listener.
fn http1_builder(limits: &super::GatewayLimits) -> Arc<hyper::server::conn::http1::Builder> {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    Arc::new(b)
}

async fn serve_connection(
    ctx: ProxyContext,
    http: Arc<hyper::server::conn::http1::Builder>,
    mut stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    // The first request head is read here: a plain CONNECT is served without hyper (its
    // tunnel runs in this task, on the socket); anything else goes to hyper with every byte.
    let max = ctx.limits.max_header_bytes.max(8192);
    let first = tokio::time::timeout(
        ctx.limits.header_read_timeout,
        head::read_first_head(&mut stream, max),
    )
    .await;
    let prefix = match first {
        Err(_) => {
            tracing::debug!(%peer, "no complete request head in time; closing");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "client connection failed before a request head");
            return;
        }
        Ok(Ok(FirstHead::Closed)) => return,
        Ok(Ok(FirstHead::Other(bytes))) => bytes,
        Ok(Ok(FirstHead::Refused(e))) => {
            let draft = Draft::new(&ctx, peer, "-".to_string(), 0);
            let answer = head::refusal_bytes(
                head::refused_status(&e),
                e.as_str(),
                &e.to_string(),
                head::Then::Close,
            );
            draft.finish(EventVerdict::Denied, e.as_str(), 0, 0);
            return answer_and_close(stream, &answer).await;
        }
        Ok(Ok(FirstHead::Connect {
            authority,
            host,
            rest,
        })) => match admit_connect(&ctx, peer, Some(&authority), host).await {
            Ok(admitted) => {
                if let Err(e) = stream.write_all(head::ESTABLISHED).await {
                    tracing::debug!(%peer, error = %e, "client left before the tunnel opened");
                    return admitted.abandon();
                }
                return admitted
                    .tunnel(ctx, TunnelClient::Socket(stream), rest)
                    .await;
            }
            Err((draft, r)) => {
                let answer =
                    head::refusal_bytes(r.status, &r.reason, &r.message, head::Then::KeepAlive);
                draft.finish(r.verdict, r.reason, 0, 0);
                if stream.write_all(&answer).await.is_err() {
                    return;
                }
                // Keep-alive: whatever the client sends next is hyper's.
                rest
            }
        },
    };
    let permit = Arc::new(permit);
    let svc = service_fn(move |req| {
        let ctx = ctx.clone();
        let permit = permit.clone();
        async move { Ok::<_, Infallible>(handle(ctx, peer, permit, req).await) }
    });
    let conn = http
        .serve_connection(TokioIo::new(Prefixed::new(prefix, stream)), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "client connection ended with an error");
    }
}

/// The request a client sent to the proxy.
async fn handle(
    ctx: ProxyContext,
    peer: SocketAddr,
    permit: Arc<OwnedSemaphorePermit>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return handle_connect(ctx, peer, permit, req).await;
    }
    if req.uri().scheme().is_some() {
        return handle_forward(ctx, peer, req).await;
    }
    let draft = Draft::new(&ctx, peer, String::from("-"), 0);
    draft.refuse(Refusal::client(
        "origin_form_to_proxy",
        "this is an egress proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port, e.g. through HTTP_PROXY / HTTPS_PROXY",
    ))
}

// ---------------------------------------------------------------------------------------------
// Refusals and decision events

/// Why a request was refused: status, stable reason (`x-perimeter-error`) and a sentence.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) reason: Cow<'static, str>,
    pub(super) message: String,
    pub(super) verdict: EventVerdict,
}

impl Refusal {
    /// A malformed or inconsistent request: 400.
    pub(super) fn client(reason: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason: reason.into(),
            message: message.into(),
            verdict: EventVerdict::Denied,
        }
    }

    /// A policy denial: 403.
    fn policy(reason: Reason) -> Self {
        let message = match reason.addr_class() {
            Some(class) => format!("{} ({class})", reason.description()),
            None => reason.description().to_string(),
        };
        Self {
            status: StatusCode::FORBIDDEN,
            reason: reason.as_str().into(),
            message,
            verdict: EventVerdict::Denied,
        }
    }

    /// A refusal of the gateway's own (not a policy rule's): 403.
    fn policy_with(reason: &'static str, message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            reason: reason.into(),
            message,
            verdict: EventVerdict::Denied,
        }
    }

    /// An upstream failure: 502, or 504 for a timeout.
    fn upstream(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
            verdict: EventVerdict::Failed,
        }
    }
}

/// What is known of a connection or request so far; finished exactly once as a
/// [`DecisionEvent`].
pub(super) struct Draft {
    pub(super) sink: Arc<crate::decision::DecisionSink>,
    pub(super) cluster: String,
    pub(super) source: SocketAddr,
    pub(super) destination: String,
    pub(super) port: u16,
    pub(super) sni_or_host: Option<String>,
    pub(super) path: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) started: Instant,
}

impl Draft {
    pub(super) fn new(
        ctx: &ProxyContext,
        source: SocketAddr,
        destination: String,
        port: u16,
    ) -> Self {
        Self::for_snapshot(ctx, &ctx.snapshots.borrow(), source, destination, port)
    }

    /// A draft for a decision taken on `snap`.
    fn for_snapshot(
        ctx: &ProxyContext,
        snap: &Snapshot,
        source: SocketAddr,
        destination: String,
        port: u16,
    ) -> Self {
        Self {
            sink: ctx.sink.clone(),
            cluster: snap.cluster_id().to_string(),
            source,
            destination,
            port,
            sni_or_host: None,
            path: None,
            rule: None,
            started: Instant::now(),
        }
    }

    pub(super) fn finish(
        self,
        verdict: EventVerdict,
        reason: impl Into<String>,
        up: u64,
        down: u64,
    ) {
        let event = DecisionEvent {
            cluster: self.cluster,
            region: self.sink.region(),
            source: Some(self.source),
            destination: self.destination,
            port: self.port,
            sni_or_host: self.sni_or_host,
            path: self.path,
            verdict,
            rule: self.rule,
            reason: reason.into(),
            bytes_up: up,
            bytes_down: down,
            duration: self.started.elapsed(),
        };
        self.sink.record(&event);
    }

    /// Record the refusal and build its response.
    pub(super) fn refuse(self, r: Refusal) -> Response<ProxyBody> {
        let response = refusal_response(&r);
        self.finish(r.verdict, r.reason, 0, 0);
        response
    }
}

pub(super) fn refusal_response(r: &Refusal) -> Response<ProxyBody> {
    let mut resp = Response::new(full(format!("{}\n", r.message)));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&r.reason) {
        h.insert(X_PERIMETER_ERROR, v);
    }
    resp
}

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> ProxyBody {
    full(Bytes::new())
}

/// The allowing side of a decision as recorded: `WouldDeny` under `REPORT_ONLY` when
/// `DEFAULT_DENY` would have refused.
pub(super) fn allowed_outcome(d: &Decision) -> (EventVerdict, &'static str) {
    match d.would_deny() {
        Some(w) => (EventVerdict::WouldDeny, w.as_str()),
        None => (EventVerdict::Allowed, d.reason().as_str()),
    }
}

// ---------------------------------------------------------------------------------------------
// Decide, resolve, guard, dial

/// An upstream connection the policy allows.
pub(super) struct Dialled {
    pub(super) stream: TcpStream,
    pub(super) addr: SocketAddr,
    pub(super) decision: Decision,
}

/// Decide `target`, resolve it, guard each address and dial the first allowed one. With `pin`
/// (the transparent listener: the address the client dialled), that address is the only
/// candidate, and it must be among the addresses the gateway resolves for the name.
pub(super) async fn resolve_and_dial(
    ctx: &ProxyContext,
    snap: &Snapshot,
    target: &Target,
    path: Option<&str>,
    pin: Option<IpAddr>,
) -> Result<Dialled, Refusal> {
    let decided = snap.decide_target(target.destination(), target.port, path);
    if let Some(d) = decided.final_decision() {
        match d.verdict() {
            Verdict::Deny => return Err(Refusal::policy(d.reason())),
            // Private endpoints are not served by this listener yet: a later issue adds the
            // forwarders. Refuse rather than resolve the name on the public path.
            Verdict::PrivateEndpoint { .. } => {
                return Err(Refusal::upstream(
                    StatusCode::BAD_GATEWAY,
                    "private_endpoint_not_served",
                    "the destination is routed to a private endpoint, which this gateway does not serve yet",
                ));
            }
            Verdict::Allow => {}
        }
    }
    let addrs: Vec<IpAddr> = match &target.host {
        TargetHost::Ip(ip) => vec![*ip],
        TargetHost::Name(name) => ctx
            .resolver
            .resolve(name)
            .await
            .map_err(|e| dns_refusal(name, &e))?,
    };
    let addrs = match pin {
        None => addrs,
        Some(ip) if addrs.contains(&ip) => vec![ip],
        Some(ip) => {
            return Err(Refusal::policy_with(
                "original_destination_mismatch",
                format!(
                    "the connection was addressed to {ip}, which is not among the addresses the gateway resolves for {}",
                    target.host
                ),
            ));
        }
    };
    let own = |a: IpAddr| ctx.is_own(a);
    let mut first_deny: Option<Reason> = None;
    let mut chosen: Option<(IpAddr, Decision)> = None;
    for addr in &addrs {
        let d = snap.decide_address(&decided, *addr, target.port, &own);
        match d.verdict() {
            Verdict::Allow => {
                chosen = Some((*addr, d));
                break;
            }
            Verdict::PrivateEndpoint { .. } => {
                return Err(Refusal::upstream(
                    StatusCode::BAD_GATEWAY,
                    "private_endpoint_not_served",
                    "the destination is routed to a private endpoint, which this gateway does not serve yet",
                ));
            }
            Verdict::Deny => {
                first_deny.get_or_insert(d.reason());
            }
        }
    }
    let Some((ip, decision)) = chosen else {
        return Err(match first_deny {
            Some(reason) => Refusal::policy(reason),
            None => Refusal::upstream(
                StatusCode::BAD_GATEWAY,
                "dns_no_addresses",
                format!("{} resolves to no address", target.host),
            ),
        });
    };
    let addr = SocketAddr::new(ip, target.port);
    match tokio::time::timeout(ctx.limits.connect_timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Refusal::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_connect_timeout",
            format!(
                "connecting to {addr} timed out after {:?}",
                ctx.limits.connect_timeout
            ),
        )),
        Ok(Err(e)) => Err(Refusal::upstream(
            StatusCode::BAD_GATEWAY,
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                "upstream_connect_refused"
            } else {
                "upstream_connect_failed"
            },
            format!("while connecting to upstream {addr}: {e}"),
        )),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(Dialled {
                stream,
                addr,
                decision,
            })
        }
    }
}

fn dns_refusal(name: &Hostname, e: &DnsError) -> Refusal {
    let (status, reason) = match e {
        DnsError::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "dns_timeout"),
        DnsError::NotFound { .. } => (StatusCode::BAD_GATEWAY, "dns_nxdomain"),
        DnsError::NoRecords { .. } => (StatusCode::BAD_GATEWAY, "dns_no_records"),
        DnsError::ServerFailure { .. } => (StatusCode::BAD_GATEWAY, "dns_failure"),
    };
    Refusal::upstream(
        status,
        reason,
        format!("while resolving upstream {name}: {e}"),
    )
}

/// Whether `snap` still allows a connection to `target` dialled at `addr`.
fn still_allowed(
    ctx: &ProxyContext,
    snap: &Snapshot,
    target: &Target,
    addr: IpAddr,
) -> Result<(), Reason> {
    let decided: TargetDecision = snap.decide_target(target.destination(), target.port, None);
    let d = snap.decide_address(&decided, addr, target.port, &|a| ctx.is_own(a));
    match d.verdict() {
        Verdict::Allow => Ok(()),
        Verdict::Deny => Err(d.reason()),
        Verdict::PrivateEndpoint { .. } => Err(Reason::PrivateEndpoint),
    }
}

/// Whether a Host header agrees with `target`; a Host without a port agrees on the port.
fn host_agrees(value: &[u8], target: &Target) -> Result<(), Refusal> {
    // Visible ASCII, as `HeaderValue::to_str` takes it.
    let text = std::str::from_utf8(value)
        .ok()
        .filter(|t| t.bytes().all(|b| b == b'\t' || (32..127).contains(&b)))
        .ok_or_else(|| Refusal::client("host_mismatch", "the Host header is not ASCII"))?;
    let (host, port) = Target::parse_host_header(text).map_err(|e| {
        Refusal::client(
            "host_mismatch",
            format!("the Host header {text:?} is not valid: {e}"),
        )
    })?;
    if host != target.host || port.is_some_and(|p| p != target.port) {
        return Err(Refusal::client(
            "host_mismatch",
            format!("the Host header {text:?} does not name the requested {target}"),
        ));
    }
    Ok(())
}

pub(super) fn single_host(headers: &HeaderMap) -> Result<Option<&HeaderValue>, Refusal> {
    let mut all = headers.get_all(header::HOST).iter();
    let first = all.next();
    if all.next().is_some() {
        return Err(Refusal::client(
            "multiple_host_headers",
            "more than one Host header",
        ));
    }
    Ok(first)
}

// ---------------------------------------------------------------------------------------------
// CONNECT

async fn handle_connect(
    ctx: ProxyContext,
    peer: SocketAddr,
    permit: Arc<OwnedSemaphorePermit>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let host = match single_host(req.headers()) {
        Err(_) => HostField::Many,
        Ok(None) => HostField::None,
        Ok(Some(v)) => HostField::One(Bytes::copy_from_slice(v.as_bytes())),
    };
    let admitted = match admit_connect(&ctx, peer, authority.as_deref(), host).await {
        Ok(a) => a,
        Err((draft, r)) => return draft.refuse(r),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _permit = permit;
        match on_upgrade.await {
            Ok(upgraded) => {
                let (client, already) = TunnelClient::from_upgraded(upgraded);
                admitted.tunnel(ctx, client, already).await
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "CONNECT upgrade failed");
                admitted.abandon();
            }
        }
    });
    Response::new(empty())
}

/// A CONNECT the policy admits, its upstream dialled; the tunnel opens once the client has
/// the `200`.
struct Admitted {
    snap: Arc<Snapshot>,
    draft: Draft,
    target: Target,
    dialled: Dialled,
}

/// Decide a CONNECT (`authority` is its request target, `host` its Host header) and dial the
/// upstream: the one decision of both the hyper path and the fast path of [`head`]. A refusal
/// comes with the draft of its decision event.
async fn admit_connect(
    ctx: &ProxyContext,
    peer: SocketAddr,
    authority: Option<&str>,
    host: HostField,
) -> Result<Admitted, (Draft, Refusal)> {
    let snap = ctx.snapshots.borrow().clone();
    let mut draft = Draft::for_snapshot(ctx, &snap, peer, authority.unwrap_or("-").to_string(), 0);
    let Some(authority) = authority else {
        return Err((
            draft,
            Refusal::client(
                crate::http_head::HeadError::InvalidTarget("").as_str(),
                "CONNECT needs host:port",
            ),
        ));
    };
    let target = match Target::parse_authority(authority, None) {
        Ok(t) => t,
        Err(e) => return Err((draft, Refusal::client(e.reason, e.message))),
    };
    draft.destination = target.host.to_string();
    draft.port = target.port;
    let host_checked = match &host {
        HostField::None => Ok(()),
        HostField::One(value) => host_agrees(value, &target),
        HostField::Many => Err(Refusal::client(
            "multiple_host_headers",
            "more than one Host header",
        )),
    };
    if let Err(r) = host_checked {
        return Err((draft, r));
    }
    let dialled = match resolve_and_dial(ctx, &snap, &target, None, None).await {
        Ok(d) => d,
        Err(r) => return Err((draft, r)),
    };
    draft.rule = dialled.decision.rule().map(|r| r.name.to_string());
    Ok(Admitted {
        snap,
        draft,
        target,
        dialled,
    })
}

impl Admitted {
    /// The client left before the tunnel opened: the decision stands, nothing moved.
    fn abandon(self) {
        let (verdict, reason) = allowed_outcome(&self.dialled.decision);
        self.draft.finish(verdict, reason, 0, 0);
    }

    /// Check the client's first bytes (after `already`), then relay.
    async fn tunnel(self, ctx: ProxyContext, client: TunnelClient, already: Bytes) {
        tunnel(
            ctx,
            self.snap,
            self.draft,
            self.target,
            self.dialled,
            client,
            already,
        )
        .await
    }
}

/// What the client's first bytes in a tunnel are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FirstBytes {
    NeedMore,
    /// A TLS ClientHello and its SNI, if it has one.
    Tls(Option<String>),
    /// A plaintext HTTP request head and its Host, if it has one.
    Http(Option<String>),
    /// Neither TLS nor HTTP: nothing to check.
    Other,
    /// Refused: the stable reason.
    Invalid(&'static str),
}

fn classify_first_bytes(buf: &[u8], max: usize) -> FirstBytes {
    if buf.is_empty() {
        return FirstBytes::NeedMore;
    }
    match parse_client_hello(buf) {
        ClientHello::Parsed { sni, .. } => return FirstBytes::Tls(sni.map(|s| s.to_string())),
        ClientHello::NeedMore(_) if buf.len() >= max => {
            return FirstBytes::Invalid("client_hello_too_large");
        }
        ClientHello::NeedMore(_) => return FirstBytes::NeedMore,
        ClientHello::Invalid(why) => return FirstBytes::Invalid(why.as_str()),
        ClientHello::NotTls => {}
    }
    // An HTTP request starts with an upper-case method token and a space.
    let method_len = buf.iter().take_while(|b| b.is_ascii_uppercase()).count();
    match buf.get(method_len) {
        None if method_len < 20 => return FirstBytes::NeedMore,
        Some(b' ') if method_len > 0 => {}
        _ => return FirstBytes::Other,
    }
    // A request line names an HTTP version; a first line that does not is another protocol's
    // command (SMTP `EHLO host`, Redis `SET k v`), not a request. Any spelling of `http/`
    // counts: a lenient server could take the line for a request, so it is parsed, strictly,
    // as one.
    match buf.iter().position(|&b| b == b'\n') {
        None if buf.len() < max => return FirstBytes::NeedMore,
        Some(end) if !names_http_version(&buf[..end]) => return FirstBytes::Other,
        _ => {}
    }
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {
            let mut hosts = head
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("host"));
            let host = hosts
                .next()
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            if hosts.next().is_some() {
                return FirstBytes::Invalid("multiple_host_headers");
            }
            FirstBytes::Http(host)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max => {
            FirstBytes::Invalid("request_head_too_large")
        }
        Ok(httparse::Status::Partial) => FirstBytes::NeedMore,
        Err(_) => FirstBytes::Invalid("invalid_http_request"),
    }
}

fn names_http_version(line: &[u8]) -> bool {
    line.windows(5).any(|w| w.eq_ignore_ascii_case(b"http/"))
}

/// Check the client's first bytes against the CONNECT target. `Err` is the stable reason the
/// tunnel is closed with.
pub(super) fn check_first_bytes(
    ctx: &ProxyContext,
    snap: &Snapshot,
    target: &Target,
    dialled: IpAddr,
    first: &FirstBytes,
) -> Result<(), &'static str> {
    // A name the policy allows for the dialled address and port (CONNECT to an IP literal).
    let name_allowed_here = |name: &Hostname| {
        let decided = snap.decide_target(Destination::Name(name), target.port, None);
        let d = snap.decide_address(&decided, dialled, target.port, &|a| ctx.is_own(a));
        *d.verdict() == Verdict::Allow
    };
    match (first, &target.host) {
        (FirstBytes::NeedMore, _) => Err("incomplete_first_bytes"),
        (FirstBytes::Invalid(reason), _) => Err(reason),
        (FirstBytes::Other, _) => Ok(()),
        (FirstBytes::Tls(None), TargetHost::Name(_)) => Err("sni_missing"),
        (FirstBytes::Tls(None), TargetHost::Ip(_)) => Ok(()),
        (FirstBytes::Tls(Some(sni)), host) => {
            let Ok(sni) = sni.parse::<Hostname>() else {
                return Err("invalid_sni");
            };
            match host {
                TargetHost::Name(name) if *name == sni => Ok(()),
                TargetHost::Name(_) => Err("sni_mismatch"),
                TargetHost::Ip(_) if name_allowed_here(&sni) => Ok(()),
                TargetHost::Ip(_) => Err("sni_not_allowed"),
            }
        }
        (FirstBytes::Http(None), TargetHost::Name(_)) => Err("host_missing"),
        (FirstBytes::Http(None), TargetHost::Ip(_)) => Ok(()),
        (FirstBytes::Http(Some(value)), _) => {
            let Ok((host, port)) = Target::parse_host_header(value) else {
                return Err("host_mismatch");
            };
            if port.is_some_and(|p| p != target.port) {
                return Err("host_mismatch");
            }
            match (&target.host, &host) {
                (a, b) if a == b => Ok(()),
                (TargetHost::Ip(_), TargetHost::Name(name)) if name_allowed_here(name) => Ok(()),
                _ => Err("host_mismatch"),
            }
        }
    }
}

/// The client's side of an established tunnel: the socket itself when hyper hands it back (so
/// the relay can splice), else hyper's upgraded stream.
pub(super) enum TunnelClient {
    Socket(TcpStream),
    Stream(TokioIo<hyper::upgrade::Upgraded>),
}

impl TunnelClient {
    /// The client and the bytes hyper read past the CONNECT head, which come first.
    fn from_upgraded(upgraded: hyper::upgrade::Upgraded) -> (Self, Bytes) {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => return (TunnelClient::Socket(parts.io.into_inner()), parts.read_buf),
            Err(upgraded) => upgraded,
        };
        match upgraded.downcast::<TokioIo<Prefixed<TcpStream>>>() {
            Ok(parts) => {
                // hyper read its buffer before what is left of the prefix.
                let Prefixed { prefix, inner } = parts.io.into_inner();
                let already = match (parts.read_buf.is_empty(), prefix.is_empty()) {
                    (_, true) => parts.read_buf,
                    (true, false) => prefix,
                    (false, false) => [parts.read_buf, prefix].concat().into(),
                };
                (TunnelClient::Socket(inner), already)
            }
            Err(upgraded) => (TunnelClient::Stream(TokioIo::new(upgraded)), Bytes::new()),
        }
    }

    async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            TunnelClient::Socket(s) => s.read_buf(buf).await,
            TunnelClient::Stream(s) => s.read_buf(buf).await,
        }
    }
}

/// Read the client's first bytes into `buf` (which may hold some already) until they can be
/// judged. `NeedMore` means the client closed first. Cancel-safe: what was read stays in `buf`.
pub(super) async fn read_first_bytes(
    client: &mut TunnelClient,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<FirstBytes> {
    loop {
        let first = classify_first_bytes(buf, max);
        if first != FirstBytes::NeedMore {
            return Ok(first);
        }
        buf.reserve(4096);
        if client.read_buf(buf).await? == 0 {
            return Ok(FirstBytes::NeedMore);
        }
    }
}

/// How the opening of a relayed connection ended.
pub(super) enum Opening {
    /// The client's first bytes, judged (`NeedMore`: the client closed before they could be).
    First(FirstBytes),
    /// The client sent nothing that could be judged in time.
    TimedOut,
    Failed(Direction, std::io::Error),
}

/// Read the client's first bytes into `buf` until they can be judged, passing on to the client
/// meanwhile whatever the upstream sends: protocols where the server speaks first (SMTP,
/// MySQL, FTP) greet before the client says anything. Nothing goes upstream until the first
/// bytes are judged. The client has the first-bytes timeout to start; once the upstream has
/// spoken, the idle timeout since its last bytes.
pub(super) async fn opening(
    ctx: &ProxyContext,
    client: &mut TcpStream,
    upstream: &TcpStream,
    buf: &mut BytesMut,
    activity: &Activity,
) -> Opening {
    let max = ctx.limits.max_header_bytes.max(8192);
    let mut down: Vec<u8> = Vec::new();
    let mut upstream_open = true;
    let deadline = tokio::time::sleep(ctx.limits.first_bytes_timeout);
    tokio::pin!(deadline);
    loop {
        let first = classify_first_bytes(buf, max);
        if first != FirstBytes::NeedMore {
            return Opening::First(first);
        }
        buf.reserve(4096);
        tokio::select! {
            biased;
            // `read_buf` (cancel-safe) rather than `try_read_buf`: a short read clears the
            // socket's readiness, so the relay's first read waits instead of trying in vain.
            r = client.read_buf(buf) => match r {
                Ok(0) => return Opening::First(FirstBytes::NeedMore),
                Ok(_) => {}
                Err(e) => return Opening::Failed(Direction::Up, e),
            },
            r = upstream.readable(), if upstream_open => {
                if down.is_empty() {
                    down = vec![0; 16 * 1024];
                }
                match r.and_then(|()| upstream.try_read(&mut down)) {
                    Ok(0) => {
                        // The upstream said all it will: pass its end of stream on.
                        upstream_open = false;
                        if let Err(e) = shutdown_write(client) {
                            return Opening::Failed(Direction::Down, e);
                        }
                    }
                    Ok(n) => {
                        if let Err(e) = write_all(client, &down[..n], Direction::Down, activity).await {
                            return Opening::Failed(Direction::Down, e);
                        }
                        let idle = tokio::time::Instant::now() + ctx.limits.idle_timeout;
                        deadline.as_mut().reset(idle);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Opening::Failed(Direction::Down, e),
                }
            }
            _ = &mut deadline => return Opening::TimedOut,
        }
    }
}

/// Resolves, with why, once a snapshot other than `admitted` no longer allows the tunnel.
pub(super) async fn revoked(
    ctx: &ProxyContext,
    admitted: &Arc<Snapshot>,
    target: &Target,
    addr: SocketAddr,
) -> String {
    let mut snapshots = ctx.snapshots.clone();
    // A snapshot may have come between the decision and now: judge it too.
    let mut current = snapshots.borrow_and_update().clone();
    loop {
        if !Arc::ptr_eq(&current, admitted)
            && let Err(why) = still_allowed(ctx, &current, target, addr.ip())
        {
            return format!("policy version {}: {}", current.version(), why.as_str());
        }
        if snapshots.changed().await.is_err() {
            // No more snapshots will come: the current one stands.
            return std::future::pending().await;
        }
        current = snapshots.borrow_and_update().clone();
    }
}

async fn tunnel(
    ctx: ProxyContext,
    snap: Arc<Snapshot>,
    mut draft: Draft,
    target: Target,
    dialled: Dialled,
    mut client: TunnelClient,
    already: Bytes,
) {
    let Dialled {
        stream: upstream,
        addr,
        decision,
    } = dialled;
    let (verdict, reason) = allowed_outcome(&decision);
    let draft_peer = draft.source;
    let activity = Activity::new();

    // The client's first bytes, checked before anything is relayed upstream.
    let mut buf = BytesMut::with_capacity(already.len().max(4096));
    buf.extend_from_slice(&already);
    let opened = match &mut client {
        TunnelClient::Socket(c) => opening(&ctx, c, &upstream, &mut buf, &activity).await,
        TunnelClient::Stream(_) => {
            let max = ctx.limits.max_header_bytes.max(8192);
            let read = tokio::time::timeout(
                ctx.limits.first_bytes_timeout,
                read_first_bytes(&mut client, &mut buf, max),
            );
            match read.await {
                Err(_) => Opening::TimedOut,
                Ok(Ok(first)) => Opening::First(first),
                Ok(Err(e)) => Opening::Failed(Direction::Up, e),
            }
        }
    };
    let (up, down) = (activity.up(), activity.down());
    let first = match opened {
        Opening::TimedOut => {
            tracing::info!(destination = %target, "closing tunnel: the client sent nothing to check in time");
            return draft.finish(EventVerdict::Denied, "first_bytes_timeout", up, down);
        }
        Opening::Failed(direction, e) => {
            tracing::debug!(destination = %target, direction = direction.as_str(), error = %e, "tunnel failed before the client's first bytes");
            return draft.finish(verdict, reason, up, down);
        }
        // The client closed without sending anything.
        Opening::First(FirstBytes::NeedMore) if buf.is_empty() => {
            return draft.finish(verdict, reason, up, down);
        }
        Opening::First(first) => first,
    };
    draft.sni_or_host = match &first {
        FirstBytes::Tls(sni) => sni.clone(),
        FirstBytes::Http(host) => host.clone(),
        _ => None,
    };
    if let Err(why) = check_first_bytes(&ctx, &snap, &target, addr.ip(), &first) {
        tracing::info!(destination = %target, sni_or_host = draft.sni_or_host.as_deref().unwrap_or(""), reason = why, "closing tunnel: the client's first bytes disagree with the CONNECT target");
        return draft.finish(EventVerdict::Denied, why, up, down);
    }

    // Plaintext HTTP in a tunnel to a name: every request of the connection, not only the
    // first, must name the CONNECT target (else one tunnel fronts for any virtual host at
    // that address), and path rules hold per request. Served as the transparent listener
    // serves redirected HTTP, pinned to the address admitted here.
    if let (FirstBytes::Http(_), TargetHost::Name(_)) = (&first, &target.host) {
        drop(upstream);
        draft.finish(verdict, reason, up, down);
        let pin = SocketAddr::new(addr.ip(), target.port);
        let peer = draft_peer;
        let first = buf.freeze();
        match client {
            TunnelClient::Socket(c) => {
                super::transparent::serve_http(ctx, c, first, peer, pin, Some(target)).await
            }
            TunnelClient::Stream(c) => {
                super::transparent::serve_http(ctx, c, first, peer, pin, Some(target)).await
            }
        }
        return;
    }

    let idle = ctx.limits.idle_timeout;
    let stop = revoked(&ctx, &snap, &target, addr);
    let pending = buf.freeze();
    let end = match client {
        TunnelClient::Socket(client) => {
            relay(client, upstream, pending, activity.clone(), idle, stop).await
        }
        TunnelClient::Stream(client) => {
            relay_stream(client, upstream, pending, activity.clone(), idle, stop).await
        }
    };
    let (verdict, reason) = match end {
        RelayEnd::Closed => (verdict, reason),
        RelayEnd::Failed { direction, error } => {
            tracing::debug!(destination = %target, direction = direction.as_str(), error = %error, "tunnel ended with an error");
            (verdict, reason)
        }
        RelayEnd::Idle => {
            tracing::debug!(destination = %target, "closed idle tunnel");
            (verdict, reason)
        }
        RelayEnd::Stopped(why) => {
            tracing::info!(destination = %target, address = %addr, reason = %why, "closing tunnel: the new policy no longer allows it");
            (EventVerdict::Denied, "policy_revoked")
        }
    };
    draft.finish(verdict, reason, activity.up(), activity.down());
}

// ---------------------------------------------------------------------------------------------
// Absolute-form HTTP

/// Hop-by-hop headers, never forwarded (RFC 9110 section 7.6.1, plus the proxy's own).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

async fn handle_forward(
    ctx: ProxyContext,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let mut draft = Draft::new(&ctx, peer, authority.clone(), 0);
    if uri.scheme_str() != Some("http") {
        return draft.refuse(Refusal::client(
            "unsupported_scheme",
            "only http:// is forwarded in absolute form; use CONNECT (HTTPS_PROXY) for https://",
        ));
    }
    let target = match Target::parse_authority(&authority, Some(80)) {
        Ok(t) => t,
        Err(e) => return draft.refuse(Refusal::client(e.reason, e.message)),
    };
    draft.destination = target.host.to_string();
    draft.port = target.port;
    forward(ctx, draft, req, target, 80, None).await
}

/// Forward one plain-HTTP request to `target`: the Host header must agree with it (a port-less
/// Host names `default_port`), the path is normalised and decided with the target, the
/// upstream is dialled (at `pin` only, for the transparent listener) and the response streamed
/// back.
pub(super) async fn forward(
    ctx: ProxyContext,
    mut draft: Draft,
    req: Request<Incoming>,
    target: Target,
    default_port: u16,
    pin: Option<IpAddr>,
) -> Response<ProxyBody> {
    let uri = req.uri().clone();
    let host_header = match single_host(req.headers()) {
        Err(r) => return draft.refuse(r),
        Ok(h) => h.cloned(),
    };
    if let Some(h) = &host_header {
        draft.sni_or_host = h.to_str().ok().map(str::to_string);
        // A port-less Host names the scheme's default port.
        let agrees = Target::parse_host_header(h.to_str().unwrap_or(""))
            .map(|(host, port)| host == target.host && port.unwrap_or(default_port) == target.port)
            .unwrap_or(false);
        if !agrees {
            return draft.refuse(Refusal::client(
                "host_mismatch",
                format!("the Host header does not agree with the request's destination {target}"),
            ));
        }
    }
    let path = match normalize_path(uri.path()) {
        Ok(p) => p,
        Err(e) => return draft.refuse(Refusal::client("invalid_path", e.to_string())),
    };
    draft.path = Some(path.clone());
    let snap = ctx.snapshots.borrow().clone();
    draft.cluster = snap.cluster_id().to_string();
    let dialled = match resolve_and_dial(&ctx, &snap, &target, Some(&path), pin).await {
        Ok(d) => d,
        Err(r) => return draft.refuse(r),
    };
    draft.rule = dialled.decision.rule().map(|r| r.name.to_string());
    let (verdict, reason) = allowed_outcome(&dialled.decision);
    let activity = Activity::new();
    let io = TokioIo::new(Counted::new(dialled.stream, activity.clone()));
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(io).await {
        Ok(x) => x,
        Err(e) => {
            return draft.refuse(Refusal::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!("while talking to upstream {}: {e}", dialled.addr),
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });

    let (mut parts, body) = req.into_parts();
    let origin_form = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    parts.uri = match origin_form.parse::<Uri>() {
        Ok(u) => u,
        Err(_) => {
            return draft.refuse(Refusal::client(
                "invalid_path",
                "the request path cannot be forwarded",
            ));
        }
    };
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    if host_header.is_none() {
        let host = if target.port == 80 {
            match &target.host {
                TargetHost::Ip(IpAddr::V6(v6)) => format!("[{v6}]"),
                h => h.to_string(),
            }
        } else {
            target.to_string()
        };
        if let Ok(v) = HeaderValue::from_str(&host) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let upstream_req = Request::from_parts(parts, body);
    let sent = tokio::time::timeout(
        ctx.limits.response_head_timeout,
        sender.send_request(upstream_req),
    )
    .await;
    let response = match sent {
        Err(_) => {
            return draft.refuse(Refusal::upstream(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                format!(
                    "upstream {} did not answer within {:?}",
                    dialled.addr, ctx.limits.response_head_timeout
                ),
            ));
        }
        Ok(Err(e)) => {
            return draft.refuse(Refusal::upstream(
                StatusCode::BAD_GATEWAY,
                "upstream_failed",
                format!("while forwarding to upstream {}: {e}", dialled.addr),
            ));
        }
        Ok(Ok(r)) => r,
    };
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let body = EventBody {
        inner: body,
        finish: Some(Box::new(move || {
            draft.finish(verdict, reason, activity.up(), activity.down())
        })),
    };
    Response::from_parts(parts, body.boxed())
}

/// A response body that finishes its request's decision event when it ends or is dropped.
struct EventBody {
    inner: Incoming,
    finish: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl EventBody {
    fn done(&mut self) {
        if let Some(f) = self.finish.take() {
            f();
        }
    }
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.done();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for EventBody {
    fn drop(&mut self) {
        self.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_are_classified() {
        let max = 16 * 1024;
        let http = |h: &str| FirstBytes::Http(Some(h.into()));
        for (bytes, want) in [
            (&b""[..], FirstBytes::NeedMore),
            (b"GE", FirstBytes::NeedMore),
            (
                b"GET / HTTP/1.1\r\nHost: a.example.com\r\n",
                FirstBytes::NeedMore,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
                http("a.example.com"),
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                FirstBytes::Invalid("multiple_host_headers"),
            ),
            (b"hello raw\n", FirstBytes::Other),
            (
                b"GET /\x01 HTTP/1.1\r\n\r\n",
                FirstBytes::Invalid("invalid_http_request"),
            ),
            // Other protocols' upper-case commands are not requests...
            (b"EHLO", FirstBytes::NeedMore),
            (b"EHLO mail", FirstBytes::NeedMore),
            (b"EHLO mail.example.com\r\n", FirstBytes::Other),
            (b"SET k v\r\n", FirstBytes::Other),
        ] {
            assert_eq!(
                classify_first_bytes(bytes, max),
                want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        // ...but a line a lenient server could read as a request is held to HTTP's grammar.
        for line in [
            &b"GET / HTTP/1.1 \r\nHost: other.example\r\n\r\n"[..],
            b"GET / http/1.1\r\nHost: other.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : other.example\r\n\r\n",
        ] {
            assert_eq!(
                classify_first_bytes(line, max),
                FirstBytes::Invalid("invalid_http_request"),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
