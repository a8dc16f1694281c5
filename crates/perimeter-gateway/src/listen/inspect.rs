//! TLS inspection: a CONNECT to a destination that only rules with paths allow, on a cluster
//! that turned inspection on, is terminated here so that every request's path can be decided.
//!
//! 1. After `200 Connection established` the client's ClientHello is read; its SNI must be the
//!    CONNECT name (else the connection is closed, `sni_mismatch`).
//! 2. The gateway completes the handshake with a leaf certificate for that name, signed by the
//!    cluster's CA ([`Leaves`]: minted on first use, cached, valid for a day). ALPN offers
//!    HTTP/2 and HTTP/1.1 (the client's choice). rustls accepts no early data and never
//!    renegotiates.
//! 3. HTTP/1.1: the decrypted stream is read through the strict request checker of plaintext
//!    tunnels ([`Strict`]): ambiguous framing ends the session before hyper or the upstream sees
//!    it. HTTP/2: frames carry their own lengths; the h2 codec resets malformed streams
//!    ([`super::forward::serve_h2`]).
//! 4. Every request (every HTTP/2 stream) is served on its own ([`super::forward`],
//!    `Route::Inspected`): its Host, or `:authority`, must name the SNI, its normalised path is
//!    decided with the target, and it goes upstream over the gateway's own TLS connection,
//!    verified against the system roots and `--upstream-ca-file`, in the protocol the
//!    upstream's ALPN chose. A refused request gets its 403 inside the TLS session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use perimeter_policy::{Hostname, Inspection};
use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};

use super::ProxyContext;
use super::event::Draft;
use super::forward::{Kept, Route, serve_h2, serve_http};
use super::refusal::Why;
use super::requests::Requests;
use super::target::Target;
use crate::decision::EventVerdict;

/// How long a minted leaf is valid (and before now, for clocks behind the gateway's).
const LEAF_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const LEAF_BACKDATE: Duration = Duration::from_secs(3600);
/// A cached leaf is minted again when less than this is left.
const LEAF_RENEW: Duration = Duration::from_secs(3600);
/// Most leaves kept; past it the oldest half is dropped.
const LEAF_CACHE: usize = 4096;

/// A configuration error of inspection (the extra roots file).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("--upstream-ca-file {path}: {reason}")]
    Roots { path: String, reason: String },
}

/// The gateway's inspection state: the roots upstream certificates are verified against, and
/// the inspector of the cluster's current CA (built when a snapshot brings a new one).
pub struct InspectionState {
    roots: Arc<RootCertStore>,
    current: Mutex<Option<(String, Arc<Inspector>)>>,
}

impl std::fmt::Debug for InspectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InspectionState")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl Default for InspectionState {
    /// The system's roots alone.
    fn default() -> Self {
        InspectionState {
            roots: Arc::new(system_roots()),
            current: Mutex::new(None),
        }
    }
}

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "a system root certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system roots for inspected upstreams");
    roots
}

impl InspectionState {
    /// The system's roots and the certificates of a PEM file.
    pub fn with_extra_roots(file: Option<&Path>) -> Result<InspectionState, InspectError> {
        let mut roots = system_roots();
        if let Some(path) = file {
            let err = |reason: String| InspectError::Roots {
                path: path.display().to_string(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| err(e.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("holds no PEM certificate".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(InspectionState {
            roots: Arc::new(roots),
            current: Mutex::new(None),
        })
    }

    /// The inspector of `inspection`'s CA, built once per CA.
    pub(crate) fn inspector(&self, inspection: &Inspection) -> Result<Arc<Inspector>, String> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((ca, inspector)) = current.as_ref()
            && *ca == inspection.ca_certificate
        {
            return Ok(inspector.clone());
        }
        let inspector = Arc::new(Inspector::new(inspection, self.roots.clone())?);
        *current = Some((inspection.ca_certificate.clone(), inspector.clone()));
        Ok(inspector)
    }
}

/// The TLS configurations of one CA: the client-facing side with its leaves, the upstream side.
pub(crate) struct Inspector {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    #[cfg_attr(not(test), allow(dead_code))]
    leaves: Arc<Leaves>,
}

impl Inspector {
    fn new(inspection: &Inspection, roots: Arc<RootCertStore>) -> Result<Inspector, String> {
        let key = KeyPair::from_pem(&inspection.ca_key)
            .map_err(|e| format!("the CA key cannot be read: {e}"))?;
        let ca_der = CertificateDer::from_pem_slice(inspection.ca_certificate.as_bytes())
            .map_err(|e| format!("the CA certificate cannot be read: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(&inspection.ca_certificate, key)
            .map_err(|e| format!("the CA certificate cannot be read: {e}"))?;
        let leaves = Arc::new(Leaves {
            issuer,
            ca_der,
            cache: Mutex::new(HashMap::new()),
        });
        let crypto = Arc::new(provider::default_provider());
        let mut server = ServerConfig::builder_with_provider(crypto.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(leaves.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut client = ClientConfig::builder_with_provider(crypto)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Inspector {
            server: Arc::new(server),
            client: Arc::new(client),
            leaves,
        })
    }

    /// The leaf for `name` (minted now or cached).
    #[cfg(test)]
    pub(crate) fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        self.leaves.leaf(name)
    }
}

/// Leaf certificates signed by the cluster's CA, one per name, minted on first use.
struct Leaves {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    cache: Mutex<HashMap<String, (Arc<CertifiedKey>, Instant)>>,
}

impl std::fmt::Debug for Leaves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Leaves")
    }
}

impl Leaves {
    fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((leaf, renew_at)) = cache.get(name)
                && now < *renew_at
            {
                metrics::counter!("perimeter_inspection_leaf_cache_total", "result" => "hit")
                    .increment(1);
                return Ok(leaf.clone());
            }
        }
        metrics::counter!("perimeter_inspection_leaf_cache_total", "result" => "miss").increment(1);
        let leaf = Arc::new(self.mint(name)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= LEAF_CACHE {
            // Drop the half that is due soonest.
            let mut due: Vec<(Instant, String)> =
                cache.iter().map(|(k, (_, at))| (*at, k.clone())).collect();
            due.sort();
            for (_, k) in due.into_iter().take(LEAF_CACHE / 2) {
                cache.remove(&k);
            }
        }
        cache.insert(
            name.to_string(),
            (leaf.clone(), now + LEAF_LIFETIME - LEAF_RENEW),
        );
        Ok(leaf)
    }

    fn mint(&self, name: &str) -> Result<CertifiedKey, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, name);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_LIFETIME;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| e.to_string())?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider::sign::any_supported_type(&der).map_err(|e| e.to_string())?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.ca_der.clone()],
            signing,
        ))
    }
}

impl ResolvesServerCert for Leaves {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?;
        match self.leaf(name) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                tracing::warn!(server_name = name, error = %e, "cannot mint a leaf certificate");
                None
            }
        }
    }
}

/// Serve an inspected tunnel: `io` is the client after `200` (with `already`, bytes it sent
/// past the CONNECT head), `name` the CONNECT name. `draft` is the CONNECT's decision event,
/// finished once the handshake is done (or failed); each request then has its own.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<IO>(
    ctx: ProxyContext,
    inspector: Arc<Inspector>,
    target: Target,
    name: Hostname,
    mut draft: Draft,
    io: IO,
    already: Bytes,
    peer: SocketAddr,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = super::prefixed::Prefixed::new(already, io);
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let start = match tokio::time::timeout(ctx.limits.first_bytes_timeout, acceptor).await {
        Err(_) => return draft.finish_why(&Why::FirstBytesTimeout, 0, 0),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "not a TLS ClientHello in an inspected tunnel");
            return draft.finish_why(&Why::InspectionHandshake, 0, 0);
        }
        Ok(Ok(start)) => start,
    };
    let sni = start.client_hello().server_name().map(str::to_string);
    draft.sni_or_host = sni.clone();
    let matches = sni
        .as_deref()
        .and_then(|s| s.parse::<Hostname>().ok())
        .is_some_and(|s| s == name);
    if !matches {
        let why = if sni.is_none() {
            Why::SniMissing
        } else {
            Why::SniMismatch
        };
        return draft.finish_why(&why, 0, 0);
    }
    let tls = match tokio::time::timeout(
        ctx.limits.first_bytes_timeout,
        start.into_stream(inspector.server.clone()),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "inspected TLS handshake failed");
            return draft.finish_why(&Why::InspectionHandshake, 0, 0);
        }
        Err(_) => return draft.finish_why(&Why::FirstBytesTimeout, 0, 0),
    };
    draft.finish(EventVerdict::Allowed, "tls_inspection", 0, 0);
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let route = Route::Inspected {
        target: target.clone(),
        name,
        kept: Kept::default(),
        tls: inspector.client.clone(),
    };
    if h2 {
        return serve_h2(ctx, tls, peer, route).await;
    }
    let strict = Strict {
        inner: tls,
        requests: Requests::framing_only(target.clone(), ctx.limits.max_header_bytes.max(8192)),
        ready: Vec::new(),
        at: 0,
        refused: None,
        refusal: Some(Draft::new(&ctx, peer, target.host.to_string(), target.port)),
    };
    serve_http(ctx, strict, Bytes::new(), peer, route).await;
}

/// The decrypted client stream, read through the strict request checker of plaintext tunnels
/// ([`Requests`]) before hyper parses it: every head is held until complete, parsed strictly
/// (framing: Content-Length with Transfer-Encoding, differing Content-Lengths, obs-fold, chunk
/// sizes; the Host is the forwarding path's to check and answer). hyper would read some leniently
/// (Transfer-Encoding over Content-Length); here the stream ends at the refused head, nothing of
/// it reaches hyper or the upstream, the connection closes once the requests before it are
/// answered, and a decision event records why.
struct Strict<T> {
    inner: T,
    requests: Requests,
    /// Checked bytes not yet read by hyper, from `at`.
    ready: Vec<u8>,
    at: usize,
    refused: Option<Why>,
    /// The event of a refusal (one per connection: the stream ends there).
    refusal: Option<Draft>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Strict<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.at < this.ready.len() {
                let n = (this.ready.len() - this.at).min(buf.remaining());
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                if this.at == this.ready.len() {
                    this.ready.clear();
                    this.at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.refused.is_some() {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut rb = tokio::io::ReadBuf::new(&mut chunk);
            match std::pin::Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let data = rb.filled();
            if data.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let mut found = Vec::new();
            if let Err(why) = this.requests.push(data, &mut this.ready, &mut found) {
                if let Some(draft) = this.refusal.take() {
                    draft.finish_why(&why, 0, 0);
                }
                this.refused = Some(why);
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Strict<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
