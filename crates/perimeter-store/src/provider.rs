//! What a cloud provider (`serve --provider aws`) carries, as the reconciler records it: the
//! state, id, DNS name and domain names of egress private endpoints as the provider reports
//! them, and the provider's side of private endpoint services (the service itself, its
//! connections, its allowed principals), claimed with leases like endpoints are.
//!
//! Every write is conditional on what the reconciler read, so a step taken on stale data
//! writes nothing; state changes are audited with the provider's own words.

use sqlx::AnyConnection;

use crate::audit::{AuditEntry, record};
use crate::model::{EgressEndpoint, IngressConnection, IngressService, to_json};
use crate::{Ctx, Result, Store};

const PROVIDER_ACTOR: &str = "perimeter-reconciler";

/// What the reconciler needs to drive a private endpoint service at its provider.
#[derive(Debug, Clone)]
pub struct IngressServiceWork {
    pub cluster_id: String,
    /// The cluster is deleted: the service goes too.
    pub cluster_deleted: bool,
    pub service: IngressService,
    /// The generation of provider work this pass answers (see [`Store::finish_ingress_service`]).
    pub generation: i64,
    /// The cluster's registered connections (every region).
    pub connections: Vec<IngressConnection>,
    /// The external ids of the cluster's trusted owners.
    pub owners: Vec<String>,
}

impl Store {
    /// Record what the provider reports of an endpoint: move it from the state read to `to`
    /// (`GONE` removes it) with its connection id, DNS name and DNS zone, if `holder` still
    /// holds its lease and it is still in that state; audited with `reason`. False when the
    /// endpoint changed under us.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_provider_endpoint(
        &self,
        holder: &str,
        ep: &EgressEndpoint,
        to: &str,
        reason: &str,
        connection_id: &str,
        address: &str,
        zone_id: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let moved = crate::endpoints::move_endpoint(
            &mut tx,
            &crate::endpoints::Move {
                holder,
                ep,
                to,
                reason,
                connection_id,
                address,
                zone_id,
                routed_version: ep.routed_version,
            },
        )
        .await?;
        if !moved {
            tx.rollback().await.ctx("abandoning a stale transition")?;
            return Ok(false);
        }
        if to != "GONE" {
            sqlx::query("UPDATE egress_endpoints SET provider_checked_at = $1 WHERE id = $2")
                .bind(crate::now())
                .bind(&ep.id)
                .execute(&mut *tx)
                .await
                .ctx("noting a provider check")?;
        }
        tx.commit().await.ctx("committing an endpoint transition")?;
        Ok(true)
    }

    /// Claim up to `limit` `AVAILABLE` endpoints a provider carries that it last described
    /// before `checked_before`, to describe them again.
    pub async fn claim_provider_refreshes(
        &self,
        holder: &str,
        lease_until: &str,
        checked_before: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        let now = crate::now();
        let candidates: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM egress_endpoints WHERE provider <> 'local' AND state = 'AVAILABLE' AND domain_names_state <> 'PENDING' \
             AND provider_checked_at < $1 AND (lease_until IS NULL OR lease_until < $2) ORDER BY provider_checked_at LIMIT $3",
        )
        .bind(checked_before)
        .bind(&now)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .ctx("finding endpoints to describe again")?;
        self.claim_each(holder, lease_until, candidates).await
    }

    /// The provider described the endpoint and nothing changed.
    pub async fn note_provider_check(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE egress_endpoints SET provider_checked_at = $1 WHERE id = $2")
            .bind(crate::now())
            .bind(id)
            .execute(&self.write)
            .await
            .ctx("noting a provider check")?;
        Ok(())
    }

    /// Note why an endpoint did not move (a provider error that may pass), without a state
    /// change or an audit entry.
    pub async fn note_endpoint_reason(&self, id: &str, reason: &str) -> Result<()> {
        sqlx::query("UPDATE egress_endpoints SET state_reason = $1 WHERE id = $2")
            .bind(reason)
            .bind(id)
            .execute(&self.write)
            .await
            .ctx("noting an endpoint's reason")?;
        Ok(())
    }

    /// Record the provider's DNS work for an endpoint's domain names at `version`: the names
    /// whose records now exist and the changes to follow. False when the names changed under
    /// us (the next pass applies the newer ones).
    pub async fn record_domain_changes(
        &self,
        id: &str,
        version: i64,
        applied: &[String],
        changes: &[String],
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE egress_endpoints SET applied_domain_names = $1, domain_changes = $2 \
             WHERE id = $3 AND domain_names_version = $4",
        )
        .bind(to_json(&applied))
        .bind(to_json(&changes))
        .bind(id)
        .bind(version)
        .execute(&self.write)
        .await
        .ctx("recording domain name changes")?
        .rows_affected();
        Ok(n == 1)
    }

    /// The names whose records exist at the provider, whatever the desired names are now (an
    /// endpoint being deleted removes them).
    pub async fn record_applied_domain_names(&self, id: &str, applied: &[String]) -> Result<()> {
        sqlx::query("UPDATE egress_endpoints SET applied_domain_names = $1, domain_changes = '[]' WHERE id = $2")
            .bind(to_json(&applied))
            .bind(id)
            .execute(&self.write)
            .await
            .ctx("recording domain names")?;
        Ok(())
    }

    /// Audit what happened to an endpoint's domain names at the provider.
    pub async fn audit_domain_names(
        &self,
        ep: &EgressEndpoint,
        to: &str,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let payload = serde_json::json!({
            "egress_private_endpoint_id": ep.id, "domain_names": ep.domain_names,
            "domain_names_state": to, "reason": reason, "provider": ep.provider,
        });
        let audit = AuditEntry::internal(
            "AUDIT_LOG_ACTION_UPDATE_EGRESS_PRIVATE_ENDPOINT_DOMAIN_NAMES",
            PROVIDER_ACTOR,
            payload.to_string(),
        )
        .for_cluster(&ep.cluster_id, "");
        record(&mut tx, &audit).await?;
        tx.commit().await.ctx("committing an audit entry")
    }

    // ---- private endpoint services at the provider --------------------------------------------

    /// Claim up to `limit` private endpoint services with provider work whose lease is free or
    /// expired: `(cluster id, region)`.
    pub async fn claim_ingress_services(
        &self,
        holder: &str,
        lease_until: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>> {
        let now = crate::now();
        let candidates: Vec<(String, String)> = sqlx::query_as(
            "SELECT cluster_id, region FROM ingress_endpoint_services WHERE provider_pending > 0 AND provider <> 'local' \
             AND (lease_until IS NULL OR lease_until < $1 OR lease_holder = $2) ORDER BY created_at LIMIT $3",
        )
        .bind(&now)
        .bind(holder)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .ctx("finding private endpoint service work")?;
        let mut claimed = Vec::new();
        for (cluster, region) in candidates {
            let n = sqlx::query(
                "UPDATE ingress_endpoint_services SET lease_holder = $1, lease_until = $2 \
                 WHERE cluster_id = $3 AND region = $4 AND (lease_until IS NULL OR lease_until < $5 OR lease_holder = $1)",
            )
            .bind(holder)
            .bind(lease_until)
            .bind(&cluster)
            .bind(&region)
            .bind(&now)
            .execute(&self.write)
            .await
            .ctx("claiming a private endpoint service lease")?
            .rows_affected();
            if n == 1 {
                claimed.push((cluster, region));
            }
        }
        Ok(claimed)
    }

    /// Everything the reconciler reads to drive one private endpoint service, or None if it is
    /// gone.
    pub async fn ingress_service_work(
        &self,
        cluster_id: &str,
        region: &str,
    ) -> Result<Option<IngressServiceWork>> {
        let Some(row) = sqlx::query(
            "SELECT * FROM ingress_endpoint_services WHERE cluster_id = $1 AND region = $2",
        )
        .bind(cluster_id)
        .bind(region)
        .fetch_optional(&self.read)
        .await
        .ctx("reading private endpoint service work")?
        else {
            return Ok(None);
        };
        let service = crate::private_ingress::ingress_service_from_row(&row)?;
        let generation = crate::model::int(&row, "provider_pending")?;
        let (deleted,): (i64,) = sqlx::query_as(
            "SELECT CAST(CASE WHEN deleted_at IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM clusters WHERE id = $1",
        )
        .bind(cluster_id)
        .fetch_one(&self.read)
        .await
        .ctx("reading a cluster")?;
        // All regions': the provider shows which service a registered endpoint connects to.
        let connections = sqlx::query(
            "SELECT * FROM ingress_endpoint_connections WHERE cluster_id = $1 ORDER BY endpoint_id",
        )
        .bind(cluster_id)
        .fetch_all(&self.read)
        .await
        .ctx("reading private endpoint connections")?
        .iter()
        .map(crate::private_ingress::ingress_connection_from_row)
        .collect::<Result<Vec<_>>>()?;
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        let owners = crate::private_ingress::owner_ids(&mut conn, cluster_id).await?;
        Ok(Some(IngressServiceWork {
            cluster_id: cluster_id.to_string(),
            cluster_deleted: deleted == 1,
            service,
            generation,
            connections,
            owners,
        }))
    }

    /// Record the service as the provider reports it: its id and name there, its state, and
    /// our status (`CREATING`, `CREATE_FAILED`, `DELETING`, `DELETE_FAILED`; `AVAILABLE` is
    /// settled once the gateways serve it too), if it is still in the status `from` read (a
    /// deletion that came meanwhile is never undone). Status changes are audited with `reason`.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_ingress_service(
        &self,
        holder: &str,
        cluster_id: &str,
        region: &str,
        from: &str,
        service_id: &str,
        service_name: &str,
        provider_state: &str,
        status: &str,
        reason: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let before: Option<(String,)> = sqlx::query_as(
            "SELECT status FROM ingress_endpoint_services WHERE cluster_id = $1 AND region = $2 AND lease_holder = $3",
        )
        .bind(cluster_id)
        .bind(region)
        .bind(holder)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading a private endpoint service")?;
        let Some((before,)) = before.filter(|(b,)| b == from) else {
            tx.rollback().await.ctx("ending a read")?;
            return Ok(false);
        };
        sqlx::query(
            "UPDATE ingress_endpoint_services SET endpoint_service_id = $1, service_name = $2, provider_state = $3, status = $4, \
             provider_reason = $5 WHERE cluster_id = $6 AND region = $7 AND lease_holder = $8 AND status = $9",
        )
        .bind(service_id)
        .bind(service_name)
        .bind(provider_state)
        .bind(status)
        .bind(reason)
        .bind(cluster_id)
        .bind(region)
        .bind(holder)
        .bind(from)
        .execute(&mut *tx)
        .await
        .ctx("recording a private endpoint service")?;
        sqlx::query(
            "UPDATE ingress_endpoint_connections SET endpoint_service_id = $1, service_name = $2 WHERE cluster_id = $3 AND region = $4",
        )
        .bind(service_id)
        .bind(service_name)
        .bind(cluster_id)
        .bind(region)
        .execute(&mut *tx)
        .await
        .ctx("naming a private endpoint service's connections")?;
        if before != status {
            audit_service(&mut tx, cluster_id, region, &before, status, reason).await?;
        }
        tx.commit()
            .await
            .ctx("committing a private endpoint service")?;
        Ok(true)
    }

    /// Record a registered connection as the provider reports it: its state there and its
    /// owner. An owner the trusted owners do not name is rejected (`STATUS_REJECTED`, out of
    /// the snapshot); a connection the provider ended (`rejected`, `expired`, `failed`,
    /// `deleted`) reads so and leaves the snapshot. Returns the connection's status.
    pub async fn record_ingress_connection(
        &self,
        cluster_id: &str,
        endpoint_id: &str,
        region: &str,
        provider_state: &str,
        owner: &str,
    ) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let Some(row) = sqlx::query(
            "SELECT * FROM ingress_endpoint_connections WHERE cluster_id = $1 AND endpoint_id = $2",
        )
        .bind(cluster_id)
        .bind(endpoint_id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading a private endpoint connection")?
        else {
            tx.rollback().await.ctx("ending a read")?;
            return Ok(None);
        };
        let c = crate::private_ingress::ingress_connection_from_row(&row)?;
        let owner = if c.owner_account.is_empty() {
            owner
        } else {
            &c.owner_account
        };
        let owners = crate::private_ingress::owner_ids(&mut tx, cluster_id).await?;
        let ended = match provider_state {
            "rejected" => Some("STATUS_REJECTED"),
            "expired" => Some("STATUS_EXPIRED"),
            "failed" => Some("STATUS_FAILED"),
            "deleting" => Some("STATUS_DELETING"),
            "deleted" => Some("STATUS_DELETED"),
            _ => None,
        };
        let status = match ended {
            Some(s) => s.to_string(),
            None if !crate::private_ingress::owner_trusted(&owners, owner) => {
                "STATUS_REJECTED".to_string()
            }
            None => c.status.clone(),
        };
        let leaves = c.admitted_version > 0
            && !matches!(status.as_str(), "STATUS_PENDING" | "STATUS_AVAILABLE");
        if leaves {
            sqlx::query("UPDATE clusters SET policy_version = policy_version + 1 WHERE id = $1 AND deleted_at IS NULL")
                .bind(cluster_id)
                .execute(&mut *tx)
                .await
                .ctx("publishing a connection's end")?;
        }
        sqlx::query(
            "UPDATE ingress_endpoint_connections SET provider_state = $1, owner_account = $2, status = $3, \
             admitted_version = CASE WHEN $4 = 1 THEN 0 ELSE admitted_version END WHERE cluster_id = $5 AND endpoint_id = $6",
        )
        .bind(provider_state)
        .bind(owner)
        .bind(&status)
        .bind(leaves as i64)
        .bind(cluster_id)
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await
        .ctx("recording a private endpoint connection")?;
        // The provider shows which region's service it connects to.
        if c.region != region {
            sqlx::query(
                "UPDATE ingress_endpoint_connections SET region = $1, \
                 endpoint_service_id = (SELECT s.endpoint_service_id FROM ingress_endpoint_services s WHERE s.cluster_id = $2 AND s.region = $1), \
                 service_name = (SELECT s.service_name FROM ingress_endpoint_services s WHERE s.cluster_id = $2 AND s.region = $1) \
                 WHERE cluster_id = $2 AND endpoint_id = $3",
            )
            .bind(region)
            .bind(cluster_id)
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await
            .ctx("placing a private endpoint connection")?;
        }
        if status != c.status {
            let payload = serde_json::json!({
                "endpoint_id": endpoint_id, "from": c.status, "to": status,
                "provider_state": provider_state, "owner": owner,
            });
            let audit = AuditEntry::internal(
                "AUDIT_LOG_ACTION_UPDATE_PRIVATE_ENDPOINT_CONNECTION",
                PROVIDER_ACTOR,
                payload.to_string(),
            )
            .for_cluster(cluster_id, "");
            record(&mut tx, &audit).await?;
        }
        tx.commit()
            .await
            .ctx("committing a private endpoint connection")?;
        Ok(Some(status))
    }

    /// Release a service's lease. With `done`, its provider work is finished, unless a change
    /// arrived meanwhile (the generation moved): then it stays to do.
    pub async fn finish_ingress_service(
        &self,
        holder: &str,
        cluster_id: &str,
        region: &str,
        generation: i64,
        done: bool,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE ingress_endpoint_services SET lease_holder = NULL, lease_until = NULL, \
             provider_pending = CASE WHEN $1 = 1 AND provider_pending = $2 THEN 0 ELSE provider_pending END \
             WHERE cluster_id = $3 AND region = $4 AND lease_holder = $5",
        )
        .bind(done as i64)
        .bind(generation)
        .bind(cluster_id)
        .bind(region)
        .bind(holder)
        .execute(&self.write)
        .await
        .ctx("releasing a private endpoint service lease")?;
        Ok(())
    }

    /// Remove a service the provider deleted (its cluster or region is gone).
    pub async fn remove_ingress_service(
        &self,
        holder: &str,
        cluster_id: &str,
        region: &str,
        reason: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "DELETE FROM ingress_endpoint_services WHERE cluster_id = $1 AND region = $2 AND status IN ('DELETING', 'DELETE_FAILED') AND lease_holder = $3",
        )
        .bind(cluster_id)
        .bind(region)
        .bind(holder)
        .execute(&mut *tx)
        .await
        .ctx("removing a private endpoint service")?
        .rows_affected();
        if n == 1 {
            sqlx::query(
                "DELETE FROM ingress_endpoint_connections WHERE cluster_id = $1 AND region = $2",
            )
            .bind(cluster_id)
            .bind(region)
            .execute(&mut *tx)
            .await
            .ctx("removing a private endpoint service's connections")?;
            audit_service(&mut tx, cluster_id, region, "DELETING", "GONE", reason).await?;
        }
        tx.commit()
            .await
            .ctx("committing a private endpoint service removal")?;
        Ok(n == 1)
    }
}

async fn audit_service(
    conn: &mut AnyConnection,
    cluster_id: &str,
    region: &str,
    from: &str,
    to: &str,
    reason: &str,
) -> Result<()> {
    let payload = serde_json::json!({
        "region": region, "from": from, "to": to, "reason": reason,
    });
    let audit = AuditEntry::internal(
        "AUDIT_LOG_ACTION_UPDATE_PRIVATE_ENDPOINT_SERVICE",
        PROVIDER_ACTOR,
        payload.to_string(),
    )
    .for_cluster(cluster_id, "");
    record(conn, &audit).await
}

/// The provider has work for the cluster's private endpoint services (a registration, a
/// trusted owner, a deletion changed): bump their generation.
pub(crate) async fn provider_work(conn: &mut AnyConnection, cluster_id: &str) -> Result<()> {
    sqlx::query(
        "UPDATE ingress_endpoint_services SET provider_pending = provider_pending + 1 WHERE cluster_id = $1 AND provider <> 'local'",
    )
    .bind(cluster_id)
    .execute(conn)
    .await
    .ctx("scheduling provider work")?;
    Ok(())
}

/// Hand a cluster's provider-carried resources (of one region, or all) to the reconciler to
/// delete at the provider before they go: endpoints read `DELETING`, private endpoint services
/// `DELETING`. What is left for the caller to delete outright is only what `local` carries.
pub(crate) async fn retire_provider_resources(
    conn: &mut AnyConnection,
    cluster_id: &str,
    region: Option<&str>,
) -> Result<()> {
    let region = region.unwrap_or("");
    let now = crate::now();
    sqlx::query(
        "UPDATE egress_endpoints SET state = 'DELETING', updated_at = $1 WHERE cluster_id = $2 AND provider <> 'local' \
         AND ($3 = '' OR region = $3)",
    )
    .bind(&now)
    .bind(cluster_id)
    .bind(region)
    .execute(&mut *conn)
    .await
    .ctx("deleting a cluster's provider endpoints")?;
    sqlx::query(
        "UPDATE ingress_endpoint_services SET status = 'DELETING', provider_pending = provider_pending + 1 \
         WHERE cluster_id = $1 AND provider <> 'local' AND ($2 = '' OR region = $2)",
    )
    .bind(cluster_id)
    .bind(region)
    .execute(&mut *conn)
    .await
    .ctx("deleting a cluster's provider endpoint services")?;
    Ok(())
}
