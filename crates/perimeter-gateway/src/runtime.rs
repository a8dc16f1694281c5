//! One running gateway: policy sync, the listeners and the decision push, started together and
//! stopped together. `perimeter gateway` runs one; `perimeter serve` runs one per cluster region.
//! A gateway whose registration names another region than the one it was started for does not
//! start, or, when the control plane says so after the start, reports it in
//! [`RunningGateway::failed`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::control_plane::ControlPlane;
use crate::decision::{DecisionSink, push_loop};
use crate::dns::Resolver;
use crate::listen::dns_listener::DnsListener;
use crate::listen::{self, GatewayLimits, ProxyContext};
use crate::registration::RegionMismatch;
use crate::sync::{PolicySync, SyncConfig};

/// What a gateway needs besides its listeners.
#[derive(Clone)]
pub struct GatewaySpec {
    /// Base URL of the control plane, e.g. `http://127.0.0.1:8080`.
    pub control_plane: String,
    /// The gateway's token (`PRGW.<id>.<secret>`).
    pub token: String,
    /// The region the gateway is started for, when the caller knows it (`perimeter serve`
    /// registers its embedded gateways itself). The registration the control plane holds must
    /// name the same region. Decisions are labelled with the registration's region; this one
    /// labels them only until the registration is known.
    pub region: Option<String>,
    /// Directory of the last-known-good policy.
    pub state_dir: PathBuf,
    pub resolver: Arc<Resolver>,
    pub limits: GatewayLimits,
    /// Longest long-poll wait asked of the control plane.
    pub poll_wait: Duration,
    /// How often decision counts are pushed.
    pub push_interval: Duration,
    /// TLS inspection's roots for upstream certificates (the system's and `--upstream-ca-file`),
    /// shared by the gateways of a process.
    pub inspection: Arc<crate::listen::inspect::InspectionState>,
}

/// The listeners of one gateway.
pub struct Listeners {
    /// The explicit proxy (`HTTPS_PROXY` / `HTTP_PROXY`).
    pub proxy: TcpListener,
    /// The transparent listener, for connections the host's firewall redirects.
    pub transparent: Option<TcpListener>,
    /// The DNS listener (UDP and TCP), for workloads in transparent mode.
    pub dns: Option<DnsListener>,
    /// The public ingress listeners (`sql`, `ui`), in front of the cluster's workload.
    pub sql_ingress: Option<TcpListener>,
    pub ui_ingress: Option<TcpListener>,
    /// The private ingress listener, where the cluster's private endpoint service is served;
    /// its address is reported to the control plane with every acknowledgement (it is what
    /// other clusters' forwarders dial).
    pub private_ingress: Option<TcpListener>,
    /// Further addresses of this process that the address guard must treat as the gateway's
    /// own (a metrics listener, the control plane's API of `perimeter serve`).
    pub also_own: Vec<SocketAddr>,
}

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("reading the listeners' addresses: {0}")]
    Listener(#[from] std::io::Error),
    #[error(transparent)]
    Registration(#[from] RegionMismatch),
    #[error("building the control plane's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// A started gateway; dropping it does not stop it, [`RunningGateway::stop`] does.
pub struct RunningGateway {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    proxy_addr: SocketAddr,
    dns_addr: Option<SocketAddr>,
    private_ingress_addr: Option<SocketAddr>,
    public_ingress_open: watch::Receiver<bool>,
    failure: watch::Receiver<Option<RegionMismatch>>,
}

impl RunningGateway {
    /// Start syncing and serving. The first policy is the last-known-good one in the state
    /// directory, or none (deny everything) until the control plane answers. Refuses to start
    /// when the registration kept in the state directory names another region than
    /// `spec.region`.
    pub fn start(spec: GatewaySpec, listeners: Listeners) -> Result<Self, StartError> {
        let proxy_addr = listeners.proxy.local_addr()?;
        let dns_addr = listeners.dns.as_ref().map(|d| d.local_addr()).transpose()?;
        let mut bound = vec![proxy_addr];
        if let Some(t) = &listeners.transparent {
            bound.push(t.local_addr()?);
        }
        if let Some(d) = &listeners.dns {
            bound.push(d.local_addr()?);
        }
        for l in [
            &listeners.sql_ingress,
            &listeners.ui_ingress,
            &listeners.private_ingress,
        ]
        .into_iter()
        .flatten()
        {
            bound.push(l.local_addr()?);
        }
        let private_ingress_addr = listeners
            .private_ingress
            .as_ref()
            .map(|l| l.local_addr())
            .transpose()?;
        bound.extend(listeners.also_own.iter().copied());

        let sink = DecisionSink::new(String::new());
        let wait = spec
            .poll_wait
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let control_plane = Arc::new(ControlPlane::new(&spec.control_plane, &spec.token, wait)?);
        let (sync, snapshots) = PolicySync::new(
            SyncConfig {
                state_dir: spec.state_dir.clone(),
                wait,
                expected_region: spec.region.clone(),
                private_ingress_address: private_ingress_addr.map(|a| a.to_string()),
            },
            control_plane.clone(),
            sink.clone(),
        )?;
        let ctx = ProxyContext {
            endpoint_answer: listeners.dns.as_ref().and_then(|d| d.answer),
            snapshots,
            resolver: spec.resolver.clone(),
            limits: spec.limits.clone(),
            sink: sink.clone(),
            own: listen::OwnAddresses::watched(&bound),
            inspection: spec.inspection.clone(),
        };

        let (stop, stop_rx) = watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let (failed, failure) = watch::channel(None);
        let sync_task = sync.run(stopped());
        let mut tasks = vec![
            (
                "policy sync",
                tokio::spawn(async move {
                    if let Err(e) = sync_task.await {
                        let _ = failed.send(Some(e));
                    }
                }),
            ),
            (
                "decision push",
                tokio::spawn(push_loop(
                    sink,
                    control_plane,
                    spec.push_interval.max(Duration::from_millis(100)),
                    stopped(),
                )),
            ),
            (
                "proxy listener",
                tokio::spawn(logged(
                    "proxy listener",
                    listen::serve(listeners.proxy, ctx.clone(), stopped()),
                )),
            ),
        ];
        if let Some(d) = listeners.dns {
            tasks.push((
                "DNS listener",
                tokio::spawn(logged(
                    "DNS listener",
                    listen::dns_listener::serve_dns(d, ctx.clone(), stopped()),
                )),
            ));
        }
        // Both public listeners open and close together, with the snapshot's visibility.
        let (public_open, public_ingress_open) = watch::channel(false);
        let mut opens = Vec::new();
        for (name, socket, listener) in [
            (
                "sql ingress listener",
                listeners.sql_ingress,
                perimeter_policy::IngressListener::Sql,
            ),
            (
                "ui ingress listener",
                listeners.ui_ingress,
                perimeter_policy::IngressListener::Ui,
            ),
        ] {
            if let Some(l) = socket {
                let (open, watched) = watch::channel(false);
                opens.push(watched);
                tasks.push((
                    name,
                    tokio::spawn(logged(
                        name,
                        listen::serve_public_ingress(l, listener, ctx.clone(), stopped(), open),
                    )),
                ));
            }
        }
        if !opens.is_empty() {
            let done = stopped();
            tasks.push((
                "public ingress state",
                tokio::spawn(async move {
                    tokio::pin!(done);
                    loop {
                        let all = opens.iter_mut().all(|o| *o.borrow_and_update());
                        public_open.send_if_modified(|v| std::mem::replace(v, all) != all);
                        // One or two listeners: wait for either to change.
                        let (first, rest) = opens.split_at_mut(1);
                        let second = async {
                            match rest.first_mut() {
                                Some(o) => o.changed().await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            r = first[0].changed() => if r.is_err() { return },
                            r = second => if r.is_err() { return },
                            _ = &mut done => return,
                        }
                    }
                }),
            ));
        }
        if let Some(l) = listeners.private_ingress {
            tasks.push((
                "private ingress listener",
                tokio::spawn(logged(
                    "private ingress listener",
                    listen::serve_private_ingress(l, ctx.clone(), stopped()),
                )),
            ));
        }
        if let Some(t) = listeners.transparent {
            tasks.push((
                "transparent listener",
                tokio::spawn(logged(
                    "transparent listener",
                    listen::serve_transparent(t, ctx, stopped()),
                )),
            ));
        }
        Ok(Self {
            stop,
            tasks,
            proxy_addr,
            dns_addr,
            private_ingress_addr,
            public_ingress_open,
            failure,
        })
    }

    /// Resolves if the gateway cannot go on: the control plane says it is registered in
    /// another region than it was started for (its policy sync has stopped). Pending forever
    /// otherwise.
    pub async fn failed(&self) -> RegionMismatch {
        let mut rx = self.failure.clone();
        if let Ok(f) = rx.wait_for(Option::is_some).await
            && let Some(e) = f.clone()
        {
            return e;
        }
        // The sync ended without failing: nothing will be reported.
        std::future::pending().await
    }

    /// Where the explicit proxy listens.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    /// Where the private ingress listener listens, if there is one.
    pub fn private_ingress_addr(&self) -> Option<SocketAddr> {
        self.private_ingress_addr
    }

    /// Whether the public ingress listeners are bound and served (false while the snapshot's
    /// `network_visibility` is `PRIVATE`, and for a gateway without them).
    pub fn public_ingress_open(&self) -> watch::Receiver<bool> {
        self.public_ingress_open.clone()
    }

    /// Where the DNS listener listens (UDP and TCP), if there is one.
    pub fn dns_addr(&self) -> Option<SocketAddr> {
        self.dns_addr
    }

    /// Stop every task: listeners first, then the sync, then a last push of decision counts.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (what, task) in self.tasks {
            // The push makes one last attempt, bounded by its own HTTP timeout.
            if tokio::time::timeout(Duration::from_secs(12), task)
                .await
                .is_err()
            {
                tracing::warn!(task = what, "gateway task did not stop in time");
            }
        }
    }
}

/// Run a listener, logging how it ended if it failed.
async fn logged(what: &'static str, f: impl std::future::Future<Output = std::io::Result<()>>) {
    if let Err(e) = f.await {
        tracing::error!(listener = what, error = %e, "listener failed");
    }
}
