//! `perimeter gateway`: the data plane alone. Pulls the cluster's policy from the control plane
//! (enforcing the last-known-good snapshot in `--state-dir` while it is unreachable, and
//! denying everything when there is none), serves the explicit proxy, pushes decision counts,
//! and shuts down cleanly on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use perimeter_gateway::decision::{DecisionSink, PushConfig, push_loop};
use perimeter_gateway::dns::{Resolver, ResolverConfig};
use perimeter_gateway::listen::{self, GatewayLimits, ProxyContext};
use perimeter_gateway::sync::{PolicySync, SyncConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::process::{LogFormat, init_tracing, shutdown_signal};

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Base URL of the control plane, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "PERIMETER_CONTROL_PLANE")]
    pub control_plane: String,
    /// The gateway's token, from `POST /api/v1/clusters/{id}/gateways`.
    #[arg(long, env = "PERIMETER_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Address of the explicit proxy (HTTPS_PROXY / HTTP_PROXY); port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:3128")]
    pub listen: SocketAddr,
    /// Region label of metrics and decision events.
    #[arg(long, default_value = "default")]
    pub region: String,
    /// Directory of the last-known-good policy.
    #[arg(long, default_value = "./perimeter-gateway")]
    pub state_dir: PathBuf,
    /// DNS server (ip or ip:port) the gateway resolves with; repeat for several. Default: the
    /// system's.
    #[arg(long = "dns-server")]
    pub dns_servers: Vec<String>,
    /// A hosts file consulted before DNS.
    #[arg(long)]
    pub hosts_file: Option<PathBuf>,
    /// Longest DNS resolution, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub dns_timeout_ms: u64,
    /// Address of the Prometheus metrics endpoint (GET /metrics).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Longest long-poll wait asked of the control plane, in seconds.
    #[arg(long, default_value_t = 25)]
    pub poll_wait_seconds: u64,
    /// How often decision counts are pushed to the control plane, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub decisions_push_ms: u64,
    /// Idle timeout of tunnels, in seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_seconds: u64,
    /// Most client connections served at once.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PERIMETER_LOG_FORMAT")]
    pub log_format: LogFormat,
}

fn parse_dns_server(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: std::net::IpAddr = s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .with_context(|| format!("--dns-server {s:?}: give an IP address or ip:port"))?;
    Ok(SocketAddr::new(ip, 53))
}

pub async fn run(args: GatewayArgs) -> Result<ExitCode> {
    init_tracing(args.log_format);
    let servers = args
        .dns_servers
        .iter()
        .map(|s| parse_dns_server(s))
        .collect::<Result<Vec<_>>>()?;
    let resolver = Resolver::new(ResolverConfig {
        servers,
        hosts_file: args.hosts_file.clone(),
        timeout: Duration::from_millis(args.dns_timeout_ms.max(1)),
    })
    .context("setting up the DNS resolver")?;

    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;

    let (sync, snapshots) = PolicySync::new(SyncConfig {
        control_plane: args.control_plane.clone(),
        token: args.token.clone(),
        state_dir: args.state_dir.clone(),
        wait: Duration::from_secs(args.poll_wait_seconds.clamp(1, 60)),
    });

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the proxy listener on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut bound = vec![addr];

    let metrics_listener = match args.metrics_listen {
        Some(m) => {
            let l = tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("binding the metrics listener on {m}"))?;
            bound.push(l.local_addr()?);
            Some(l)
        }
        None => None,
    };

    let sink = DecisionSink::new(args.region.clone());
    let ctx = ProxyContext {
        snapshots,
        resolver: Arc::new(resolver),
        limits: GatewayLimits {
            idle_timeout: Duration::from_secs(args.idle_timeout_seconds.max(1)),
            max_connections: args.max_connections.max(1),
            ..GatewayLimits::default()
        },
        sink: sink.clone(),
        own_addrs: Arc::new(listen::own_addresses(&bound)),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let sync_task = tokio::spawn(sync.run(stopped()));
    let push_task = tokio::spawn(push_loop(
        sink,
        PushConfig {
            control_plane: args.control_plane.clone(),
            token: args.token.clone(),
            interval: Duration::from_millis(args.decisions_push_ms.max(100)),
        },
        stopped(),
    ));
    let metrics_task = metrics_listener.map(|l| {
        let addr = l.local_addr().ok();
        tracing::info!(addr = ?addr, "metrics on http://{}/metrics", addr.map(|a| a.to_string()).unwrap_or_default());
        if let Some(a) = addr {
            eprintln!("perimeter: gateway metrics on http://{a}/metrics");
        }
        tokio::spawn(serve_metrics(l, metrics, stopped()))
    });

    tracing::info!(%addr, region = %args.region, "gateway listening on {addr}");
    eprintln!("perimeter: gateway listening on {addr}");
    let proxy_task = tokio::spawn(listen::serve(listener, ctx, stopped()));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), proxy_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), sync_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(12), push_task).await;
    if let Some(t) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// A minimal HTTP/1 endpoint answering every request with the Prometheus rendering.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async move {
                // Read the request head (bounded), ignore it, answer with the metrics.
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while n < buf.len() {
                    let m = stream.read(&mut buf[n..]).await?;
                    if m == 0 {
                        break;
                    }
                    n += m;
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let body = handle.render();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
                stream.shutdown().await
            })
            .await;
        });
    }
}
