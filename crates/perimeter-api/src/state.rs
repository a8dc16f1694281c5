//! The state every handler shares, and where this process's embedded gateways listen.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use perimeter_store::Store;
use tokio::sync::Notify;

use crate::read_cache::ReadCache;
use crate::secrets::SecretsKey;
use crate::{auth, changes, model, publish, resolve};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Whether the networking console is served at `/console` (`serve --no-console` turns it
    /// off).
    pub console: bool,
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
    /// The master key sealing secrets at rest (a cluster's inspection CA key). Without one,
    /// TLS inspection cannot be turned on, and a cluster that has it on cannot be published.
    pub secrets: Option<Arc<SecretsKey>>,
    /// Where this process's API listens: endpoint-service backends never name it.
    pub api_listeners: Arc<std::sync::RwLock<Vec<std::net::SocketAddr>>>,
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
            console: true,
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
            secrets: None,
            api_listeners: Arc::default(),
        }
    }

    /// This process's API listens at `addr`.
    pub fn add_api_listener(&self, addr: std::net::SocketAddr) {
        self.api_listeners
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(addr);
    }

    /// The platform's own listeners this process knows: its API and its embedded gateways'
    /// proxy, DNS and ingress listeners. Forwarders never dial them, whoever registers them.
    pub fn platform_listeners(&self) -> Vec<std::net::SocketAddr> {
        let mut all = self
            .api_listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let e = &self.embedded;
        let mut texts: Vec<String> = Vec::new();
        texts.extend(
            e.addrs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        texts.extend(
            e.dns
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned(),
        );
        for a in e.ingress.read().unwrap_or_else(|p| p.into_inner()).values() {
            texts.extend([a.sql.clone(), a.ui.clone(), a.private.clone()]);
        }
        all.extend(
            texts
                .iter()
                .filter_map(|t| t.parse::<std::net::SocketAddr>().ok()),
        );
        all
    }

    /// A change was committed: wake the reconciler and every waiting snapshot long-poll.
    pub fn changed(&self) {
        self.reconcile.notify_one();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Serve the console at `/console`, or not.
    pub fn with_console(mut self, on: bool) -> Self {
        self.console = on;
        self
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

    /// Seal and open secrets at rest with `key` (`serve --secrets-key-file`).
    pub fn with_secrets_key(mut self, key: Arc<SecretsKey>) -> Self {
        self.secrets = Some(key);
        self
    }

    /// Resolve names for egress-check with `resolver` (the gateways' resolver).
    pub fn with_resolver(mut self, resolver: Arc<dyn resolve::NameResolver>) -> Self {
        self.resolver = Some(resolver);
        self
    }
}
