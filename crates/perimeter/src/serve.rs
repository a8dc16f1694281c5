//! `perimeter serve`: open the store, bootstrap the admin, run the API and the reconciler, and
//! shut down cleanly on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::embedded::{self, EmbeddedConfig};
use crate::process::{DnsArgs, LimitArgs, LogFormat, init_tracing, shutdown_signal};
use perimeter_api::reconcile::{Reconciler, ReconcilerConfig};
use perimeter_api::resolve::{NameResolver, ResolveError, ResolveFuture};
use perimeter_api::{AppState, auth};
use perimeter_store::{Durability, RoleBinding, Store};
use tokio::sync::watch;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8080", env = "PERIMETER_LISTEN")]
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite store and the bootstrap admin key.
    #[arg(long, default_value = "./perimeter-data", env = "PERIMETER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The 32-byte master key that seals secrets at rest (each cluster's TLS inspection CA key).
    /// Created with random bytes at mode 0600 when missing; default `<data-dir>/secrets-key`.
    /// Every replica sharing one PostgreSQL database must use the same key file: a replica with
    /// another key cannot publish the snapshots of clusters that have TLS inspection on.
    #[arg(long, env = "PERIMETER_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Use PostgreSQL (or CockroachDB) instead of the embedded store: postgres://user@host:port/db
    #[arg(long, env = "PERIMETER_DATABASE_URL")]
    pub database_url: Option<String>,
    /// SQLite durability: `full` fsyncs every commit; `normal` survives crashes but not power loss.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    pub durability: DurabilityArg,
    /// Requests per second allowed per API key (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub rate_limit_per_key: u32,
    /// Most egress rules a cluster may hold (each change ships them all to every gateway).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rules_per_cluster: u64,
    /// Most egress private endpoints a cluster may hold.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_endpoints_per_cluster: u64,
    /// Most IP allowlist entries a cluster may hold.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_allowlist_entries_per_cluster: u64,
    /// Most clusters the organization may hold (deleted ones do not count).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_clusters: u64,
    /// Most connections the API serves at once; past that a client gets 503 and is closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub api_max_connections: u64,
    /// Seconds a client has to send a whole request head (a slow client is cut).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub api_header_timeout_seconds: u64,
    /// Seconds a request may take, its body included (503 past it); above the gateways'
    /// 60 s snapshot long-poll.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(61..=86_400))]
    pub api_request_timeout_seconds: u64,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PERIMETER_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Longest pause of the reconciler between scans, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub reconcile_interval_ms: u64,
    /// How long a change may take to reach every live gateway before a rule applied by only
    /// some of them reads INCONSISTENT (and a network visibility change lets go of the cluster
    /// lock), in seconds.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub propagation_deadline_seconds: u64,
    /// How long an accepted egress private endpoint may wait for every live gateway of its
    /// region to serve its forwarder (and a deletion or domain name change to reach them)
    /// before it reads FAILED, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub provision_timeout_seconds: u64,
    /// Do not serve the networking console at `/console` (the REST API stays).
    #[arg(long)]
    pub no_console: bool,
    /// How often the embedded gateways push their decision counts (what `egress-decisions`
    /// and the console's live decisions show), in milliseconds; the bytes of open private
    /// endpoint connections are metered at each push.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=3_600_000))]
    pub decisions_push_ms: u64,
    /// Run no gateways in this process (deployments that run `perimeter gateway` processes).
    /// By default one gateway per region of every cluster listens on loopback; its address is
    /// the region's `egress_proxy_address`.
    #[arg(long)]
    pub no_embedded_gateways: bool,
    /// On PostgreSQL, do not follow the store's change notifications (LISTEN/NOTIFY), e.g.
    /// behind a pooler in transaction mode, where LISTEN does not work: snapshot long-polls then
    /// read the store every second to see changes made through other replicas. Notifications
    /// are used by default; on a database without them (CockroachDB) this is automatic.
    #[arg(long)]
    pub no_store_notifications: bool,
    /// Who carries private endpoints: `local` (the gateways themselves; nothing else needed)
    /// or `aws` (interface VPC endpoints, Route 53 private hosted zones and VPC endpoint
    /// services in the platform's VPCs, named by --provider-config; credentials from the
    /// standard AWS chain).
    #[arg(long, value_enum, default_value_t = ProviderArg::Local, env = "PERIMETER_PROVIDER")]
    pub provider: ProviderArg,
    /// The `aws` provider's configuration (TOML): the platform VPC, subnets, security groups
    /// and ingress network load balancers of each region, and an optional `endpoint_url`.
    #[arg(long, env = "PERIMETER_PROVIDER_CONFIG")]
    pub provider_config: Option<PathBuf>,
    /// How often the `aws` provider's resources on their way (pending, not yet in sync) are
    /// described again, in milliseconds.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub provider_poll_ms: u64,
    /// How often the `aws` provider's AVAILABLE endpoints are described again, so that a
    /// change at AWS (rejected by the service's owner, deleted outside Perimeter) shows, in
    /// seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub provider_refresh_seconds: u64,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub gateway_limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    Local,
    Aws,
}

/// The `aws` provider from `--provider-config`, checked whole before anything starts; `None`
/// on `local`.
async fn provider(args: &ServeArgs) -> Result<Option<Arc<perimeter_aws::AwsProvider>>> {
    match (args.provider, &args.provider_config) {
        (ProviderArg::Local, None) => Ok(None),
        (ProviderArg::Local, Some(_)) => anyhow::bail!(
            "--provider-config is the aws provider's configuration: add --provider aws, or drop it"
        ),
        (ProviderArg::Aws, None) => anyhow::bail!(
            "--provider aws needs --provider-config FILE: the platform VPC, subnets, security groups and network load balancers of each region"
        ),
        (ProviderArg::Aws, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--provider-config {}", path.display()))?;
            let config = perimeter_aws::ProviderConfig::parse(&text).map_err(|e| {
                let key = if e.key.is_empty() {
                    String::new()
                } else {
                    format!(" key {}:", e.key)
                };
                anyhow::anyhow!("--provider-config {}:{key} {}", path.display(), e.message)
            })?;
            tracing::info!(regions = ?config.regions.keys().collect::<Vec<_>>(), endpoint_url = ?config.endpoint_url, "aws provider configured");
            Ok(Some(Arc::new(
                perimeter_aws::AwsProvider::connect(config, perimeter_aws::Retries::default())
                    .await,
            )))
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DurabilityArg {
    Full,
    Normal,
}

pub async fn run(args: ServeArgs) -> Result<ExitCode> {
    let log = init_tracing(args.log_format)?;
    let aws = provider(&args).await?;
    // The database, the secrets key and the gateways' state: the data directory is its
    // owner's alone.
    perimeter_gateway::sync::private_dir(&args.data_dir)
        .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    let secrets_key_file = args
        .secrets_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("secrets-key"));
    let secrets = perimeter_api::secrets::SecretsKey::load_or_create(&secrets_key_file)
        .with_context(|| {
            format!(
                "--secrets-key-file {}: the master key sealing secrets at rest",
                secrets_key_file.display()
            )
        })?;
    let store = match &args.database_url {
        Some(url) => Store::open_postgres(url)
            .await
            .context("opening the PostgreSQL store")?,
        None => {
            let durability = match args.durability {
                DurabilityArg::Full => Durability::Full,
                DurabilityArg::Normal => Durability::Normal,
            };
            Store::open_sqlite(&args.data_dir, durability)
                .await
                .context("opening the SQLite store")?
        }
    };
    let store = store.with_limits(perimeter_store::Limits {
        rules_per_cluster: args.max_rules_per_cluster,
        endpoints_per_cluster: args.max_endpoints_per_cluster,
        allowlist_per_cluster: args.max_allowlist_entries_per_cluster,
        clusters: args.max_clusters,
    });
    let store = store.with_provider(match aws {
        Some(_) => perimeter_store::AWS_PROVIDER,
        None => perimeter_store::LOCAL_PROVIDER,
    });
    let where_ = match &args.database_url {
        Some(_) => "PostgreSQL".to_string(),
        None => format!("SQLite at {}", args.data_dir.join("perimeter.db").display()),
    };
    tracing::info!(store = %where_, "store ready");
    bootstrap(&store, &args.data_dir).await?;
    let resolver = args.dns.resolver()?;

    let metrics = perimeter_api::install_metrics().context("installing the metrics recorder")?;
    // egress-check resolves names as the embedded gateways do: same servers, same hosts file.
    let state = AppState::new(store.clone())
        .with_rate_limit(Some(args.rate_limit_per_key))
        .with_metrics(metrics)
        .with_resolver(Arc::new(GatewayNames(resolver.clone())))
        .with_secrets_key(Arc::new(secrets))
        .with_console(!args.no_console);

    let (stop_tx, stop_rx) = watch::channel(false);
    // Changes made through other replicas sharing PostgreSQL wake this one's long-polls.
    if !args.no_store_notifications {
        let mut rx = stop_rx.clone();
        tokio::spawn(perimeter_api::changes::follow(state.clone(), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
    }
    let reconciler = Reconciler::new(
        store.clone(),
        state.reconcile.clone(),
        ReconcilerConfig {
            interval: Duration::from_millis(args.reconcile_interval_ms.max(10)),
            propagation_deadline: Duration::from_secs(args.propagation_deadline_seconds),
            provision_timeout: Duration::from_secs(args.provision_timeout_seconds),
            provider_poll: Duration::from_millis(args.provider_poll_ms),
            provider_refresh: Duration::from_secs(args.provider_refresh_seconds),
            ..Default::default()
        },
    );
    let reconciler = match &aws {
        Some(aws) => reconciler.with_aws(aws.clone()),
        None => reconciler,
    };
    let mut rx = stop_rx.clone();
    let reconcile_task = tokio::spawn(reconciler.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the API listener on {}", args.listen))?;
    let addr = listener.local_addr()?;
    state.add_api_listener(addr);
    tracing::info!(%addr, "control plane listening on http://{addr}");
    // The line that says all is up comes after every line logged before it.
    log.flush();
    eprintln!("perimeter: control plane listening on http://{addr}");
    if !args.no_console {
        eprintln!("perimeter: the console is at http://{addr}/console (sign in with an API key)");
    }

    // Embedded gateways stop before the API, so their last decision push still lands.
    let (embedded_stop, embedded_stop_rx) = watch::channel(false);
    let embedded_task = if args.no_embedded_gateways {
        None
    } else {
        state.embedded.enable();
        Some(tokio::spawn(embedded::supervise(
            state.clone(),
            EmbeddedConfig {
                api: addr,
                data_dir: args.data_dir.clone(),
                resolver,
                limits: args.gateway_limits.limits(),
                inspection: args.gateway_limits.inspection()?,
                scan_interval: Duration::from_secs(1),
                push_interval: Duration::from_millis(args.decisions_push_ms),
            },
            embedded_stop_rx,
        )))
    };

    let mut rx = stop_rx.clone();
    let limits = perimeter_api::server::ServerLimits {
        max_connections: args.api_max_connections as usize,
        header_timeout: Duration::from_secs(args.api_header_timeout_seconds),
        request_timeout: Duration::from_secs(args.api_request_timeout_seconds),
    };
    let server_task = tokio::spawn(perimeter_api::serve_with(
        listener,
        state,
        limits,
        async move {
            let _ = rx.wait_for(|s| *s).await;
        },
    ));

    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = embedded_stop.send(true);
    if let Some(t) = embedded_task {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(10), server_task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "API server task failed"),
        Err(_) => tracing::warn!("API server did not drain within 10 s"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), reconcile_task).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// On an empty store create the `admin` service account (ORG_ADMIN, CLUSTER_ADMIN and
/// PLATFORM_OPERATOR at organization scope) with one API key: `$PERIMETER_ADMIN_API_KEY` when set,
/// else a generated secret written once to `<data-dir>/admin-api-key` (mode 0600).
async fn bootstrap(store: &Store, data_dir: &Path) -> Result<()> {
    let env_secret = std::env::var("PERIMETER_ADMIN_API_KEY")
        .ok()
        .filter(|s| !s.is_empty());
    if !store.is_empty().await? {
        if env_secret.is_some() {
            tracing::info!(
                "PERIMETER_ADMIN_API_KEY is ignored: the store already has its admin; the stored key keeps working"
            );
        }
        return Ok(());
    }
    let (secret, from_env) = match env_secret {
        Some(s) => {
            if s.len() < 16 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                anyhow::bail!(
                    "PERIMETER_ADMIN_API_KEY must be at least 16 characters without spaces"
                );
            }
            (s, true)
        }
        None => (auth::generate_key().1, false),
    };
    let key_id = auth::key_id_for(&secret);
    let roles: Vec<RoleBinding> = [
        auth::ORG_ADMIN,
        auth::CLUSTER_ADMIN,
        auth::PLATFORM_OPERATOR,
    ]
    .iter()
    .map(|r| RoleBinding {
        role: r.to_string(),
        resource_type: "ORGANIZATION".into(),
        resource_id: String::new(),
    })
    .collect();
    let path = data_dir.join("admin-api-key");
    if !from_env {
        write_secret_file(&path, &secret)?;
    }
    if !store
        .bootstrap_admin(&roles, &key_id, &auth::hash_secret(&secret))
        .await?
    {
        // Another replica bootstrapped first.
        if !from_env {
            let _ = std::fs::remove_file(&path);
        }
        return Ok(());
    }
    if from_env {
        eprintln!(
            "perimeter: created service account admin with the API key from PERIMETER_ADMIN_API_KEY"
        );
    } else {
        eprintln!(
            "perimeter: created service account admin; its API key is in {}",
            path.display()
        );
    }
    Ok(())
}

fn write_secret_file(path: &Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// The gateways' resolver, answering the name resolution of egress-check.
struct GatewayNames(Arc<perimeter_gateway::Resolver>);

impl NameResolver for GatewayNames {
    fn resolve<'a>(&'a self, name: &'a perimeter_policy::Hostname) -> ResolveFuture<'a> {
        Box::pin(async move {
            self.0.resolve(name).await.map_err(|e| ResolveError {
                reason: e.reason(),
                message: e.to_string(),
            })
        })
    }
}
