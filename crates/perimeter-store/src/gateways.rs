//! Gateways: registration, token verification data, acknowledgements of applied snapshot
//! versions, the inputs of a cluster's policy document, propagation primitives the reconciler
//! uses to turn acknowledgements into states, and decision aggregates.

use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::clusters::touch_live_cluster;
use crate::model::{
    AllowlistEntry, Cluster, DecisionAggregate, EgressEndpoint, EgressRule, Gateway,
    RegionWorkload, TlsInspection, counter, int, opt_text, text,
};
use crate::{Ctx, Result, Store, StoreError, is_unique_violation};

/// Everything a cluster's policy document is compiled from.
#[derive(Debug, Clone)]
pub struct PolicyInputs {
    pub cluster: Cluster,
    /// Rules in force: every rule but those being deleted.
    pub rules: Vec<EgressRule>,
    /// Endpoints whose traffic the gateways route (accepted or available), with their service.
    pub endpoints: Vec<RoutedEndpoint>,
    /// The IP allowlist, in listing order.
    pub allowlist: Vec<AllowlistEntry>,
    /// Workload addresses of the cluster's regions.
    pub workloads: Vec<RegionWorkload>,
    /// Endpoint ids whose private endpoint connections the private ingress listeners admit.
    pub private_connections: Vec<String>,
    /// The TLS inspection setting, when one was ever made (its CA key sealed).
    pub tls_inspection: Option<TlsInspection>,
}

/// An endpoint the gateways route, and what its forwarders need of its service.
#[derive(Debug, Clone)]
pub struct RoutedEndpoint {
    pub endpoint: EgressEndpoint,
    pub backends: Vec<perimeter_policy::BackendDoc>,
    pub proxy_protocol: bool,
    /// Its backends may be special addresses (registered so by a platform operator).
    pub special_addresses: bool,
    /// The service is a cluster's private endpoint service: its backends are that cluster's
    /// private ingress listeners.
    pub ingress_backed: bool,
}

/// A decision aggregate filter.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub verdict: Option<String>,
    pub since: Option<String>,
    pub limit: u32,
}

impl Store {
    /// Register a gateway; `audit` is the caller's entry (none for the embedded gateways
    /// `serve` registers itself: an internal event is not a caller's audit entry).
    pub async fn create_gateway(
        &self,
        cluster_id: &str,
        region: &str,
        name: &str,
        id: &str,
        token_hash: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<Gateway> {
        let mut tx = self.begin().await?;
        let cluster = crate::clusters::load_cluster(&mut tx, cluster_id).await?;
        if cluster.is_deleted() {
            return Err(StoreError::NotFound(format!(
                "cluster {cluster_id} is deleted"
            )));
        }
        crate::clusters::require_region(&cluster, region)?;
        let now = crate::now();
        sqlx::query(
            "INSERT INTO gateways (id, cluster_id, region, name, token_hash, created_at, last_seen_at, applied_version, failed_version, last_error, sort_key) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, 0, 0, '', $7)",
        )
        .bind(id)
        .bind(cluster_id)
        .bind(region)
        .bind(name)
        .bind(token_hash)
        .bind(&now)
        .bind(crate::time_sort_key(&now, id))
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict { field: "name".into(), message: format!("cluster {cluster_id} already has a gateway named {name:?}") }
            } else {
                StoreError::Database { context: "registering a gateway", source: e }
            }
        })?;
        if let Some(audit) = audit {
            record(
                &mut tx,
                &audit.clone().for_cluster(cluster_id, &cluster.name),
            )
            .await?;
        }
        tx.commit().await.ctx("committing a gateway")?;
        self.get_gateway(id).await
    }

    pub async fn get_gateway(&self, id: &str) -> Result<Gateway> {
        let row = sqlx::query("SELECT * FROM gateways WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.write)
            .await
            .ctx("reading a gateway")?
            .ok_or_else(|| StoreError::NotFound(format!("gateway {id} not found")))?;
        gateway_from_row(&row)
    }

    pub async fn list_gateways(&self, cluster_id: &str) -> Result<Vec<Gateway>> {
        let rows =
            sqlx::query("SELECT * FROM gateways WHERE cluster_id = $1 ORDER BY region, name")
                .bind(cluster_id)
                .fetch_all(&self.read)
                .await
                .ctx("listing gateways")?;
        rows.iter().map(gateway_from_row).collect()
    }

    pub async fn delete_gateway(
        &self,
        cluster_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<Gateway> {
        let gw = self.get_gateway(id).await?;
        if gw.cluster_id != cluster_id {
            return Err(StoreError::NotFound(format!(
                "gateway {id} not found in cluster {cluster_id}"
            )));
        }
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        sqlx::query("DELETE FROM gateways WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting a gateway")?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit().await.ctx("committing a gateway deletion")?;
        Ok(gw)
    }

    /// The stored token hash of gateway `id`, for constant-time comparison by the caller.
    pub async fn gateway_token_hash(&self, id: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT token_hash FROM gateways WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .ctx("authenticating a gateway")?;
        Ok(row.map(|(h,)| h))
    }

    /// Note that the gateway was seen now.
    pub async fn touch_gateway(&self, id: &str) -> Result<()> {
        sqlx::query("UPDATE gateways SET last_seen_at = $1 WHERE id = $2")
            .bind(crate::now())
            .bind(id)
            .execute(&self.write)
            .await
            .ctx("recording a gateway heartbeat")?;
        Ok(())
    }

    /// Note that snapshot `version` was delivered to gateway `id` (delivered versions only move
    /// forward): it may acknowledge up to it.
    pub async fn record_delivery(&self, id: &str, version: i64) -> Result<()> {
        sqlx::query(
            "UPDATE gateways SET delivered_version = CASE WHEN delivered_version < $1 THEN $1 ELSE delivered_version END WHERE id = $2",
        )
        .bind(version)
        .bind(id)
        .execute(&self.write)
        .await
        .ctx("recording a snapshot delivery")?;
        Ok(())
    }

    /// Record an acknowledgement: applied versions only move forward; a failure is kept with its
    /// error until a later version applies.
    pub async fn ack_gateway(
        &self,
        id: &str,
        version: i64,
        applied: bool,
        error: &str,
    ) -> Result<Gateway> {
        let now = crate::now();
        let q = if applied {
            sqlx::query(
                "UPDATE gateways SET applied_version = CASE WHEN applied_version < $1 THEN $1 ELSE applied_version END, \
                 last_error = CASE WHEN failed_version <= $1 THEN '' ELSE last_error END, last_seen_at = $2 WHERE id = $3",
            )
        } else {
            sqlx::query(
                "UPDATE gateways SET failed_version = $1, last_error = $4, last_seen_at = $2 WHERE id = $3",
            )
        };
        let mut q = q.bind(version).bind(&now).bind(id);
        if !applied {
            q = q.bind(error);
        }
        q.execute(&self.write)
            .await
            .ctx("recording a gateway acknowledgement")?;
        self.get_gateway(id).await
    }

    /// The current version of a cluster's policy (bumped by every networking change) and
    /// whether the cluster is deleted (its gateways then get a last document that denies
    /// everything).
    pub async fn policy_version_of(&self, cluster_id: &str) -> Result<Option<(i64, bool)>> {
        let row: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT policy_version, deleted_at FROM clusters WHERE id = $1")
                .bind(cluster_id)
                .fetch_optional(&self.write)
                .await
                .ctx("reading a policy version")?;
        Ok(row.map(|(v, deleted)| (v, deleted.is_some())))
    }

    /// The inputs of a cluster's policy document, read in one transaction so that they agree
    /// with the version they carry.
    pub async fn policy_inputs(&self, cluster_id: &str) -> Result<PolicyInputs> {
        let mut tx = self.write.begin().await.ctx("starting a read")?;
        let cluster = crate::clusters::load_cluster(&mut tx, cluster_id).await?;
        let rules = sqlx::query("SELECT * FROM egress_rules WHERE cluster_id = $1 AND state <> 'PENDING_DELETION' ORDER BY name")
            .bind(cluster_id)
            .fetch_all(&mut *tx)
            .await
            .ctx("reading rules for a snapshot")?
            .iter()
            .map(crate::rules::rule_from_row)
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT e.*, s.backends AS service_backends, s.proxy_protocol AS service_proxy_protocol, s.special_addresses AS service_special_addresses, s.ingress_cluster_id AS service_ingress_cluster, \
             s.region AS service_region FROM egress_endpoints e \
             JOIN endpoint_connections c ON c.egress_private_endpoint_id = e.id \
             JOIN endpoint_services s ON s.id = c.service_id \
             WHERE e.cluster_id = $1 AND e.state IN ('PENDING', 'AVAILABLE') AND c.status = 'AVAILABLE' ORDER BY e.created_at",
        )
        .bind(cluster_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading endpoints for a snapshot")?;
        let mut endpoints = Vec::with_capacity(rows.len());
        for r in &rows {
            let ingress_cluster = crate::model::text(r, "service_ingress_cluster")?;
            // A cluster's private endpoint service: its backends are the private ingress
            // listeners its gateways in that region report.
            let backends = if ingress_cluster.is_empty() {
                crate::model::json(r, "service_backends")?
            } else {
                let addrs: Vec<(String,)> = sqlx::query_as(
                    "SELECT private_ingress_address FROM gateways WHERE cluster_id = $1 AND region = $2 \
                     AND private_ingress_address <> '' ORDER BY name",
                )
                .bind(&ingress_cluster)
                .bind(crate::model::text(r, "service_region")?)
                .fetch_all(&mut *tx)
                .await
                .ctx("reading private ingress listeners")?;
                addrs
                    .into_iter()
                    .map(|(a,)| perimeter_policy::BackendDoc::plain(a))
                    .collect()
            };
            endpoints.push(RoutedEndpoint {
                endpoint: crate::endpoints::endpoint_from_row(r)?,
                backends,
                proxy_protocol: crate::model::flag(r, "service_proxy_protocol")?,
                special_addresses: crate::model::flag(r, "service_special_addresses")?,
                ingress_backed: !ingress_cluster.is_empty(),
            });
        }
        let allowlist =
            sqlx::query("SELECT * FROM allowlist_entries WHERE cluster_id = $1 ORDER BY sort_key")
                .bind(cluster_id)
                .fetch_all(&mut *tx)
                .await
                .ctx("reading the allowlist for a snapshot")?
                .iter()
                .map(crate::ingress::allowlist_from_row)
                .collect::<Result<Vec<_>>>()?;
        let workloads = crate::ingress::load_workloads(&mut tx, &cluster).await?;
        let private_connections: Vec<(String,)> = sqlx::query_as(
            "SELECT endpoint_id FROM ingress_endpoint_connections WHERE cluster_id = $1 AND admitted_version > 0 \
             AND status IN ('STATUS_PENDING', 'STATUS_AVAILABLE') ORDER BY endpoint_id",
        )
        .bind(cluster_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading private endpoint connections for a snapshot")?;
        let tls_inspection =
            crate::tls_inspection::load_tls_inspection(&mut tx, cluster_id).await?;
        tx.commit().await.ctx("ending a read")?;
        Ok(PolicyInputs {
            cluster,
            rules,
            endpoints,
            allowlist,
            workloads,
            private_connections: private_connections.into_iter().map(|(e,)| e).collect(),
            tls_inspection,
        })
    }

    /// Every region of every cluster that is not deleted, as `(cluster id, region)`: where
    /// `perimeter serve` runs its embedded gateways.
    pub async fn live_cluster_regions(&self) -> Result<Vec<(String, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT r.cluster_id, r.name FROM cluster_regions r JOIN clusters c ON c.id = r.cluster_id \
             WHERE c.deleted_at IS NULL ORDER BY r.cluster_id, r.position",
        )
        .fetch_all(&self.read)
        .await
        .ctx("listing cluster regions")?;
        Ok(rows)
    }

    /// The gateway `name` of a cluster region, registered with no usable token when missing.
    /// Used by embedded gateways, which keep no secret at rest: they re-key with
    /// [`Store::set_gateway_token_hash`] at every start. No audit entry: the change that added
    /// the region (or created the cluster) has one.
    pub async fn ensure_gateway(
        &self,
        cluster_id: &str,
        region: &str,
        name: &str,
        new_id: &str,
    ) -> Result<Gateway> {
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT id FROM gateways WHERE cluster_id = $1 AND name = $2")
                .bind(cluster_id)
                .bind(name)
                .fetch_optional(&self.write)
                .await
                .ctx("finding a gateway")?;
        match existing {
            Some((id,)) => self.get_gateway(&id).await,
            // An empty hash matches no token.
            None => {
                self.create_gateway(cluster_id, region, name, new_id, "", None)
                    .await
            }
        }
    }

    /// Give gateway `id` a new token hash; its old token stops working.
    pub async fn set_gateway_token_hash(&self, id: &str, token_hash: &str) -> Result<()> {
        sqlx::query("UPDATE gateways SET token_hash = $1 WHERE id = $2")
            .bind(token_hash)
            .bind(id)
            .execute(&self.write)
            .await
            .ctx("re-keying a gateway")?;
        Ok(())
    }

    /// Remove the gateway `name` of a cluster, if any (an embedded gateway whose region went
    /// away). No audit entry: the change that removed the region has one.
    pub async fn remove_gateway_named(&self, cluster_id: &str, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM gateways WHERE cluster_id = $1 AND name = $2")
            .bind(cluster_id)
            .bind(name)
            .execute(&self.write)
            .await
            .ctx("removing a gateway")?;
        Ok(())
    }

    /// Clusters with a change not yet observed everywhere (rules, policy, allowlist or TLS
    /// inspection pending).
    pub async fn clusters_propagating(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM clusters WHERE deleted_at IS NULL AND (egress_policy_updating = 1 OR allowlist_propagating = 1 OR visibility_changing = 1) \
             UNION SELECT DISTINCT cluster_id FROM egress_rules \
             WHERE state IN ('PENDING_CREATION', 'PENDING_UPDATE', 'PENDING_DELETION', 'INCONSISTENT') \
             UNION SELECT DISTINCT cluster_id FROM ingress_endpoint_services WHERE status = 'CREATING' \
             UNION SELECT DISTINCT cluster_id FROM ingress_endpoint_connections WHERE status = 'STATUS_PENDING' AND admitted_version > 0 \
             UNION SELECT cluster_id FROM cluster_tls_inspection WHERE propagating = 1",
        )
        .fetch_all(&self.read)
        .await
        .ctx("finding propagating clusters")?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Move a rule to `to` if it is still in `from` at `version`; `None` removes it. Bumps the
    /// cluster's rules epoch in the same transaction.
    pub async fn settle_rule(
        &self,
        id: &str,
        from: crate::RuleState,
        version: i64,
        to: Option<crate::RuleState>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE clusters SET rules_epoch = rules_epoch + 1 WHERE id = (SELECT cluster_id FROM egress_rules WHERE id = $1)")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("bumping the rules epoch")?;
        let cluster_id: Option<(String,)> =
            sqlx::query_as("SELECT cluster_id FROM egress_rules WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading an egress rule's cluster")?;
        let n = if let Some(to) = to {
            sqlx::query("UPDATE egress_rules SET state = $4 WHERE id = $1 AND state = $2 AND policy_version = $3")
                .bind(id)
                .bind(from.as_str())
                .bind(version)
                .bind(to.as_str())
                .execute(&mut *tx)
                .await
        } else {
            let deleted = sqlx::query(
                "DELETE FROM egress_rules WHERE id = $1 AND state = $2 AND policy_version = $3",
            )
            .bind(id)
            .bind(from.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await;
            if let (Ok(done), Some((cluster_id,))) = (&deleted, &cluster_id)
                && done.rows_affected() == 1
            {
                crate::rules::rules_counted(&mut tx, cluster_id, -1).await?;
            }
            deleted
        }
        .ctx("settling an egress rule")?
        .rows_affected();
        if n == 1 {
            tx.commit().await.ctx("committing a rule state")?;
        } else {
            tx.rollback().await.ctx("abandoning a stale rule state")?;
        }
        Ok(n == 1)
    }

    /// End `UPDATING` of the traffic policy changed at `version` (optionally as `ERROR`).
    pub async fn settle_policy(&self, cluster_id: &str, version: i64, error: bool) -> Result<bool> {
        let sql = if error {
            "UPDATE clusters SET egress_policy_updating = 0, egress_policy = 'ERROR' WHERE id = $1 AND egress_policy_version = $2 AND egress_policy_updating = 1"
        } else {
            "UPDATE clusters SET egress_policy_updating = 0 WHERE id = $1 AND egress_policy_version = $2 AND egress_policy_updating = 1"
        };
        let n = sqlx::query(sql)
            .bind(cluster_id)
            .bind(version)
            .execute(&self.write)
            .await
            .ctx("settling the traffic policy")?
            .rows_affected();
        Ok(n == 1)
    }

    /// End the `network_visibility` change made at `version`.
    pub async fn settle_visibility(&self, cluster_id: &str, version: i64) -> Result<bool> {
        let n = sqlx::query("UPDATE clusters SET visibility_changing = 0 WHERE id = $1 AND visibility_version = $2 AND visibility_changing = 1")
            .bind(cluster_id)
            .bind(version)
            .execute(&self.write)
            .await
            .ctx("settling the network visibility")?
            .rows_affected();
        Ok(n == 1)
    }

    /// End `propagating` of the allowlist changed at `version`.
    pub async fn settle_allowlist(&self, cluster_id: &str, version: i64) -> Result<bool> {
        let n = sqlx::query("UPDATE clusters SET allowlist_propagating = 0 WHERE id = $1 AND allowlist_version = $2 AND allowlist_propagating = 1")
            .bind(cluster_id)
            .bind(version)
            .execute(&self.write)
            .await
            .ctx("settling the allowlist")?
            .rows_affected();
        Ok(n == 1)
    }

    /// Rules of a cluster whose state is not settled.
    pub async fn pending_rules(&self, cluster_id: &str) -> Result<Vec<EgressRule>> {
        sqlx::query(
            "SELECT * FROM egress_rules WHERE cluster_id = $1 AND state IN ('PENDING_CREATION', 'PENDING_UPDATE', 'PENDING_DELETION', 'INCONSISTENT')",
        )
        .bind(cluster_id)
        .fetch_all(&self.read)
        .await
        .ctx("reading pending rules")?
        .iter()
        .map(crate::rules::rule_from_row)
        .collect()
    }

    /// Add a gateway's decision counts to the cluster's aggregates.
    /// Record one push of a gateway: its decision aggregates and the bytes its forwarders
    /// relayed per private endpoint (`(endpoint id, bytes)`), in one transaction, so a push is
    /// counted whole or not at all.
    pub async fn record_decisions(
        &self,
        cluster_id: &str,
        items: &[DecisionAggregate],
        endpoint_bytes: &[(String, u64)],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        crate::endpoints::add_endpoint_bytes(&mut tx, cluster_id, endpoint_bytes).await?;
        for d in items {
            sqlx::query(
                "INSERT INTO egress_decisions (cluster_id, destination, port, verdict, rule_name, reason, count, bytes, first_seen, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (cluster_id, destination, port, verdict, rule_name, reason) DO UPDATE SET \
                 count = CASE WHEN egress_decisions.count > $11 - excluded.count THEN $11 ELSE egress_decisions.count + excluded.count END, \
                 bytes = CASE WHEN egress_decisions.bytes > $11 - excluded.bytes THEN $11 ELSE egress_decisions.bytes + excluded.bytes END, \
                 first_seen = CASE WHEN excluded.first_seen < egress_decisions.first_seen THEN excluded.first_seen ELSE egress_decisions.first_seen END, \
                 last_seen = CASE WHEN excluded.last_seen > egress_decisions.last_seen THEN excluded.last_seen ELSE egress_decisions.last_seen END",
            )
            .bind(cluster_id)
            .bind(&d.destination)
            .bind(d.port)
            .bind(&d.verdict)
            .bind(&d.rule_name)
            .bind(&d.reason)
            .bind(d.count)
            .bind(d.bytes)
            .bind(&d.first_seen)
            .bind(&d.last_seen)
            .bind(i64::MAX)
            .execute(&mut *tx)
            .await
            .ctx("recording decisions")?;
        }
        tx.commit().await.ctx("committing decisions")
    }

    pub async fn list_decisions(
        &self,
        cluster_id: &str,
        q: &DecisionQuery,
    ) -> Result<Vec<DecisionAggregate>> {
        let mut sql = "SELECT * FROM egress_decisions WHERE cluster_id = $1".to_string();
        let mut args = vec![crate::page::Arg::Text(cluster_id.to_string())];
        if let Some(v) = &q.verdict {
            args.push(crate::page::Arg::Text(v.clone()));
            sql.push_str(&format!(" AND verdict = ${}", args.len()));
        }
        if let Some(s) = &q.since {
            args.push(crate::page::Arg::Text(s.clone()));
            sql.push_str(&format!(" AND last_seen >= ${}", args.len()));
        }
        args.push(crate::page::Arg::Int(q.limit.clamp(1, 1000) as i64));
        sql.push_str(&format!(
            " ORDER BY count DESC, destination LIMIT ${}",
            args.len()
        ));
        let rows = crate::page::bind_all(sqlx::query(&sql), &args)
            .fetch_all(&self.read)
            .await
            .ctx("listing decisions")?;
        rows.iter()
            .map(|r| {
                Ok(DecisionAggregate {
                    destination: text(r, "destination")?,
                    port: int(r, "port")?,
                    verdict: text(r, "verdict")?,
                    rule_name: text(r, "rule_name")?,
                    reason: text(r, "reason")?,
                    count: counter(r, "count"),
                    bytes: counter(r, "bytes"),
                    first_seen: text(r, "first_seen")?,
                    last_seen: text(r, "last_seen")?,
                })
            })
            .collect()
    }
}

fn gateway_from_row(r: &AnyRow) -> Result<Gateway> {
    Ok(Gateway {
        id: text(r, "id")?,
        cluster_id: text(r, "cluster_id")?,
        region: text(r, "region")?,
        name: text(r, "name")?,
        created_at: text(r, "created_at")?,
        last_seen_at: opt_text(r, "last_seen_at")?,
        applied_version: int(r, "applied_version")?,
        failed_version: int(r, "failed_version")?,
        last_error: text(r, "last_error")?,
        private_ingress_address: text(r, "private_ingress_address")?,
        delivered_version: int(r, "delivered_version")?,
    })
}
