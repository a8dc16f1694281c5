//! The reconciler: drives every asynchronous state from observation.
//!
//! Work is claimed through leases in the store, one conditional update per item, so any number
//! of `perimeter serve` replicas on one database never drive one operation twice; every step is
//! also conditional on the state it starts from, so a step taken on stale data writes nothing.
//!
//! Egress private endpoints on the `local` provider:
//! 1. `PENDING`, no connection yet: no service of that name in the region -> `FAILED`; a service
//!    that accepts the cluster's account (no acceptance required, or auto-accepted) -> connection
//!    `AVAILABLE`, endpoint stays `PENDING` until its forwarder listens; otherwise connection and
//!    endpoint `PENDING_ACCEPTANCE` with the service's deadline.
//! 2. `PENDING_ACCEPTANCE`: accepted -> `PENDING` (forwarder next); rejected -> `REJECTED`;
//!    deadline passed -> `EXPIRED`.
//! 3. `DELETING`: connection `DELETED`, endpoint gone.
//!
//! The forwarder is part of the gateway; until a gateway reports one listening, an accepted
//! endpoint honestly stays `PENDING`.
//!
//! What the `aws` provider carries (endpoints created while `serve --provider aws` ran, and
//! that cluster's private endpoint services) follows AWS's answers instead: [`aws`]. Each such
//! item is looked at again after `provider_poll` while it is on its way, and after a growing
//! backoff when AWS throttles or fails transiently; a change of its state ends either wait.
//!
//! Propagation (rules, traffic policy, allowlist), from gateways' acknowledgements: every change
//! carries the snapshot version it was made at. Among the cluster's *live* gateways (seen within
//! the liveness window): all applied that version -> `ACTIVE` (a deleted rule is removed, the
//! policy leaves `UPDATING`, the allowlist stops `propagating`); past the propagation deadline
//! with some applied and others not -> `INCONSISTENT`; failed everywhere it was tried and
//! applied nowhere -> `*_FAILED`. With no live gateway nothing is observed and nothing moves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perimeter_aws::AwsProvider;
use perimeter_store::{EndpointWork, Store, StoreError};
use tokio::sync::Notify;

pub mod aws;
mod clock;
mod provider;
pub use clock::{Clock, ManualClock, WallClock};
use provider::ProviderWait;

/// What to do with an item after one reconcile step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Look again after this long (or sooner, when something wakes the reconciler).
    Requeue(Duration),
    /// Nothing more to do until something changes.
    Await,
}

/// Default of [`ReconcilerConfig::provision_timeout`] (`serve --provision-timeout-seconds`).
pub const DEFAULT_PROVISION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Identity written into leases; unique per process.
    pub holder: String,
    /// How long a claim is held before another replica may take it over.
    pub lease: Duration,
    /// Longest sleep between scans.
    pub interval: Duration,
    /// Items claimed per scan.
    pub batch: u32,
    /// How long a change may take to reach every live gateway before partial application
    /// reads `INCONSISTENT`.
    pub propagation_deadline: Duration,
    /// How long after its last request a gateway still counts as live.
    pub gateway_liveness: Duration,
    /// How long an accepted endpoint may wait for its region's gateways to serve its
    /// forwarder (and a deletion or a domain name change to reach them) before it fails.
    pub provision_timeout: Duration,
    /// How often what a cloud provider carries is looked at again while it is on its way
    /// (an endpoint pending, a change not yet in sync).
    pub provider_poll: Duration,
    /// The first wait after a provider error that may pass (throttling, 5xx); it doubles with
    /// each failure in a row, up to 64 times.
    pub provider_backoff: Duration,
    /// How often a cloud provider's `AVAILABLE` endpoints are described again, so that a change
    /// there (rejected by the service's owner, deleted outside Perimeter) shows.
    pub provider_refresh: Duration,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            holder: format!("serve-{}", uuid::Uuid::new_v4()),
            lease: Duration::from_secs(30),
            interval: crate::RECONCILE_INTERVAL,
            batch: 64,
            propagation_deadline: Duration::from_secs(30),
            gateway_liveness: crate::routes::GATEWAY_LIVENESS,
            provision_timeout: DEFAULT_PROVISION_TIMEOUT,
            provider_poll: Duration::from_secs(2),
            provider_backoff: Duration::from_secs(1),
            provider_refresh: Duration::from_secs(60),
        }
    }
}

pub struct Reconciler {
    store: Store,
    wake: Arc<Notify>,
    cfg: ReconcilerConfig,
    clock: Arc<dyn Clock>,
    /// The `aws` provider, when `serve --provider aws` runs.
    aws: Option<Arc<AwsProvider>>,
    /// Items a cloud provider carries, not to be looked at again before the time given, while
    /// they stay in the state they had: (state, errors in a row, not before).
    provider_waits: Mutex<HashMap<String, ProviderWait>>,
}

impl Reconciler {
    pub fn new(store: Store, wake: Arc<Notify>, cfg: ReconcilerConfig) -> Self {
        Reconciler {
            store,
            wake,
            cfg,
            clock: Arc::new(WallClock),
            aws: None,
            provider_waits: Mutex::default(),
        }
    }

    /// The same reconciler, driving what the `aws` provider carries.
    pub fn with_aws(mut self, aws: Arc<AwsProvider>) -> Self {
        self.aws = Some(aws);
        self
    }

    /// The same reconciler on another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Run until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let next = match self.pass().await {
                Ok(wait) => {
                    failures = 0;
                    wait
                }
                Err(e) => {
                    failures += 1;
                    let wait = error_policy(&e, failures);
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "reconcile pass failed");
                    wait
                }
            };
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {}
                _ = self.clock.sleep(next) => {}
            }
        }
    }

    /// One pass over claimable work; returns how long to sleep before the next.
    pub async fn pass(&self) -> Result<Duration, StoreError> {
        let now = self.clock.now();
        let until = perimeter_store::ts(
            now + chrono::Duration::from_std(self.cfg.lease).unwrap_or_default(),
        );
        let mut ids = self
            .store
            .claim_endpoints(&self.cfg.holder, &until, self.cfg.batch)
            .await?;
        if self.aws.is_some() {
            let checked_before = perimeter_store::ts(
                now - chrono::Duration::from_std(self.cfg.provider_refresh).unwrap_or_default(),
            );
            ids.extend(
                self.store
                    .claim_provider_refreshes(
                        &self.cfg.holder,
                        &until,
                        &checked_before,
                        self.cfg.batch,
                    )
                    .await?,
            );
        }
        let mut next = self.cfg.interval;
        for cluster in self.store.clusters_propagating().await? {
            if let Action::Requeue(d) =
                settle_cluster(&self.store, &cluster, &self.cfg, now).await?
            {
                next = next.min(d);
            }
        }
        for id in ids {
            let result = match self.store.endpoint_work(&id).await? {
                Some(work) if work.endpoint.provider == perimeter_store::LOCAL_PROVIDER => {
                    reconcile_endpoint(&self.store, &self.cfg, &work, now).await
                }
                Some(work) => self.provider_endpoint(&work, now).await,
                None => Ok(Action::Await),
            };
            self.store.release_endpoint(&self.cfg.holder, &id).await?;
            match result? {
                Action::Requeue(d) => next = next.min(d),
                Action::Await => {}
            }
        }
        if self.aws.is_some() {
            let services = self
                .store
                .claim_ingress_services(&self.cfg.holder, &until, self.cfg.batch)
                .await?;
            for (cluster, region) in services {
                if let Action::Requeue(d) = self.provider_service(&cluster, &region, now).await? {
                    next = next.min(d);
                }
            }
        }
        Ok(next)
    }
}

/// Backoff after a failed pass: doubling from 250 ms to 30 s.
pub fn error_policy(_e: &StoreError, failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(30))
}

/// Take one step on one endpoint, as of `now`. Idempotent: every write is conditional on the
/// state read.
pub async fn reconcile_endpoint(
    store: &Store,
    cfg: &ReconcilerConfig,
    w: &EndpointWork,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Action, StoreError> {
    let holder = cfg.holder.as_str();
    let ep = &w.endpoint;
    match (ep.state.as_str(), &w.connection) {
        ("PENDING", None) => {
            let Some(service) = &w.service else {
                let reason = format!(
                    "no endpoint service named {} in region {}",
                    ep.target_service_identifier, ep.region
                );
                store
                    .transition_endpoint(holder, ep, "FAILED", &reason, None, None)
                    .await?;
                return Ok(Action::Await);
            };
            let accepted = !service.acceptance_required
                || service.auto_accept_accounts.contains(&w.cluster_account_id);
            if accepted {
                let reason =
                    "accepted by the endpoint service; waiting for the gateway's forwarder";
                store
                    .transition_endpoint(
                        holder,
                        ep,
                        "PENDING",
                        reason,
                        Some((service, &w.cluster_account_id, "AVAILABLE", None)),
                        None,
                    )
                    .await?;
                Ok(Action::Await)
            } else {
                let deadline = now + chrono::Duration::seconds(service.acceptance_timeout_seconds);
                let reason = "waiting for the endpoint service's owner to accept the connection";
                store
                    .transition_endpoint(
                        holder,
                        ep,
                        "PENDING_ACCEPTANCE",
                        reason,
                        Some((
                            service,
                            &w.cluster_account_id,
                            "PENDING_ACCEPTANCE",
                            Some(perimeter_store::ts(deadline)),
                        )),
                        None,
                    )
                    .await?;
                Ok(Action::Requeue(Duration::from_secs(
                    service.acceptance_timeout_seconds.max(0) as u64,
                )))
            }
        }
        // Accepted: the gateways of the region report the forwarder by applying the snapshot
        // that carries it.
        ("PENDING", Some(c)) if c.status == "AVAILABLE" => {
            let seen = observe(store, cfg, ep, ep.routed_version, now).await?;
            let reason = if seen.serving() {
                let reason = format!(
                    "served by every live gateway of {}: {}",
                    ep.region,
                    seen.applied.join(", ")
                );
                store
                    .transition_endpoint(holder, ep, "AVAILABLE", &reason, None, None)
                    .await?;
                return Ok(Action::Await);
            } else if let Some((gateway, error)) = seen.failed.first() {
                format!("gateway {gateway} could not apply the forwarder: {error}")
            } else if seen.past_deadline {
                seen.missing_reason(&ep.region, cfg.provision_timeout, "serve the forwarder")
            } else {
                return Ok(Action::Requeue(seen.wait.min(cfg.interval)));
            };
            tracing::warn!(endpoint = %ep.id, cluster = %ep.cluster_id, reason = %reason, "egress private endpoint failed");
            store
                .transition_endpoint(holder, ep, "FAILED", &reason, None, None)
                .await?;
            Ok(Action::Await)
        }
        // A connection that is neither accepted nor waiting for acceptance (its service's owner
        // changed it under us): the deadline still holds, so the lock is never kept.
        ("PENDING", Some(c)) => {
            let seen = observe(store, cfg, ep, ep.routed_version, now).await?;
            if !seen.past_deadline {
                return Ok(Action::Requeue(seen.wait.min(cfg.interval)));
            }
            let reason = format!(
                "its connection to the endpoint service is {}, not accepted, past the {} s deadline",
                c.status,
                cfg.provision_timeout.as_secs()
            );
            store
                .transition_endpoint(holder, ep, "FAILED", &reason, None, None)
                .await?;
            Ok(Action::Await)
        }
        ("PENDING_ACCEPTANCE", Some(c)) => match c.status.as_str() {
            "AVAILABLE" => {
                let reason =
                    "accepted by the endpoint service's owner; waiting for the gateway's forwarder";
                store
                    .transition_endpoint(holder, ep, "PENDING", reason, None, None)
                    .await?;
                Ok(Action::Await)
            }
            "REJECTED" => {
                store
                    .transition_endpoint(
                        holder,
                        ep,
                        "REJECTED",
                        "rejected by the endpoint service's owner",
                        None,
                        None,
                    )
                    .await?;
                Ok(Action::Await)
            }
            _ => {
                let deadline = c
                    .expires_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc));
                match deadline {
                    Some(d) if d > now => {
                        Ok(Action::Requeue((d - now).to_std().unwrap_or_default()))
                    }
                    _ => {
                        store
                            .transition_endpoint(
                                holder,
                                ep,
                                "EXPIRED",
                                "not accepted before the service's deadline",
                                None,
                                Some("EXPIRED"),
                            )
                            .await?;
                        Ok(Action::Await)
                    }
                }
            }
        },
        // A connection can only be missing here if its service was removed under it.
        ("PENDING_ACCEPTANCE", None) => {
            store
                .transition_endpoint(
                    holder,
                    ep,
                    "FAILED",
                    "the endpoint service was removed",
                    None,
                    None,
                )
                .await?;
            Ok(Action::Await)
        }
        ("DELETING", _) => {
            let seen = observe(store, cfg, ep, ep.routed_version, now).await?;
            let reason = if seen.missing.is_empty() {
                "deleted: no gateway serves its forwarder any more".to_owned()
            } else if seen.past_deadline {
                seen.missing_reason(&ep.region, cfg.provision_timeout, "close the forwarder")
            } else {
                return Ok(Action::Requeue(seen.wait.min(cfg.interval)));
            };
            let status = w.connection.as_ref().map(|_| "DELETED");
            store
                .transition_endpoint(holder, ep, "GONE", &reason, None, status)
                .await?;
            Ok(Action::Await)
        }
        ("AVAILABLE", _) if ep.domain_names_state == "PENDING" => {
            let seen = observe(store, cfg, ep, ep.domain_names_version, now).await?;
            let to = if seen.serving() {
                "AVAILABLE"
            } else if !seen.failed.is_empty() || seen.past_deadline {
                "FAILED"
            } else {
                return Ok(Action::Requeue(seen.wait.min(cfg.interval)));
            };
            if store
                .settle_domain_names(&ep.id, ep.domain_names_version, to)
                .await?
            {
                tracing::info!(endpoint = %ep.id, cluster = %ep.cluster_id, to, "egress private endpoint domain names observed");
            }
            Ok(Action::Await)
        }
        _ => Ok(Action::Await),
    }
}

/// What the live gateways of an endpoint's region did with a policy version.
struct Observed {
    /// Names of the live gateways that applied it.
    applied: Vec<String>,
    /// Names of the live gateways that did not (yet).
    missing: Vec<String>,
    /// Live gateways that failed to apply it, with their errors.
    failed: Vec<(String, String)>,
    /// The provisioning deadline (from the endpoint's last change) has passed.
    past_deadline: bool,
    /// Time left until the deadline.
    wait: Duration,
}

impl Observed {
    /// Every live gateway of the region applied the version, and there is at least one.
    fn serving(&self) -> bool {
        !self.applied.is_empty() && self.missing.is_empty()
    }

    fn missing_reason(&self, region: &str, timeout: Duration, what: &str) -> String {
        if self.applied.is_empty() && self.missing.is_empty() {
            format!(
                "no live gateway in region {region} to {what} within {} s",
                timeout.as_secs()
            )
        } else {
            format!(
                "gateways {} of region {region} did not {what} within {} s",
                self.missing.join(", "),
                timeout.as_secs()
            )
        }
    }
}

async fn observe(
    store: &Store,
    cfg: &ReconcilerConfig,
    ep: &perimeter_store::EgressEndpoint,
    version: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Observed, StoreError> {
    let cutoff = perimeter_store::ts(
        now - chrono::Duration::from_std(cfg.gateway_liveness).unwrap_or_default(),
    );
    let mut seen = Observed {
        applied: Vec::new(),
        missing: Vec::new(),
        failed: Vec::new(),
        past_deadline: false,
        wait: Duration::ZERO,
    };
    for g in store.list_gateways(&ep.cluster_id).await? {
        let live = g
            .last_seen_at
            .as_deref()
            .is_some_and(|t| t >= cutoff.as_str());
        if !live || g.region != ep.region {
            continue;
        }
        if g.applied_version >= version {
            seen.applied.push(g.name);
        } else {
            if g.failed_version >= version {
                seen.failed.push((g.name.clone(), g.last_error.clone()));
            }
            seen.missing.push(g.name);
        }
    }
    let since = chrono::DateTime::parse_from_rfc3339(&ep.updated_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(now);
    let deadline = since + chrono::Duration::from_std(cfg.provision_timeout).unwrap_or_default();
    seen.past_deadline = now >= deadline;
    seen.wait = (deadline - now).to_std().unwrap_or_default();
    Ok(seen)
}

/// Turn the live gateways' acknowledgements into the states of a cluster's rules, traffic
/// policy, allowlist, network visibility and ingress private endpoints. Every write is
/// conditional on the state and version it read. Acknowledgements wake the reconciler; what
/// the clock alone moves (a change past the propagation deadline) is the `Requeue` returned:
/// the time until the nearest such deadline, or `Await` when there is none.
pub async fn settle_cluster(
    store: &Store,
    cluster_id: &str,
    cfg: &ReconcilerConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Action, StoreError> {
    let deadline_of = |changed_at: &str| -> Option<Duration> {
        let at = chrono::DateTime::parse_from_rfc3339(changed_at).ok()?;
        let due = at.with_timezone(&chrono::Utc)
            + chrono::Duration::from_std(cfg.propagation_deadline).unwrap_or_default();
        Some((due - now).to_std().unwrap_or(Duration::ZERO))
    };
    let mut next: Option<Duration> = None;
    let mut wake_by = |d: Option<Duration>| {
        if let Some(d) = d {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    };
    let cutoff = perimeter_store::ts(
        now - chrono::Duration::from_std(cfg.gateway_liveness).unwrap_or_default(),
    );
    let live: Vec<_> = store
        .list_gateways(cluster_id)
        .await?
        .into_iter()
        .filter(|g| {
            g.last_seen_at
                .as_deref()
                .is_some_and(|t| t >= cutoff.as_str())
        })
        .collect();
    let deadline_passed = |changed_at: &str| {
        let deadline = perimeter_store::ts(
            now - chrono::Duration::from_std(cfg.propagation_deadline).unwrap_or_default(),
        );
        // Passed at the deadline itself: a change is never still waiting when `deadline_of`
        // says zero is left (the loop would wake at once, again and again).
        !changed_at.is_empty() && changed_at <= deadline.as_str()
    };
    if live.is_empty() {
        // Nothing is observed; only a visibility change past the deadline lets go of the lock,
        // so that a cluster without gateways is not locked forever.
        if !release_stale_visibility(store, cluster_id, &deadline_passed).await? {
            let c = store.get_cluster(cluster_id).await?;
            if c.visibility_changing {
                wake_by(deadline_of(&c.updated_at));
            }
        }
        return Ok(next.map_or(Action::Await, Action::Requeue));
    }
    let all_applied = |v: i64| live.iter().all(|g| g.applied_version >= v);
    let any_applied = |v: i64| live.iter().any(|g| g.applied_version >= v);
    let any_failed = |v: i64| {
        live.iter()
            .any(|g| g.failed_version >= v && g.applied_version < v)
    };
    for rule in store.pending_rules(cluster_id).await? {
        use perimeter_store::RuleState as S;
        let v = rule.version;
        let deleting = rule.state == S::PendingDeletion;
        let to = if all_applied(v) {
            if deleting { None } else { Some(S::Active) }
        } else if any_failed(v) && !any_applied(v) {
            Some(match rule.state {
                S::PendingCreation => S::CreationFailed,
                S::PendingDeletion => S::DeletionFailed,
                _ => S::UpdateFailed,
            })
        } else if !deleting
            && rule.state != S::Inconsistent
            && any_applied(v)
            && deadline_passed(&rule.updated_at)
        {
            Some(S::Inconsistent)
        } else {
            if !deleting && rule.state != S::Inconsistent {
                wake_by(deadline_of(&rule.updated_at));
            }
            continue;
        };
        if store.settle_rule(&rule.id, rule.state, v, to).await? {
            let to = to.map_or("GONE", S::as_str);
            tracing::info!(cluster = %cluster_id, rule = %rule.name, from = %rule.state, to, version = v, "egress rule state observed");
        }
    }
    let cluster = store.get_cluster(cluster_id).await?;
    if cluster.egress_policy_updating {
        let v = cluster.egress_policy_version;
        if all_applied(v) {
            store.settle_policy(cluster_id, v, false).await?;
        } else if any_failed(v)
            && !any_applied(v)
            && deadline_passed(&cluster.egress_policy_changed_at)
        {
            store.settle_policy(cluster_id, v, true).await?;
        }
    }
    if cluster.allowlist_propagating && all_applied(cluster.allowlist_version) {
        store
            .settle_allowlist(cluster_id, cluster.allowlist_version)
            .await?;
    }
    if !cluster.is_deleted()
        && let Some(t) = store.get_tls_inspection(cluster_id).await?
        && t.propagating
        && all_applied(t.changed_version)
        && store
            .settle_tls_inspection(cluster_id, t.changed_version)
            .await?
    {
        tracing::info!(cluster = %cluster_id, enabled = t.enabled, version = t.changed_version, "TLS inspection setting observed on every live gateway");
    }
    if cluster.visibility_changing
        && all_applied(cluster.visibility_version)
        && store
            .settle_visibility(cluster_id, cluster.visibility_version)
            .await?
    {
        tracing::info!(cluster = %cluster_id, visibility = %cluster.network_visibility, "network visibility observed on every live gateway");
    } else if cluster.visibility_changing
        && !release_stale_visibility(store, cluster_id, &deadline_passed).await?
    {
        wake_by(deadline_of(&cluster.updated_at));
    }
    // A private endpoint service is served once every live gateway of its region applied the
    // snapshot that carries it and reports a private ingress listener.
    for svc in store.creating_ingress_services(cluster_id).await? {
        let region: Vec<_> = live.iter().filter(|g| g.region == svc.region).collect();
        let served = !region.is_empty()
            && region.iter().all(|g| {
                g.applied_version >= svc.routed_version && !g.private_ingress_address.is_empty()
            });
        if served
            && store
                .settle_ingress_service(cluster_id, &svc.region, svc.routed_version)
                .await?
        {
            tracing::info!(cluster = %cluster_id, region = %svc.region, service = %svc.service_name, "private endpoint service AVAILABLE");
        }
    }
    // A connection is available once every live gateway applied the snapshot that admits it.
    for c in store.admitting_ingress_connections(cluster_id).await? {
        if all_applied(c.admitted_version)
            && store
                .settle_ingress_connection(cluster_id, &c.endpoint_id, c.admitted_version)
                .await?
        {
            tracing::info!(cluster = %cluster_id, endpoint_id = %c.endpoint_id, "private endpoint connection STATUS_AVAILABLE");
        }
    }
    Ok(next.map_or(Action::Await, Action::Requeue))
}

/// A `network_visibility` change that not every live gateway applied within the propagation
/// deadline releases the cluster lock (logged as a warning): the gateways that lag apply it when
/// they catch up, and the cluster is not locked forever meanwhile.
/// Whether it released the lock.
async fn release_stale_visibility(
    store: &Store,
    cluster_id: &str,
    deadline_passed: &impl Fn(&str) -> bool,
) -> Result<bool, StoreError> {
    let cluster = store.get_cluster(cluster_id).await?;
    if cluster.visibility_changing
        && deadline_passed(&cluster.updated_at)
        && store
            .settle_visibility(cluster_id, cluster.visibility_version)
            .await?
    {
        tracing::warn!(cluster = %cluster_id, visibility = %cluster.network_visibility, "network visibility change not observed on every live gateway within the propagation deadline; releasing the cluster lock");
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
