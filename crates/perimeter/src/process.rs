//! What `serve` and `gateway` share as processes: logging, shutdown signals, and the flags of
//! gateways (name resolution, limits).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::ValueEnum;
use perimeter_gateway::dns::{Resolver, ResolverConfig};
use perimeter_gateway::listen::GatewayLimits;

use crate::logwriter::{LogGuard, batch_writer};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Install the log: lines to stderr, `PERIMETER_LOG` sets the filter (default `info`). A writer
/// thread writes them in batches ([`crate::logwriter`]): a gateway logs a decision per
/// connection, and one write(2) and one thread wakeup per line would be a system call and a
/// context switch more per connection. None is dropped; a line waits at most
/// [`crate::logwriter::GATHER`] before it is written. Keep the guard until the process ends:
/// dropping it writes what is left.
pub fn init_tracing(format: LogFormat) -> Result<LogGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PERIMETER_LOG")
        // hickory-server logs every DNS request at info; the DNS listener's decision events say
        // the same in the project's terms.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("info,sqlx=warn,hickory_server=warn")
        });
    let (writer, guard) =
        batch_writer(std::io::stderr, "perimeter-log").context("starting the log's writer")?;
    // Colours only for a terminal: a log file or journal gets plain lines (and a gateway's
    // decision line per connection is cheaper to write).
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(guard)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Name resolution of gateways, on `gateway` and on `serve` (for its embedded gateways, and for
/// egress-check, which resolves names as they do).
#[derive(Debug, Clone, clap::Args)]
pub struct DnsArgs {
    /// DNS server (ip or ip:port) the gateways resolve with (on `serve`: its embedded gateways
    /// and egress-check); repeat for several. Default: the system's (resolv.conf).
    #[arg(long = "dns-server")]
    pub dns_servers: Vec<String>,
    /// A hosts file of static name-to-address entries, consulted before DNS.
    #[arg(long)]
    pub hosts_file: Option<PathBuf>,
    /// Longest DNS resolution, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub dns_timeout_ms: u64,
}

impl DnsArgs {
    pub fn resolver(&self) -> Result<Arc<Resolver>> {
        let servers = self
            .dns_servers
            .iter()
            .map(|s| parse_dns_server(s))
            .collect::<Result<Vec<_>>>()?;
        let resolver = Resolver::new(ResolverConfig {
            servers,
            hosts_file: self.hosts_file.clone(),
            timeout: Duration::from_millis(self.dns_timeout_ms.max(1)),
        })
        .context("setting up the DNS resolver")?;
        Ok(Arc::new(resolver))
    }
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

/// Limits of gateways facing untrusted workloads, on `gateway` and on `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Idle timeout of tunnels and admitted ingress connections, in seconds.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_seconds: u64,
    /// Most client connections served at once, per gateway.
    #[arg(long, default_value_t = 4096)]
    pub max_connections: usize,
    /// Longest time a client may take to send a request head, in seconds (slowloris).
    #[arg(long, default_value_t = 10)]
    pub header_timeout_seconds: u64,
    /// Largest request head, in bytes (at least 8192).
    #[arg(long, default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Transparent listener: milliseconds of silence after which a client is taken to wait
    /// for the server to speak first (SMTP, MySQL, FTP), and its original address is dialled.
    #[arg(long, default_value_t = 1000)]
    pub server_first_after_ms: u64,
    /// A load balancer (CIDR, repeatable) whose PROXY protocol v1/v2 header the public ingress
    /// listeners honour: its connections must open with one, within the header timeout, and
    /// the allowlist judges the client the header names. Any other peer is judged by its own
    /// address and refused if it opens with a PROXY header.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxies: Vec<perimeter_policy::Cidr>,
    /// TLS inspection: certificates (PEM) trusted for inspected upstreams besides the system's
    /// roots, for services with a private CA.
    #[arg(long)]
    pub upstream_ca_file: Option<PathBuf>,
}

impl LimitArgs {
    pub fn limits(&self) -> GatewayLimits {
        GatewayLimits {
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds.max(1)),
            max_connections: self.max_connections.max(1),
            header_read_timeout: Duration::from_secs(self.header_timeout_seconds.max(1)),
            max_header_bytes: self.max_header_bytes.max(8192),
            server_first_after: Duration::from_millis(self.server_first_after_ms),
            trusted_proxies: self.trusted_proxies.clone().into(),
            ..GatewayLimits::default()
        }
    }

    /// The roots inspected upstreams are verified against.
    pub fn inspection(&self) -> Result<Arc<perimeter_gateway::listen::inspect::InspectionState>> {
        Ok(Arc::new(
            perimeter_gateway::listen::inspect::InspectionState::with_extra_roots(
                self.upstream_ca_file.as_deref(),
            )?,
        ))
    }
}
