//! `perimeter gateway`: the data plane alone. Pulls the cluster's policy from the control plane
//! (enforcing the last-known-good snapshot in `--state-dir` while it is unreachable, and
//! denying everything when there is none), serves the explicit proxy (and, when asked, the
//! transparent listener and the DNS listener), pushes decision counts,
//! and shuts down cleanly on SIGTERM or Ctrl-C. Its region is the one it is registered in, as
//! the control plane says (kept in `--state-dir`); `--region` only checks it.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use perimeter_gateway::listen::dns_listener::DnsListener;
use perimeter_gateway::runtime::{GatewaySpec, Listeners, RunningGateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::process::{DnsArgs, LimitArgs, LogFormat, init_tracing, shutdown_signal};

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
    /// Address of the transparent listener, for connections that the host's firewall redirects
    /// (e.g. `iptables -t nat -A PREROUTING -i <workload interface> -p tcp -j REDIRECT
    /// --to-ports <port>`). Off unless given.
    #[arg(long)]
    pub transparent_listen: Option<SocketAddr>,
    /// Address of the DNS listener (UDP and TCP), the name service of workloads in transparent
    /// mode: private endpoint names answer the transparent listener's address, names the
    /// policy allows answer the addresses this gateway resolves, every other name is refused
    /// and never forwarded. Off unless given; port 0 picks one.
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// The address the DNS listener answers for private endpoint names: where workloads reach
    /// the transparent listener. Default: the transparent listener's IP when it listens on a
    /// specific address. Without either, endpoint names are refused.
    #[arg(long, requires = "dns_listen")]
    pub dns_answer_address: Option<IpAddr>,
    /// Address of the public SQL ingress listener, in front of the cluster's SQL workload of
    /// this region (`PUT .../workload`): a connection is admitted only when its source lies in
    /// an IP allowlist entry with `sql: true`. Off unless given; port 0 picks one.
    #[arg(long)]
    pub sql_ingress_listen: Option<SocketAddr>,
    /// Address of the public UI ingress listener, as --sql-ingress-listen for entries with
    /// `ui: true`. Off unless given; port 0 picks one.
    #[arg(long)]
    pub ui_ingress_listen: Option<SocketAddr>,
    /// Address of the private ingress listener, where the cluster's private endpoint service
    /// is served: it admits only connections that open with a PROXY protocol v2 header whose
    /// AWS VPC-endpoint TLV names an endpoint with an admitted private endpoint connection, and
    /// forwards them to the SQL workload. The address is reported to the control plane as the
    /// service's backend, so give an IP others can dial (not 0.0.0.0); bind it where only the
    /// load balancer or the other gateways reach it. Off unless given; port 0 picks one.
    #[arg(long)]
    pub private_ingress_listen: Option<SocketAddr>,
    /// The region this gateway is meant to serve, as a check: the gateway learns its region
    /// from its registration (the control plane's answer, kept in --state-dir) and labels its
    /// metrics and decision events with it. When this is given and the registration names
    /// another region, the gateway refuses to start (or stops, once the control plane says
    /// so), naming both. Without it, decisions before the first answer of the control plane
    /// carry an empty region unless a registration is kept.
    #[arg(long)]
    pub region: Option<String>,
    /// Directory of the last-known-good policy.
    #[arg(long, default_value = "./perimeter-gateway")]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub dns: DnsArgs,
    /// Address of the Prometheus metrics endpoint (GET /metrics).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Longest long-poll wait asked of the control plane, in seconds.
    #[arg(long, default_value_t = 25)]
    pub poll_wait_seconds: u64,
    /// How often decision counts are pushed to the control plane, in milliseconds; the bytes of
    /// open private endpoint connections are metered at each push.
    #[arg(long, default_value_t = 5000)]
    pub decisions_push_ms: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PERIMETER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Threads that serve connections (and everything else of the gateway). Default: one per
    /// CPU. With more than 1, each listener is served by as many accept loops, one per thread
    /// with the connections it accepted (an SO_REUSEPORT group of sockets). One thread serves
    /// thousands of tunnels; on a host the gateway shares with its workloads, fewer threads
    /// leave them more of the machine. With 1, the gateway runs a single-threaded runtime and
    /// one accept loop per listener. Log lines are written by a thread of their own either way.
    #[arg(long)]
    pub worker_threads: Option<usize>,
}

pub async fn run(args: GatewayArgs) -> Result<ExitCode> {
    let log = init_tracing(args.log_format)?;
    let resolver = args.dns.resolver()?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;

    let proxy = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the proxy listener on {}", args.listen))?;
    let addr = proxy.local_addr()?;
    let metrics_listener = match args.metrics_listen {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("binding the metrics listener on {m}"))?,
        ),
        None => None,
    };
    let transparent = match args.transparent_listen {
        Some(t) => Some(
            tokio::net::TcpListener::bind(t)
                .await
                .with_context(|| format!("binding the transparent listener on {t}"))?,
        ),
        None => None,
    };
    let transparent_addr = transparent.as_ref().map(|t| t.local_addr()).transpose()?;
    let dns = match args.dns_listen {
        Some(d) => {
            let answer = args.dns_answer_address.or_else(|| {
                transparent_addr
                    .map(|t| t.ip())
                    .filter(|ip| !ip.is_unspecified())
            });
            if answer.is_none() {
                tracing::warn!(
                    "the DNS listener has no address to answer for private endpoint names (no --dns-answer-address, and no --transparent-listen on a specific address): they are refused"
                );
            }
            Some(
                DnsListener::bind(d, answer)
                    .await
                    .with_context(|| format!("binding the DNS listener on {d}"))?,
            )
        }
        None => None,
    };
    let dns_addr = dns.as_ref().map(|d| d.local_addr()).transpose()?;
    let mut ingress = Vec::new();
    if let Some(a) = args.private_ingress_listen
        && a.ip().is_unspecified()
    {
        anyhow::bail!(
            "--private-ingress-listen {a}: give the IP address other gateways dial (its address is the private endpoint service's backend), not an unspecified one"
        );
    }
    for (name, addr) in [
        ("sql", args.sql_ingress_listen),
        ("ui", args.ui_ingress_listen),
        ("private", args.private_ingress_listen),
    ] {
        ingress.push(match addr {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding the {name} ingress listener on {a}"))?,
            ),
            None => None,
        });
    }
    let ingress_addrs: Vec<(&str, SocketAddr)> = ["sql", "ui", "private"]
        .into_iter()
        .zip(&ingress)
        .filter_map(|(n, l)| Some((n, l.as_ref()?.local_addr().ok()?)))
        .collect();
    let private_ingress = ingress.pop().flatten();
    let ui_ingress = ingress.pop().flatten();
    let sql_ingress = ingress.pop().flatten();
    let mut also_own = Vec::new();
    if let Some(l) = &metrics_listener {
        also_own.push(l.local_addr()?);
    }

    let gateway = RunningGateway::start(
        GatewaySpec {
            control_plane: args.control_plane.clone(),
            token: args.token.clone(),
            region: args.region.clone(),
            state_dir: args.state_dir.clone(),
            resolver,
            limits: args.limits.limits(),
            poll_wait: Duration::from_secs(args.poll_wait_seconds),
            push_interval: Duration::from_millis(args.decisions_push_ms),
            inspection: args.limits.inspection()?,
        },
        Listeners {
            proxy,
            transparent,
            dns,
            sql_ingress,
            ui_ingress,
            private_ingress,
            also_own,
        },
    )
    .context("starting the gateway")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let metrics_task = metrics_listener.map(|l| {
        let addr = l.local_addr().ok();
        tracing::info!(addr = ?addr, "metrics on http://{}/metrics", addr.map(|a| a.to_string()).unwrap_or_default());
        if let Some(a) = addr {
            eprintln!("perimeter: gateway metrics on http://{a}/metrics");
        }
        let mut rx = stop_rx.clone();
        tokio::spawn(serve_metrics(l, metrics, async move {
            let _ = rx.wait_for(|s| *s).await;
        }))
    });

    if let Some(d) = dns_addr {
        tracing::info!(addr = %d, "DNS listener on {d} (UDP and TCP)");
        eprintln!("perimeter: gateway DNS listener on {d}");
    }
    for (name, a) in &ingress_addrs {
        tracing::info!(addr = %a, "{name} ingress listener on {a}");
        eprintln!("perimeter: gateway {name} ingress listener on {a}");
    }
    // The transparent listener first: "gateway listening on" is the line that says all is up.
    if let Some(t) = transparent_addr {
        tracing::info!(addr = %t, "transparent listener on {t}");
        eprintln!("perimeter: gateway transparent listener on {t}");
    }
    tracing::info!(%addr, "gateway listening on {addr}");
    // The line that says all is up comes after every line logged before it.
    log.flush();
    eprintln!("perimeter: gateway listening on {addr}");

    let failure = tokio::select! {
        _ = shutdown_signal() => None,
        e = gateway.failed() => Some(e),
    };
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    gateway.stop().await;
    if let Some(t) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    tracing::info!("stopped");
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => Err(anyhow::Error::new(e).context("--region does not match the registration")),
    }
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
