//! The reconciler's steps for what the `aws` provider carries. The API and the states are the
//! same as on `local`; what is observed is AWS's answer instead of the gateways'.
//!
//! Egress private endpoint (an interface VPC endpoint):
//! 1. `PENDING` with no `vpce-` id: look the endpoint up by its tag (a create that succeeded
//!    but was never recorded), create it only if there is none (`ClientToken` from our id as
//!    well), record its id, DNS name and state. MSK target types fail with [`MSK_UNSUPPORTED`].
//! 2. Then follow `DescribeVpcEndpoints`: AWS's state, mapped (`pendingAcceptance` ->
//!    `PENDING_ACCEPTANCE`, `pending` -> `PENDING`, `available` -> `AVAILABLE`, `rejected`,
//!    `expired`, `failed` likewise, `deleting` -> `DELETING`, `deleted` -> gone).
//! 3. `AVAILABLE` with domain names `PENDING`: Route 53 records (and zones) made and old ones
//!    removed; `AVAILABLE` once every change is `INSYNC`. An `AVAILABLE` endpoint is described
//!    again every `provider_refresh`: a change at AWS (rejected by the service's owner, deleted
//!    outside Perimeter) shows.
//! 4. `DELETING`: records removed, `DeleteVpcEndpoints`, followed until AWS no longer has it.
//!
//! Private endpoint service (a VPC endpoint service, one per cluster region): created (or found
//! by its tags), followed to `Available`; its allowed principals made the trusted owners' (`*`
//! when none are listed: acceptance still decides); registered connections accepted, those of
//! untrusted owners and those no longer registered rejected, unregistered requests left
//! waiting. `DELETING` (its cluster or region went): connections rejected, service deleted.
//!
//! An AWS error that may pass (throttling, 5xx, timeouts) leaves the state as it is and is
//! retried with backoff; any other is AWS's answer and shows in the state and the audit log.

use perimeter_aws::dns::DnsTarget;
use perimeter_aws::egress::{NewEndpoint, VpcEndpoint, our_state};
use perimeter_aws::ingress::principal_of;
use perimeter_aws::{AwsError, AwsProvider};
use perimeter_store::{EndpointWork, IngressServiceWork, Store, StoreError};

use super::{Action, ReconcilerConfig};

/// Why an MSK target type cannot be served by the aws provider.
pub const MSK_UNSUPPORTED: &str = "the aws provider does not create MSK multi-VPC connections: that takes the MSK API's CreateVpcConnection (aws-sdk-kafka), which this build does not call, and the AWS-compatible test server does not implement; put an endpoint service (network load balancer) in front of the brokers and connect to it as PRIVATE_SERVICE, or use the local provider";

/// A step that could not finish.
#[derive(Debug)]
pub enum StepError {
    Store(StoreError),
    /// An AWS error that may pass: the item is retried with backoff.
    Transient(AwsError),
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        StepError::Store(e)
    }
}

/// An AWS error that may pass becomes a retry; any other is `Ok(Err(e))`, AWS's answer.
fn answer<T>(r: Result<T, AwsError>) -> Result<Result<T, AwsError>, StepError> {
    match r {
        Err(e) if e.transient => Err(StepError::Transient(e)),
        other => Ok(other),
    }
}

/// Whether `timeout` has passed since the endpoint's last transition (`updated_at`).
fn past_deadline(
    updated_at: &str,
    now: chrono::DateTime<chrono::Utc>,
    timeout: std::time::Duration,
) -> bool {
    let since = chrono::DateTime::parse_from_rfc3339(updated_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or(now);
    now - since >= chrono::Duration::from_std(timeout).unwrap_or_default()
}

/// One step on an egress private endpoint carried by AWS.
pub async fn step_endpoint(
    store: &Store,
    cfg: &ReconcilerConfig,
    aws: &AwsProvider,
    w: &EndpointWork,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Action, StepError> {
    let holder = cfg.holder.as_str();
    let ep = &w.endpoint;
    let poll = Action::Requeue(cfg.provider_poll);
    let record = |to: &str, reason: &str, v: Option<&VpcEndpoint>| {
        let (id, dns, zone) = match v {
            Some(v) => (v.id.clone(), v.dns_name.clone(), v.dns_zone_id.clone()),
            None => (
                ep.endpoint_connection_id.clone(),
                ep.endpoint_address.clone(),
                ep.dns_zone_id.clone(),
            ),
        };
        let (to, reason) = (to.to_string(), reason.to_string());
        async move {
            store
                .record_provider_endpoint(holder, ep, &to, &reason, &id, &dns, &zone)
                .await
        }
    };
    if ep.state == "DELETING" {
        return delete_endpoint(store, cfg, aws, w, now).await;
    }
    if !matches!(
        ep.state.as_str(),
        "PENDING" | "PENDING_ACCEPTANCE" | "AVAILABLE"
    ) {
        return Ok(Action::Await);
    }
    // 1. Create (or find what an earlier attempt created).
    if ep.endpoint_connection_id.is_empty() {
        if ep.target_service_type.starts_with("MSK") {
            record("FAILED", MSK_UNSUPPORTED, None).await?;
            return Ok(Action::Await);
        }
        let attempt = async {
            match answer(aws.find_endpoint(&ep.region, &ep.id).await)? {
                Ok(Some(v)) => Ok(Ok(v)),
                Ok(None) => answer(
                    aws.create_endpoint(&NewEndpoint {
                        endpoint_id: &ep.id,
                        cluster_id: &ep.cluster_id,
                        region: &ep.region,
                        service_name: &ep.target_service_identifier,
                    })
                    .await,
                ),
                Err(e) => Ok(Err(e)),
            }
        };
        let created = match attempt.await {
            // AWS kept failing (throttling, timeouts) past the provisioning deadline: the lock
            // is not held forever.
            Err(StepError::Transient(e))
                if past_deadline(&ep.updated_at, now, cfg.provision_timeout) =>
            {
                let reason = format!(
                    "not created at AWS within {} s (serve --provision-timeout-seconds); the last error: {e}",
                    cfg.provision_timeout.as_secs()
                );
                record("FAILED", &reason, None).await?;
                return Ok(Action::Await);
            }
            other => other?,
        };
        let v = match created {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(endpoint = %ep.id, cluster = %ep.cluster_id, error = %e, "AWS refused an interface endpoint");
                record("FAILED", &e.to_string(), None).await?;
                return Ok(Action::Await);
            }
        };
        let to = our_state(&v.state).unwrap_or("FAILED");
        let reason = reason_of(&v);
        record(to, &reason, Some(&v)).await?;
        return Ok(poll);
    }
    // 2. Follow AWS's state.
    let v = match answer(
        aws.describe_endpoint(&ep.region, &ep.endpoint_connection_id)
            .await,
    )? {
        Ok(Some(v)) => v,
        Ok(None) => {
            let reason = format!(
                "the interface endpoint {} no longer exists at AWS (deleted outside Perimeter)",
                ep.endpoint_connection_id
            );
            record("FAILED", &reason, None).await?;
            return Ok(Action::Await);
        }
        Err(e) => {
            record("FAILED", &e.to_string(), None).await?;
            return Ok(Action::Await);
        }
    };
    // Deleted at AWS while we were not deleting it: the endpoint failed.
    let to = our_state(&v.state).unwrap_or("FAILED");
    if to != ep.state {
        if ep.state == "AVAILABLE"
            && ep.domain_names_state == "PENDING"
            && store
                .settle_domain_names(&ep.id, ep.domain_names_version, "FAILED")
                .await?
        {
            let reason = format!("the endpoint left AVAILABLE: AWS reports it {}", v.state);
            store.audit_domain_names(ep, "FAILED", &reason).await?;
        }
        let reason = if v.state == "deleted" {
            format!(
                "the interface endpoint {} was deleted at AWS outside Perimeter",
                v.id
            )
        } else {
            reason_of(&v)
        };
        record(to, &reason, Some(&v)).await?;
        return Ok(
            if matches!(to, "PENDING" | "PENDING_ACCEPTANCE" | "DELETING") {
                poll
            } else if to == "AVAILABLE" && ep.domain_names_state == "PENDING" {
                Action::Requeue(std::time::Duration::ZERO)
            } else {
                Action::Await
            },
        );
    }
    match to {
        // AWS provisions in its own time; the lock is not held past the provisioning deadline.
        "PENDING" => {
            if past_deadline(&ep.updated_at, now, cfg.provision_timeout) {
                // Nobody follows a FAILED endpoint: one AWS finishes later would run (and be
                // billed) unseen, so it is deleted now; deleting ours later finishes the job.
                let deleted = match aws.delete_endpoint(&ep.region, &v.id).await {
                    Ok(()) => "; the interface endpoint is being deleted at AWS".to_string(),
                    Err(e) => format!(
                        "; deleting it at AWS failed ({e}): delete the endpoint to try again"
                    ),
                };
                let reason = format!(
                    "AWS still reports the interface endpoint {} pending after {} s (serve --provision-timeout-seconds){deleted}",
                    v.id,
                    cfg.provision_timeout.as_secs()
                );
                record("FAILED", &reason, Some(&v)).await?;
                return Ok(Action::Await);
            }
            Ok(poll)
        }
        "PENDING_ACCEPTANCE" => Ok(poll),
        "AVAILABLE" if ep.domain_names_state == "PENDING" => {
            domain_names(store, cfg, aws, ep).await
        }
        // Described again and unchanged.
        _ => {
            store.note_provider_check(&ep.id).await?;
            Ok(Action::Await)
        }
    }
}

/// Why AWS holds the endpoint where it is.
fn reason_of(v: &VpcEndpoint) -> String {
    match &v.last_error {
        Some(e) if !e.trim().is_empty() => format!("AWS reports {} {}: {e}", v.id, v.state),
        _ => format!("AWS reports {} {}", v.id, v.state),
    }
}

/// 3. An available endpoint's domain names as Route 53 records.
async fn domain_names(
    store: &Store,
    cfg: &ReconcilerConfig,
    aws: &AwsProvider,
    ep: &perimeter_store::EgressEndpoint,
) -> Result<Action, StepError> {
    let poll = Action::Requeue(cfg.provider_poll);
    // No change to follow yet: make the records (UPSERTs and removals, safe to repeat after a
    // failure), then follow the changes.
    if ep.domain_changes.is_empty() {
        let target = DnsTarget {
            dns_name: &ep.endpoint_address,
            zone_id: &ep.dns_zone_id,
        };
        // Every name about to be made counts as made until AWS says otherwise: a failure half
        // way leaves nothing that a later removal would not clean up.
        let mut attempted = ep.applied_domain_names.clone();
        attempted.extend(
            ep.domain_names
                .iter()
                .filter(|n| !ep.applied_domain_names.contains(n))
                .cloned(),
        );
        if !store
            .record_domain_changes(&ep.id, ep.domain_names_version, &attempted, &[])
            .await?
        {
            return Ok(Action::Requeue(std::time::Duration::ZERO));
        }
        match answer(
            aws.apply_domain_names(
                &ep.region,
                &ep.cluster_id,
                target,
                &ep.domain_names,
                &attempted,
            )
            .await,
        )? {
            Ok(changes) => {
                store
                    .record_domain_changes(
                        &ep.id,
                        ep.domain_names_version,
                        &ep.domain_names,
                        &changes,
                    )
                    .await?;
                if !changes.is_empty() {
                    return Ok(poll);
                }
                // Nothing was there to change: settled as it is.
            }
            Err(e) => {
                let reason = e.to_string();
                if store
                    .settle_domain_names(&ep.id, ep.domain_names_version, "FAILED")
                    .await?
                {
                    tracing::warn!(endpoint = %ep.id, cluster = %ep.cluster_id, error = %reason, "Route 53 refused domain names");
                    store.audit_domain_names(ep, "FAILED", &reason).await?;
                }
                return Ok(Action::Await);
            }
        }
    }
    for change in &ep.domain_changes {
        match answer(aws.change_in_sync(change).await)? {
            Ok(true) => {}
            Ok(false) => return Ok(poll),
            Err(e) => {
                let reason = e.to_string();
                if store
                    .settle_domain_names(&ep.id, ep.domain_names_version, "FAILED")
                    .await?
                {
                    store.audit_domain_names(ep, "FAILED", &reason).await?;
                }
                return Ok(Action::Await);
            }
        }
    }
    // No names left: their records are gone, and the state says so.
    let to = if ep.domain_names.is_empty() {
        "EMPTY"
    } else {
        "AVAILABLE"
    };
    if store
        .settle_domain_names(&ep.id, ep.domain_names_version, to)
        .await?
    {
        let reason = format!(
            "Route 53 records of [{}] are INSYNC in the private hosted zones of the platform VPC",
            ep.domain_names.join(", ")
        );
        tracing::info!(endpoint = %ep.id, cluster = %ep.cluster_id, "domain names INSYNC");
        store.audit_domain_names(ep, to, &reason).await?;
    }
    Ok(Action::Await)
}

/// 4. Records removed, the endpoint deleted at AWS and followed until it is gone.
async fn delete_endpoint(
    store: &Store,
    cfg: &ReconcilerConfig,
    aws: &AwsProvider,
    w: &EndpointWork,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Action, StepError> {
    let holder = cfg.holder.as_str();
    let ep = &w.endpoint;
    let poll = Action::Requeue(cfg.provider_poll);
    let gone = |reason: String| async move {
        store
            .record_provider_endpoint(holder, ep, "GONE", &reason, "", "", "")
            .await?;
        Ok::<_, StepError>(Action::Await)
    };
    let past_deadline = past_deadline(&ep.updated_at, now, cfg.provision_timeout);
    let fail_delete = |e: AwsError| async move {
        let reason = format!("AWS refused the deletion: {e}");
        tracing::warn!(endpoint = %ep.id, cluster = %ep.cluster_id, error = %e, "AWS refused a deletion");
        if past_deadline {
            // The lock is never held forever: FAILED, with the interface endpoint's id kept,
            // so that deleting it again tries again.
            store
                .record_provider_endpoint(
                    holder,
                    ep,
                    "FAILED",
                    &reason,
                    &ep.endpoint_connection_id,
                    &ep.endpoint_address,
                    &ep.dns_zone_id,
                )
                .await?;
            return Ok::<_, StepError>(Action::Await);
        }
        // Otherwise the deletion is tried again later.
        store.note_endpoint_reason(&ep.id, &reason).await?;
        Ok(Action::Requeue(cfg.provider_backoff * 8))
    };
    if !ep.applied_domain_names.is_empty() {
        let target = DnsTarget {
            dns_name: &ep.endpoint_address,
            zone_id: &ep.dns_zone_id,
        };
        match answer(
            aws.apply_domain_names(
                &ep.region,
                &ep.cluster_id,
                target,
                &[],
                &ep.applied_domain_names,
            )
            .await,
        )? {
            Ok(_) => store.record_applied_domain_names(&ep.id, &[]).await?,
            Err(e) => return fail_delete(e).await,
        }
    }
    // An endpoint created but never recorded (a crash in between) is found by its tag.
    let vpce = if ep.endpoint_connection_id.is_empty() {
        match answer(aws.find_endpoint(&ep.region, &ep.id).await)? {
            Ok(found) => found.map(|v| v.id),
            // A region the provider is not configured for: nothing was ever made there.
            Err(e) if !aws.serves_region(&ep.region) => {
                return gone(format!("deleted: {e}")).await;
            }
            Err(e) => return fail_delete(e).await,
        }
    } else {
        Some(ep.endpoint_connection_id.clone())
    };
    let Some(vpce) = vpce else {
        return gone("deleted: no interface endpoint was created at AWS".into()).await;
    };
    match answer(aws.describe_endpoint(&ep.region, &vpce).await)? {
        Ok(None) => gone(format!("deleted: AWS no longer has {vpce}")).await,
        Ok(Some(v)) if v.state == "deleted" => {
            gone(format!("deleted: AWS reports {vpce} deleted")).await
        }
        Ok(Some(v)) if v.state == "deleting" => Ok(poll),
        Ok(Some(_)) => match answer(aws.delete_endpoint(&ep.region, &vpce).await)? {
            Ok(()) => Ok(poll),
            Err(e) => fail_delete(e).await,
        },
        Err(e) => fail_delete(e).await,
    }
}

/// Connection states at AWS that carry traffic or may soon.
fn live(state: &str) -> bool {
    matches!(state, "pendingAcceptance" | "pending" | "available")
}

/// One step on a private endpoint service carried by AWS. Returns whether its provider work
/// is done (nothing left to follow until something changes).
pub async fn step_service(
    store: &Store,
    cfg: &ReconcilerConfig,
    aws: &AwsProvider,
    w: &IngressServiceWork,
) -> Result<bool, StepError> {
    let holder = cfg.holder.as_str();
    let s = &w.service;
    let (cluster, region) = (w.cluster_id.as_str(), s.region.as_str());
    // A status and its reason, the service otherwise as recorded.
    let note = |status: &'static str, reason: String| async move {
        store
            .record_ingress_service(
                holder,
                cluster,
                region,
                &s.status,
                &s.endpoint_service_id,
                &s.service_name,
                &s.provider_state,
                status,
                &reason,
            )
            .await
    };
    if matches!(s.status.as_str(), "DELETING" | "DELETE_FAILED") || w.cluster_deleted {
        let id = if s.endpoint_service_id.is_empty() {
            answer(aws.find_service(region, cluster).await)?.map(|f| f.map(|f| f.id))
        } else {
            Ok(Some(s.endpoint_service_id.clone()))
        };
        let failed = |e: AwsError| async move {
            note("DELETE_FAILED", e.to_string()).await?;
            Ok::<_, StepError>(false)
        };
        let id = match id {
            Ok(id) => id,
            Err(e) => return failed(e).await,
        };
        if let Some(id) = id {
            // AWS deletes a service only once no connection is live on it.
            let conns = match answer(aws.connections(region, &id).await)? {
                Ok(c) => c,
                Err(e) => return failed(e).await,
            };
            let live_ids: Vec<String> = conns
                .iter()
                .filter(|c| live(&c.state))
                .map(|c| c.endpoint_id.clone())
                .collect();
            if let Err(e) = answer(aws.decide_connections(region, &id, &live_ids, false).await)? {
                return failed(e).await;
            }
            if let Err(e) = answer(aws.delete_service(region, &id).await)? {
                return failed(e).await;
            }
            match answer(aws.describe_service(region, &id).await)? {
                Ok(Some(svc)) if svc.state != "Deleted" => return Ok(false),
                Ok(_) => {}
                Err(e) => return failed(e).await,
            }
        }
        store
            .remove_ingress_service(holder, cluster, region, "deleted at AWS")
            .await?;
        return Ok(true);
    }
    // Create, or find what an earlier attempt created, or follow.
    let svc = if s.endpoint_service_id.is_empty() {
        match answer(aws.find_service(region, cluster).await)? {
            Ok(Some(svc)) => Ok(svc),
            Ok(None) => answer(aws.create_service(region, cluster, &s.created_at).await)?,
            Err(e) => Err(e),
        }
    } else {
        match answer(aws.describe_service(region, &s.endpoint_service_id).await)? {
            Ok(Some(svc)) => Ok(svc),
            Ok(None) => Err(AwsError {
                operation: "DescribeVpcEndpointServiceConfigurations",
                code: None,
                message: format!(
                    "the endpoint service {} no longer exists at AWS (deleted outside Perimeter)",
                    s.endpoint_service_id
                ),
                transient: false,
            }),
            Err(e) => Err(e),
        }
    };
    let svc = match svc {
        Ok(svc) => svc,
        Err(e) => {
            tracing::warn!(cluster, region, error = %e, "AWS refused a private endpoint service");
            note("CREATE_FAILED", e.to_string()).await?;
            return Ok(true);
        }
    };
    let status = match svc.state.as_str() {
        "Failed" => "CREATE_FAILED",
        _ => s.status.as_str(),
    };
    let reason = format!("AWS reports {} {}", svc.id, svc.state);
    store
        .record_ingress_service(
            holder, cluster, region, &s.status, &svc.id, &svc.name, &svc.state, status, &reason,
        )
        .await?;
    if svc.state != "Available" {
        return Ok(svc.state == "Failed");
    }
    // Who may ask to connect: the trusted owners, or anyone when none are listed (a request is
    // still accepted only once registered).
    let principals: Vec<String> = if w.owners.is_empty() {
        vec!["*".into()]
    } else {
        w.owners.iter().map(|o| principal_of(o)).collect()
    };
    if let Err(e) = answer(aws.set_principals(region, &svc.id, &principals).await)? {
        tracing::warn!(cluster, region, error = %e, "AWS refused the allowed principals");
        store
            .record_ingress_service(
                holder,
                cluster,
                region,
                &s.status,
                &svc.id,
                &svc.name,
                &svc.state,
                status,
                &format!("the allowed principals could not be set: {e}"),
            )
            .await?;
        return Ok(false);
    }
    let conns = match answer(aws.connections(region, &svc.id).await)? {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(cluster, region, error = %e, "AWS refused to list connections");
            return Ok(false);
        }
    };
    let (mut accept, mut reject) = (Vec::new(), Vec::new());
    let mut waiting = false;
    for c in &conns {
        let registered = w.connections.iter().any(|r| r.endpoint_id == c.endpoint_id);
        if !registered {
            // A registration that was deleted: no longer admitted. A request nobody
            // registered is left waiting (never accepted).
            if matches!(c.state.as_str(), "pending" | "available") {
                reject.push(c.endpoint_id.clone());
            }
            continue;
        }
        let status = store
            .record_ingress_connection(cluster, &c.endpoint_id, region, &c.state, &c.owner)
            .await?;
        match status.as_deref() {
            Some("STATUS_REJECTED") if live(&c.state) => reject.push(c.endpoint_id.clone()),
            Some("STATUS_PENDING" | "STATUS_AVAILABLE") => match c.state.as_str() {
                "pendingAcceptance" => accept.push(c.endpoint_id.clone()),
                "pending" => waiting = true,
                _ => {}
            },
            _ => {}
        }
    }
    for (ids, yes) in [(&accept, true), (&reject, false)] {
        if let Err(e) = answer(aws.decide_connections(region, &svc.id, ids, yes).await)? {
            tracing::warn!(cluster, region, error = %e, "AWS refused a connection decision");
            waiting = true;
        }
    }
    // Registered endpoints AWS has not shown yet (in any region's service) are looked for
    // again, as are connections on their way to available.
    let unseen = w.connections.iter().any(|r| {
        r.provider_state == "unseen" && !conns.iter().any(|c| c.endpoint_id == r.endpoint_id)
    });
    Ok(accept.is_empty() && !waiting && !unseen)
}
