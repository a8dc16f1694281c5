//! The embedded gateways of `perimeter serve`: one per region of every live cluster, on
//! loopback, so that the two-command start gives a working perimeter.
//!
//! Each is a whole gateway ([`RunningGateway`]) that talks to this process's own API exactly
//! as a standalone `perimeter gateway` does: it long-polls its snapshot, acknowledges what it
//! applied (which is what turns rules `ACTIVE`), keeps last-known-good under the data
//! directory and pushes decision counts. It is registered as the cluster's gateway
//! `embedded-<region>` and re-keyed at every start, so no token is kept at rest. Its proxy port
//! is kept in the `settings` table and reused across restarts; the address is shown as the
//! region's `egress_proxy_address`. Its DNS listener (UDP and TCP, on loopback) keeps its port
//! the same way and is shown as the region's `dns_address`; the embedded gateway has no
//! transparent listener, so its DNS listener refuses private endpoint names (and says so in
//! the log) and answers the names the policy allows. Its public ingress listeners (`sql`,
//! `ui`, on loopback) keep their ports the same way and are shown as the region's
//! `sql_ingress_address` and `ui_ingress_address`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use perimeter_api::{AppState, EMBEDDED_GATEWAY_PREFIX, auth};
use perimeter_gateway::dns::Resolver;
use perimeter_gateway::listen::GatewayLimits;
use perimeter_gateway::listen::dns_listener::DnsListener;
use perimeter_gateway::runtime::{GatewaySpec, Listeners, RunningGateway};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How the embedded gateways run.
#[derive(Clone)]
pub struct EmbeddedConfig {
    /// Where the API listens (the gateways' control plane).
    pub api: SocketAddr,
    /// Parent of each gateway's state directory.
    pub data_dir: PathBuf,
    pub resolver: Arc<Resolver>,
    pub limits: GatewayLimits,
    /// TLS inspection's roots, shared by every embedded gateway.
    pub inspection: Arc<perimeter_gateway::listen::inspect::InspectionState>,
    /// Longest pause between scans for clusters and regions that came or went.
    pub scan_interval: Duration,
    /// How often each gateway pushes its decision counts.
    pub push_interval: Duration,
}

type Key = (String, String);

/// Run gateways for every live cluster region until `shutdown`, starting and stopping them as
/// clusters and regions come and go.
pub async fn supervise(state: AppState, cfg: EmbeddedConfig, mut shutdown: watch::Receiver<bool>) {
    let mut running: HashMap<Key, RunningGateway> = HashMap::new();
    let mut changes = state.changes.subscribe();
    loop {
        match state.store.live_cluster_regions().await {
            Ok(regions) => {
                let desired: HashSet<Key> = regions.into_iter().collect();
                let gone: Vec<Key> = running
                    .keys()
                    .filter(|k| !desired.contains(*k))
                    .cloned()
                    .collect();
                for key in gone {
                    if let Some(gw) = running.remove(&key) {
                        stop_one(&state, &key, gw).await;
                    }
                }
                for key in desired {
                    if running.contains_key(&key) {
                        continue;
                    }
                    match start_one(&state, &cfg, &key).await {
                        Ok(gw) => {
                            running.insert(key, gw);
                        }
                        Err(e) => tracing::warn!(
                            cluster = %key.0, region = %key.1, error = %format!("{e:#}"),
                            "cannot start the embedded gateway; retrying at the next scan"
                        ),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list cluster regions for the embedded gateways")
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = changes.changed() => {}
            _ = tokio::time::sleep(cfg.scan_interval) => {}
        }
    }
    let stops = running.into_iter().map(|(key, gw)| {
        let state = state.clone();
        async move {
            state.embedded.remove(&key.0, &key.1);
            gw.stop().await;
        }
    });
    futures_join_all(stops).await;
}

/// Await every future (the handful of embedded gateways stop side by side).
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

fn gateway_name(region: &str) -> String {
    format!("{EMBEDDED_GATEWAY_PREFIX}{region}")
}

fn port_setting(cluster_id: &str, region: &str) -> String {
    format!("embedded_gateway.{cluster_id}.{region}.proxy")
}

fn dns_port_setting(cluster_id: &str, region: &str) -> String {
    format!("embedded_gateway.{cluster_id}.{region}.dns")
}

fn ingress_port_setting(cluster_id: &str, region: &str, listener: &str) -> String {
    format!("embedded_gateway.{cluster_id}.{region}.{listener}_ingress")
}

/// The API as the gateways reach it: an unspecified listen address is reached on loopback.
fn control_plane_url(api: SocketAddr) -> String {
    let ip = match api.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, api.port()))
}

/// Bind the region's proxy on its kept address, or on a new loopback port when there is none
/// or it is taken, and keep what was bound.
async fn bind_proxy(state: &AppState, cluster_id: &str, region: &str) -> Result<TcpListener> {
    bind_kept(state, cluster_id, region, &port_setting(cluster_id, region)).await
}

/// Bind a TCP listener of the region on the address kept under `key`, or on a new loopback
/// port when there is none or it is taken, and keep what was bound.
async fn bind_kept(
    state: &AppState,
    cluster_id: &str,
    region: &str,
    key: &str,
) -> Result<TcpListener> {
    let kept = state
        .store
        .setting(key)
        .await?
        .and_then(|v| v.parse::<SocketAddr>().ok());
    if let Some(addr) = kept {
        match TcpListener::bind(addr).await {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(
                cluster = %cluster_id, region, %addr, error = %e, setting = key,
                "the embedded gateway's kept address is unavailable; choosing a new port"
            ),
        }
    }
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding an embedded gateway on loopback")?;
    state
        .store
        .set_setting(key, &l.local_addr()?.to_string())
        .await?;
    Ok(l)
}

/// Bind the region's DNS listener (UDP and TCP) on its kept address, or on a new loopback port
/// when there is none or it is taken, and keep what was bound.
async fn bind_dns(state: &AppState, cluster_id: &str, region: &str) -> Result<DnsListener> {
    let key = dns_port_setting(cluster_id, region);
    let kept = state
        .store
        .setting(&key)
        .await?
        .and_then(|v| v.parse::<SocketAddr>().ok());
    if let Some(addr) = kept {
        match DnsListener::bind(addr, None).await {
            Ok(l) => return Ok(l),
            Err(e) => tracing::warn!(
                cluster = %cluster_id, region, %addr, error = %e,
                "the embedded DNS listener's kept address is unavailable; choosing a new port"
            ),
        }
    }
    let l = DnsListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), None)
        .await
        .context("binding an embedded DNS listener on loopback")?;
    state
        .store
        .set_setting(&key, &l.local_addr()?.to_string())
        .await?;
    Ok(l)
}

async fn start_one(state: &AppState, cfg: &EmbeddedConfig, key: &Key) -> Result<RunningGateway> {
    let (cluster_id, region) = key;
    let gw = state
        .store
        .ensure_gateway(
            cluster_id,
            region,
            &gateway_name(region),
            &uuid::Uuid::new_v4().to_string(),
        )
        .await?;
    let token = auth::generate_gateway_token(&gw.id);
    state
        .store
        .set_gateway_token_hash(&gw.id, &auth::hash_secret(&token))
        .await?;
    let proxy = bind_proxy(state, cluster_id, region).await?;
    let dns = bind_dns(state, cluster_id, region).await?;
    let sql_ingress = bind_kept(
        state,
        cluster_id,
        region,
        &ingress_port_setting(cluster_id, region, "sql"),
    )
    .await?;
    let ui_ingress = bind_kept(
        state,
        cluster_id,
        region,
        &ingress_port_setting(cluster_id, region, "ui"),
    )
    .await?;
    let private_ingress = bind_kept(
        state,
        cluster_id,
        region,
        &ingress_port_setting(cluster_id, region, "private"),
    )
    .await?;
    let ingress_addrs = perimeter_api::IngressAddresses {
        sql: sql_ingress.local_addr()?.to_string(),
        ui: ui_ingress.local_addr()?.to_string(),
        public_open: false,
        private: private_ingress.local_addr()?.to_string(),
    };
    let running = RunningGateway::start(
        GatewaySpec {
            control_plane: control_plane_url(cfg.api),
            token,
            region: Some(region.clone()),
            state_dir: cfg.data_dir.join("gateways").join(cluster_id).join(region),
            resolver: cfg.resolver.clone(),
            limits: cfg.limits.clone(),
            poll_wait: Duration::from_secs(25),
            push_interval: cfg.push_interval,
            inspection: cfg.inspection.clone(),
        },
        Listeners {
            proxy,
            transparent: None,
            dns: Some(dns),
            sql_ingress: Some(sql_ingress),
            ui_ingress: Some(ui_ingress),
            private_ingress: Some(private_ingress),
            also_own: vec![cfg.api],
        },
    )?;
    let addr = running.proxy_addr();
    if let Some(dns) = running.dns_addr() {
        state.embedded.set_dns(cluster_id, region, dns.to_string());
    }
    state
        .embedded
        .set_ingress(cluster_id, region, ingress_addrs);
    // The public addresses are shown while the listeners are bound, as the gateway observes.
    let mut open = running.public_ingress_open();
    let (embedded, c, r) = (state.embedded.clone(), cluster_id.clone(), region.clone());
    tokio::spawn(async move {
        loop {
            let now = *open.borrow_and_update();
            embedded.set_public_open(&c, &r, now);
            if open.changed().await.is_err() {
                embedded.set_public_open(&c, &r, false);
                return;
            }
        }
    });
    state.embedded.set(cluster_id, region, addr.to_string());
    tracing::info!(cluster = %cluster_id, %region, %addr, dns = ?running.dns_addr(), gateway = %gw.id, "embedded gateway listening on {addr}");
    Ok(running)
}

async fn stop_one(state: &AppState, key: &Key, gw: RunningGateway) {
    let (cluster_id, region) = key;
    state.embedded.remove(cluster_id, region);
    gw.stop().await;
    if let Err(e) = state
        .store
        .remove_gateway_named(cluster_id, &gateway_name(region))
        .await
    {
        tracing::warn!(cluster = %cluster_id, %region, error = %e, "cannot deregister the embedded gateway");
    }
    tracing::info!(cluster = %cluster_id, %region, "embedded gateway stopped: its region or cluster is gone");
}
