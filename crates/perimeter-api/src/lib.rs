//! Perimeter's control plane API: routes, authentication and roles, the error shape, the
//! OpenAPI document, and the reconciler that drives asynchronous states.

pub mod auth;
pub mod changes;
pub mod error;
pub mod extract;
pub mod model;
pub mod publish;
pub mod reconcile;
pub mod resolve;
mod routes;
pub mod server;
pub mod what_if;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use perimeter_store::{AuditEntry, Principal, Store};
use serde::Serialize;
use tokio::sync::Notify;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{generate_key, hash_secret};
pub use error::{ApiError, ApiResult, Code};

/// The API version answered in `Cc-Version` for `latest` or no header.
pub const API_VERSION: &str = "2024-09-16";

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Wakes the reconciler after a change that it should act on.
    pub reconcile: Arc<Notify>,
    /// Bumped on every networking change made through this process, and on every change the
    /// store notifies from other replicas: wakes snapshot long-polls.
    pub changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// Cluster versions as the store's change notifications told them ([`changes::follow`]).
    pub store_changes: Arc<changes::StoreChanges>,
    pub rate_limiter: Option<Arc<auth::RateLimiter>>,
    pub metrics: Option<PrometheusHandle>,
    /// Compiled snapshots for what-if queries.
    pub snapshots: publish::SnapshotCache,
    /// Recently verified API keys.
    pub principals: Arc<auth::PrincipalCache>,
    /// Serialized rule-list pages by cluster, valid for one rules epoch.
    pub rule_pages: Arc<ReadCache>,
    /// Where this process's embedded gateways listen (empty with `--no-embedded-gateways`).
    pub embedded: EmbeddedGateways,
    /// Resolves names for egress-check as the gateways do; without one, egress-check judges a
    /// name before resolution (FQDN rules only) and says so in a warning.
    pub resolver: Option<Arc<dyn resolve::NameResolver>>,
}

/// Name prefix of the gateways that `perimeter serve` runs itself; reserved.
pub const EMBEDDED_GATEWAY_PREFIX: &str = "embedded-";

/// A region's ingress listeners as observed.
#[derive(Debug, Clone, Default)]
pub struct IngressAddresses {
    pub sql: String,
    pub ui: String,
    /// The public listeners are bound (they close under `network_visibility: PRIVATE`).
    pub public_open: bool,
    pub private: String,
}

/// The proxy addresses of the embedded gateways this process runs, by cluster and region, as
/// observed: an entry exists only while its listener is bound.
#[derive(Clone, Default)]
pub struct EmbeddedGateways {
    addrs: Arc<std::sync::RwLock<HashMap<(String, String), String>>>,
    /// The regions' DNS listeners (`dns_address`).
    dns: Arc<std::sync::RwLock<HashMap<(String, String), String>>>,
    /// The regions' public ingress listeners (`sql_ingress_address`, `ui_ingress_address`).
    ingress: Arc<std::sync::RwLock<HashMap<(String, String), IngressAddresses>>>,
    /// Whether this process runs embedded gateways at all.
    enabled: Arc<std::sync::atomic::AtomicBool>,
    started: Arc<Notify>,
}

impl EmbeddedGateways {
    /// This process runs embedded gateways: cluster creation waits (briefly) for them.
    pub fn enable(&self) {
        self.enabled
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// When embedded gateways run, wait up to two seconds for every region of `c` to have one,
    /// so that a new cluster's answer carries its proxy addresses.
    pub async fn wait_for_regions(&self, c: &perimeter_store::Cluster) {
        if !self.enabled.load(std::sync::atomic::Ordering::Relaxed) || c.is_deleted() {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let started = self.started.notified();
            if c.regions.iter().all(|r| self.get(&c.id, &r.name).is_some()) {
                return;
            }
            if tokio::time::timeout_at(deadline, started).await.is_err() {
                return;
            }
        }
    }

    pub fn set(&self, cluster_id: &str, region: &str, address: String) {
        self.addrs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((cluster_id.to_string(), region.to_string()), address);
        self.started.notify_waiters();
    }

    pub fn remove(&self, cluster_id: &str, region: &str) {
        let key = (cluster_id.to_string(), region.to_string());
        self.addrs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.dns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        self.ingress
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    /// The region's ingress listeners, shown as its `sql_ingress_address` and
    /// `ui_ingress_address` while the public ones are open, and `private_ingress_address`.
    pub fn set_ingress(&self, cluster_id: &str, region: &str, addresses: IngressAddresses) {
        self.ingress
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((cluster_id.to_string(), region.to_string()), addresses);
    }

    /// The region's public ingress listeners opened or closed.
    pub fn set_public_open(&self, cluster_id: &str, region: &str, open: bool) {
        if let Some(a) = self
            .ingress
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&(cluster_id.to_string(), region.to_string()))
        {
            a.public_open = open;
        }
    }

    pub fn get_ingress(&self, cluster_id: &str, region: &str) -> Option<IngressAddresses> {
        self.ingress
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(cluster_id.to_string(), region.to_string()))
            .cloned()
    }

    /// The region's DNS listener address (UDP and TCP), shown as its `dns_address`.
    pub fn set_dns(&self, cluster_id: &str, region: &str, address: String) {
        self.dns
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((cluster_id.to_string(), region.to_string()), address);
    }

    pub fn get_dns(&self, cluster_id: &str, region: &str) -> Option<String> {
        self.dns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(cluster_id.to_string(), region.to_string()))
            .cloned()
    }

    pub fn get(&self, cluster_id: &str, region: &str) -> Option<String> {
        self.addrs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(cluster_id.to_string(), region.to_string()))
            .cloned()
    }

    /// A cluster as the API shows it, with its regions' embedded proxy, DNS and ingress
    /// addresses.
    pub fn view(&self, c: perimeter_store::Cluster) -> model::Cluster {
        let mut view = model::Cluster::from(c);
        for r in &mut view.regions {
            if let Some(a) = self.get(&view.id, &r.name) {
                r.egress_proxy_address = a;
            }
            if let Some(a) = self.get_dns(&view.id, &r.name) {
                r.dns_address = a;
            }
            if let Some(a) = self.get_ingress(&view.id, &r.name) {
                // Shown only while bound, and never for a PRIVATE cluster.
                if a.public_open && view.network_visibility != "PRIVATE" {
                    r.sql_ingress_address = a.sql;
                    r.ui_ingress_address = a.ui;
                }
                r.private_ingress_address = a.private;
            }
        }
        view
    }
}

impl AppState {
    pub fn new(store: Store) -> Self {
        AppState {
            store,
            reconcile: Arc::new(Notify::new()),
            changes: Arc::new(tokio::sync::watch::channel(0).0),
            store_changes: Arc::default(),
            rate_limiter: None,
            metrics: None,
            snapshots: publish::SnapshotCache::default(),
            principals: Arc::default(),
            rule_pages: Arc::default(),
            embedded: EmbeddedGateways::default(),
            resolver: None,
        }
    }

    /// A change was committed: wake the reconciler and every waiting snapshot long-poll.
    pub fn changed(&self) {
        self.reconcile.notify_one();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn with_rate_limit(mut self, per_second: Option<u32>) -> Self {
        self.rate_limiter = per_second
            .filter(|n| *n > 0)
            .map(|n| Arc::new(auth::RateLimiter::new(n)));
        self
    }

    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Resolve names for egress-check with `resolver` (the gateways' resolver).
    pub fn with_resolver(mut self, resolver: Arc<dyn resolve::NameResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Perimeter control plane API",
        description = "Egress rules, traffic policy, private endpoints and IP allowlists, in the shapes of the CockroachDB Cloud API (compat) with Perimeter's extensions (ext).",
        version = "2024-09-16"
    ),
    components(schemas(error::Status)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new::<
            _,
            _,
            &str,
        >("bearer", [])]);
    }
}

/// The router and the OpenAPI document built from the same route list.
pub fn router_and_doc(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts();
    let router = router
        .fallback(|| async { ApiError::not_found("no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                Code::InvalidArgument,
                "method not allowed on this route; see /api/v1/openapi.json",
            )
        })
        .layer(middleware::from_fn(cc_version))
        .layer(middleware::from_fn(observe))
        .with_state(state);
    (router, doc)
}

/// The application router.
pub fn app(state: AppState) -> Router {
    router_and_doc(state).0
}

/// The OpenAPI document alone.
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::router())
        .split_for_parts()
        .1
}

static CC_VERSION: HeaderName = HeaderName::from_static("cc-version");
static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Validate and echo `Cc-Version` (a date `YYYY-MM-DD` or `latest`).
async fn cc_version(req: Request, next: Next) -> Response {
    let version = match req.headers().get(&CC_VERSION) {
        None => API_VERSION.to_string(),
        Some(v) => match v.to_str().map(str::trim) {
            Ok("latest") => API_VERSION.to_string(),
            Ok(d) if chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok() && d.len() == 10 => {
                d.to_string()
            }
            _ => return ApiError::invalid("Cc-Version", "invalid Cc-Version.").into_response(),
        },
    };
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&version) {
        resp.headers_mut().insert(CC_VERSION.clone(), v);
    }
    resp
}

/// Request id (taken from `x-request-id` or generated), request metrics, and access log.
async fn observe(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let mut resp = error::REQUEST_ID.scope(id.clone(), next.run(req)).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16().to_string();
    metrics::counter!("perimeter_api_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.clone()).increment(1);
    metrics::histogram!("perimeter_api_request_duration_seconds", "method" => method.clone(), "route" => route.clone()).record(elapsed.as_secs_f64());
    tracing::debug!(target: "perimeter::access", request_id = %id, %method, %route, %status, elapsed_ms = elapsed.as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER.clone(), v);
    }
    resp
}

/// Serialized answers keyed by request, each valid for one epoch of what it was read from.
/// Bounded by memory, not by count: clients choose the keys (page tokens, query strings), so
/// the cache holds at most [`READ_CACHE_BYTES`] of keys and answers and starts over past it.
pub struct ReadCache {
    inner: std::sync::Mutex<CacheInner>,
    /// Striped fill locks: after a write, the many readers that miss at once wait for one of
    /// them to read the store instead of all reading it ([`ReadCache::fill`]).
    fills: Box<[tokio::sync::Mutex<()>]>,
}

const FILL_STRIPES: usize = 64;

impl Default for ReadCache {
    fn default() -> Self {
        Self {
            inner: Default::default(),
            fills: (0..FILL_STRIPES).map(|_| Default::default()).collect(),
        }
    }
}

/// Most bytes (keys and answers) the read cache holds.
pub const READ_CACHE_BYTES: usize = 32 << 20;

#[derive(Default)]
struct CacheInner {
    entries: std::collections::HashMap<String, (i64, axum::body::Bytes)>,
    bytes: usize,
}

impl ReadCache {
    pub fn get(&self, key: &str, epoch: i64) -> Option<axum::body::Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .entries
            .get(key)
            .filter(|(e, _)| *e == epoch)
            .map(|(_, b)| b.clone())
    }

    pub fn put(&self, key: String, epoch: i64, body: axum::body::Bytes) {
        let size = key.len() + body.len();
        // An answer too large to be worth a slot is served, not kept.
        if size > READ_CACHE_BYTES / 8 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Epochs only grow: an answer read at an older one never replaces a newer one.
        if inner.entries.get(&key).is_some_and(|(e, _)| *e > epoch) {
            return;
        }
        if let Some((_, old)) = inner.entries.remove(&key) {
            inner.bytes -= key.len() + old.len();
        }
        if inner.bytes + size > READ_CACHE_BYTES {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += size;
        inner.entries.insert(key, (epoch, body));
    }

    /// The answer for `key` at `epoch`: cached, or made by `make` and kept. Concurrent misses
    /// of one key wait for the first to make it (striped by key: unrelated keys rarely share a
    /// stripe, and sharing one only serializes their fills).
    pub async fn fill<E, F, Fut>(
        &self,
        key: String,
        epoch: i64,
        make: F,
    ) -> Result<axum::body::Bytes, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<axum::body::Bytes, E>>,
    {
        if let Some(b) = self.get(&key, epoch) {
            return Ok(b);
        }
        let stripe = {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(&key) as usize
                % self.fills.len()
        };
        let _filling = self.fills[stripe].lock().await;
        if let Some(b) = self.get(&key, epoch) {
            return Ok(b);
        }
        let body = make().await?;
        self.put(key, epoch, body.clone());
        Ok(body)
    }

    /// Bytes held (keys and answers).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

/// Build an audit entry for an API change by `p`, with secrets in the payload redacted.
pub(crate) fn audit(p: &Principal, action: &str, payload: &impl Serialize) -> AuditEntry {
    let mut v = serde_json::to_value(payload).unwrap_or(serde_json::Value::Null);
    redact(&mut v);
    AuditEntry::api(action, &p.service_account_name, v.to_string())
}

/// Replace the value of every key that names a secret with "[REDACTED]".
pub fn redact(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["secret", "token", "password", "credential", "private_key"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    *val = serde_json::Value::String("[REDACTED]".into());
                } else {
                    redact(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Serve `/metrics` text from the installed recorder.
pub(crate) async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}

/// How long the reconciler waits between scans when nothing wakes it.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(500);

/// Install the process-wide Prometheus recorder; its handle renders `/metrics`.
pub fn install_metrics() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
}

/// Serve the API on `listener` until `shutdown` resolves, then drain in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, server::ServerLimits::default(), shutdown).await
}

/// [`serve`] within `limits` (connections, header and request timeouts).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: server::ServerLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve_bounded(listener, app(state), limits, shutdown).await
}

#[cfg(test)]
mod read_cache_tests {
    use super::*;

    #[test]
    fn bounded_by_bytes_whatever_the_keys() {
        let cache = ReadCache::default();
        let body = axum::body::Bytes::from(vec![b'x'; 64 << 10]);
        for i in 0..10_000 {
            cache.put(format!("/api/v1/clusters?page={i}"), 1, body.clone());
            assert!(cache.bytes() <= READ_CACHE_BYTES);
        }
        // The newest answers are there; a stale epoch is not an answer.
        assert!(cache.get("/api/v1/clusters?page=9999", 1).is_some());
        assert!(cache.get("/api/v1/clusters?page=9999", 2).is_none());
        // Replacing a key does not count it twice.
        let before = cache.bytes();
        cache.put("/api/v1/clusters?page=9999".into(), 2, body.clone());
        assert_eq!(cache.bytes(), before);
        // An answer over an eighth of the budget is not kept.
        cache.put("big".into(), 1, vec![0u8; READ_CACHE_BYTES / 4].into());
        assert!(cache.get("big", 1).is_none());
        // An older epoch's answer never replaces a newer one.
        cache.put("k".into(), 5, "new".into());
        cache.put("k".into(), 4, "old".into());
        assert_eq!(cache.get("k", 5).as_deref(), Some(&b"new"[..]));
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_make_it_once() {
        let cache = std::sync::Arc::new(ReadCache::default());
        let made = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (cache, made) = (cache.clone(), made.clone());
                tokio::spawn(async move {
                    cache
                        .fill("list".into(), 7, || async {
                            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            Ok::<_, ()>(axum::body::Bytes::from_static(b"page"))
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(&t.await.unwrap()[..], b"page");
        }
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A new epoch is made again, once.
        cache
            .fill("list".into(), 8, || async {
                made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok::<_, ()>(axum::body::Bytes::from_static(b"page 2"))
            })
            .await
            .unwrap();
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
