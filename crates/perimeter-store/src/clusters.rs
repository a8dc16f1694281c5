//! Clusters and their regions, and the cluster lock that serialises networking changes.

use std::collections::BTreeMap;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::model::{Cluster, CredentialRole, Region, flag, int, json, opt_text, text, to_json};
use crate::page::{Arg, Page, PageRequest, fetch_page};
use crate::{Ctx, Result, Store, StoreError};

/// The column `endpoint_locked` of a cluster row aliased `$c`: 1 while one of its egress private
/// endpoints is being created, deleted or given domain names (what [`lock_reason`] finds).
macro_rules! endpoint_locked {
    ($c:literal) => {
        concat!(
            "CAST(CASE WHEN EXISTS (SELECT 1 FROM egress_endpoints e WHERE e.cluster_id = ",
            $c,
            ".id AND (e.state IN ('PENDING', 'DELETING') OR e.domain_names_state = 'PENDING')) THEN 1 ELSE 0 END AS BIGINT) AS endpoint_locked"
        )
    };
}

#[derive(Debug, Clone)]
pub struct NewCluster {
    pub name: String,
    pub provider: String,
    pub plan: String,
    pub account_id: String,
    pub network_visibility: String,
    pub egress_policy: String,
    pub labels: BTreeMap<String, String>,
    pub hardware: serde_json::Value,
    pub cockroach_version: String,
    pub creator_id: String,
    /// Region name and node count, in the order given.
    pub regions: Vec<(String, i64)>,
}

impl NewCluster {
    /// A public AWS cluster of one node in us-east-1, account 123456789012, under
    /// DEFAULT_DENY: the cluster of tests and examples (change what matters with `..`).
    pub fn example(name: &str) -> NewCluster {
        NewCluster {
            name: name.into(),
            provider: "AWS".into(),
            plan: "ADVANCED".into(),
            account_id: "123456789012".into(),
            network_visibility: "PUBLIC".into(),
            egress_policy: "DEFAULT_DENY".into(),
            labels: BTreeMap::new(),
            hardware: serde_json::json!({}),
            cockroach_version: "v25.2".into(),
            creator_id: "test".into(),
            regions: vec![("us-east-1".into(), 1)],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClusterUpdate {
    /// The complete new set of regions, when it changes.
    pub regions: Option<Vec<(String, i64)>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub plan: Option<String>,
    pub hardware: Option<serde_json::Value>,
    /// `PUBLIC` or `PRIVATE`: a networking change, held under the cluster lock until every
    /// live gateway applied it.
    pub network_visibility: Option<String>,
}

impl Store {
    pub async fn create_cluster(&self, c: &NewCluster, audit: &AuditEntry) -> Result<Cluster> {
        self.create_cluster_granting(c, None, audit).await
    }

    /// [`Store::create_cluster`], binding the creator (`c.creator_id`, a service account) to
    /// `grant` on the new cluster in the same transaction, with an audit entry of its own
    /// (`AUDIT_LOG_ACTION_ASSIGN_USER_ROLE`, by the creator). An account deleted meanwhile gets
    /// nothing.
    pub async fn create_cluster_granting(
        &self,
        c: &NewCluster,
        grant: Option<&str>,
        audit: &AuditEntry,
    ) -> Result<Cluster> {
        let mut tx = self.begin().await?;
        let (have,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM clusters WHERE deleted_at IS NULL")
                .fetch_one(&mut *tx)
                .await
                .ctx("counting clusters")?;
        Store::within(
            have,
            self.limits.clusters,
            "name",
            "the organization has too many clusters",
            "--max-clusters",
        )?;
        let taken: Option<(String,)> =
            sqlx::query_as("SELECT id FROM clusters WHERE name = $1 AND deleted_at IS NULL")
                .bind(&c.name)
                .fetch_optional(&mut *tx)
                .await
                .ctx("checking cluster names")?;
        if taken.is_some() {
            return Err(StoreError::Conflict {
                field: "name".into(),
                message: format!("a cluster named {:?} already exists", c.name),
            });
        }
        let id = crate::new_id();
        let now = crate::now();
        sqlx::query(
            "INSERT INTO clusters (id, name, provider, plan, account_id, state, network_visibility, egress_policy, \
             egress_policy_updating, allowlist_propagating, policy_version, labels, hardware, cockroach_version, creator_id, created_at, updated_at, deleted_at, sort_key) \
             VALUES ($1, $2, $3, $4, $5, 'CREATED', $6, $7, 0, 0, 1, $8, $9, $10, $11, $12, $12, NULL, $13)",
        )
        .bind(&id)
        .bind(&c.name)
        .bind(&c.provider)
        .bind(&c.plan)
        .bind(&c.account_id)
        .bind(&c.network_visibility)
        .bind(&c.egress_policy)
        .bind(to_json(&c.labels))
        .bind(to_json(&c.hardware))
        .bind(&c.cockroach_version)
        .bind(&c.creator_id)
        .bind(&now)
        .bind(crate::time_sort_key(&now, &id))
        .execute(&mut *tx)
        .await
        .ctx("creating a cluster")?;
        write_regions(&mut tx, &id, &c.regions).await?;
        let audit = audit.clone().for_cluster(&id, &c.name);
        record(&mut tx, &audit).await?;
        if let Some(role) = grant {
            let granted = sqlx::query(
                "INSERT INTO role_bindings (service_account_id, role, resource_type, resource_id) \
                 SELECT id, $2, 'CLUSTER', $3 FROM service_accounts WHERE id = $1",
            )
            .bind(&c.creator_id)
            .bind(role)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .ctx("granting the creator its cluster")?
            .rows_affected();
            if granted > 0 {
                let payload = serde_json::json!({
                    "user_id": c.creator_id,
                    "roles": [{"name": role, "resource": {"type": "CLUSTER", "id": id}}],
                    "reason": "creator of the cluster",
                });
                let entry = AuditEntry {
                    action: "AUDIT_LOG_ACTION_ASSIGN_USER_ROLE".into(),
                    payload: payload.to_string(),
                    ..audit
                };
                record(&mut tx, &entry).await?;
            }
        }
        let cluster = load_cluster(&mut tx, &id).await?;
        tx.commit().await.ctx("committing a cluster")?;
        Ok(cluster)
    }

    /// A cluster, deleted or not.
    pub async fn get_cluster(&self, id: &str) -> Result<Cluster> {
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        load_cluster(&mut conn, id).await
    }

    /// The epoch of a live cluster's rules (one indexed read): changes whenever any of its
    /// rules changes, in content or state. 404 for a missing or deleted cluster.
    pub async fn rules_epoch(&self, id: &str) -> Result<i64> {
        let row: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT rules_epoch, deleted_at FROM clusters WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .ctx("reading a cluster's rules epoch")?;
        match row {
            None => Err(StoreError::NotFound(format!("cluster {id} not found"))),
            Some((_, Some(_))) => Err(StoreError::NotFound(format!("cluster {id} is deleted"))),
            Some((epoch, None)) => Ok(epoch),
        }
    }

    /// A cluster that is not deleted: 404 otherwise, saying which.
    pub async fn get_live_cluster(&self, id: &str) -> Result<Cluster> {
        let c = self.get_cluster(id).await?;
        if c.is_deleted() {
            return Err(StoreError::NotFound(format!("cluster {id} is deleted")));
        }
        Ok(c)
    }

    /// A page of the clusters among `visible` (None: all of them), so that a caller scoped to
    /// some clusters pages over those alone: neither the rows, the page boundaries nor whether
    /// more pages exist depend on clusters outside `visible`.
    pub async fn list_clusters(
        &self,
        show_inactive: bool,
        visible: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<Cluster>> {
        let mut sql = concat!(
            "SELECT clusters.*, ",
            endpoint_locked!("clusters"),
            " FROM clusters WHERE 1 = 1"
        )
        .to_string();
        if !show_inactive {
            sql.push_str(" AND deleted_at IS NULL");
        }
        let mut args = Vec::new();
        if let Some(ids) = visible {
            if ids.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                let mut marks = Vec::with_capacity(ids.len());
                for id in ids {
                    args.push(Arg::Text(id.clone()));
                    marks.push(format!("${}", args.len()));
                }
                sql.push_str(&format!(" AND id IN ({})", marks.join(", ")));
            }
        }
        let rows = fetch_page(&self.read, &sql, args, "sort_key", page).await?;
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        let mut items = Vec::with_capacity(rows.items.len());
        for r in &rows.items {
            let id = text(r, "id")?;
            let regions = load_regions(&mut conn, &id).await?;
            let roles = crate::credential_roles::load_credential_roles(&mut conn, &id).await?;
            items.push(cluster_from_row(r, regions, roles)?);
        }
        Ok(rows.with_items(items))
    }

    /// Apply a PATCH. Removing a region that holds egress private endpoints is refused, naming them.
    pub async fn update_cluster(
        &self,
        id: &str,
        u: &ClusterUpdate,
        audit: &AuditEntry,
    ) -> Result<Cluster> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, id).await?;
        if let Some(regions) = &u.regions {
            for old in &cluster.regions {
                if regions.iter().any(|(n, _)| n == &old.name) {
                    continue;
                }
                let eps: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM egress_endpoints WHERE cluster_id = $1 AND region = $2 ORDER BY id",
                )
                .bind(id)
                .bind(&old.name)
                .fetch_all(&mut *tx)
                .await
                .ctx("checking endpoints of a region")?;
                if !eps.is_empty() {
                    let ids: Vec<String> = eps.into_iter().map(|(i,)| i).collect();
                    return Err(StoreError::Precondition {
                        field: "dedicated.region_nodes".into(),
                        message: format!(
                            "region {} still holds egress private endpoints ({}); delete them before removing the region",
                            old.name,
                            ids.join(", ")
                        ),
                    });
                }
            }
            sqlx::query("DELETE FROM cluster_regions WHERE cluster_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("replacing regions")?;
            write_regions(&mut tx, id, regions).await?;
            // A removed region's private endpoint service goes with it, with its registration.
            let gone: Vec<&str> = cluster
                .regions
                .iter()
                .map(|r| r.name.as_str())
                .filter(|n| !regions.iter().any(|(r, _)| r == n))
                .collect();
            for region in gone {
                crate::private_ingress::retire_ingress_registrations(&mut tx, id, Some(region))
                    .await?;
                // What a provider carries is deleted there first, by the reconciler.
                crate::provider::retire_provider_resources(&mut tx, id, Some(region)).await?;
                for table in ["ingress_endpoint_services", "ingress_endpoint_connections"] {
                    sqlx::query(&format!(
                        "DELETE FROM {table} WHERE cluster_id = $1 AND region = $2 AND {}",
                        local_only(table)
                    ))
                    .bind(id)
                    .bind(region)
                    .execute(&mut *tx)
                    .await
                    .ctx("removing a region's private endpoint service")?;
                }
            }
        }
        if let Some(v) = &u.network_visibility
            && *v != cluster.network_visibility
        {
            sqlx::query("UPDATE clusters SET network_visibility = $1, visibility_changing = 1, visibility_version = policy_version WHERE id = $2")
                .bind(v)
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("changing the network visibility")?;
        }
        let labels = u.labels.as_ref().unwrap_or(&cluster.labels);
        let hardware = u.hardware.as_ref().unwrap_or(&cluster.hardware);
        let plan = u.plan.as_deref().unwrap_or(&cluster.plan);
        sqlx::query("UPDATE clusters SET labels = $1, hardware = $2, plan = $3, updated_at = $4 WHERE id = $5")
            .bind(to_json(labels))
            .bind(to_json(hardware))
            .bind(plan)
            .bind(crate::now())
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("updating a cluster")?;
        record(&mut tx, &audit.clone().for_cluster(id, &cluster.name)).await?;
        let cluster = load_cluster(&mut tx, id).await?;
        tx.commit().await.ctx("committing a cluster update")?;
        Ok(cluster)
    }

    /// Delete a cluster: it stays readable with state `DELETED`; its endpoints, rules, allowlist,
    /// ingress records, functional roles and TLS inspection
    /// setting (its CA with it) are removed in the same transaction.
    pub async fn delete_cluster(&self, id: &str, audit: &AuditEntry) -> Result<Cluster> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, id).await?;
        sqlx::query(
            "UPDATE endpoint_connections SET status = 'DELETED', updated_at = $1 \
             WHERE egress_private_endpoint_id IN (SELECT id FROM egress_endpoints WHERE cluster_id = $2)",
        )
        .bind(crate::now())
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("closing endpoint connections")?;
        // Its private endpoint services stop being `local` endpoint services.
        crate::private_ingress::retire_ingress_registrations(&mut tx, id, None).await?;
        // What a provider carries is deleted there first, by the reconciler, which then
        // removes the rows.
        crate::provider::retire_provider_resources(&mut tx, id, None).await?;
        for table in [
            "egress_endpoints",
            "egress_rules",
            "allowlist_entries",
            "ingress_endpoint_services",
            "ingress_endpoint_connections",
            "trusted_owners",
            "cluster_credential_roles",
            "cluster_tls_inspection",
            // Its gateways' tokens die with it, on every route at once.
            "gateways",
        ] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE cluster_id = $1 AND {}",
                local_only(table)
            ))
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting a cluster's resources")?;
        }
        let now = crate::now();
        sqlx::query(
            "UPDATE clusters SET state = 'DELETED', deleted_at = $1, updated_at = $1 WHERE id = $2",
        )
        .bind(&now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("deleting a cluster")?;
        record(&mut tx, &audit.clone().for_cluster(id, &cluster.name)).await?;
        let cluster = load_cluster(&mut tx, id).await?;
        tx.commit().await.ctx("committing a cluster deletion")?;
        Ok(cluster)
    }

    /// Set the egress traffic policy: the cluster reads `UPDATING` until every gateway applied it.
    pub async fn set_egress_policy(
        &self,
        id: &str,
        policy: &str,
        audit: &AuditEntry,
    ) -> Result<Cluster> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, id).await?;
        sqlx::query(
            "UPDATE clusters SET egress_policy = $1, egress_policy_updating = 1, egress_policy_version = policy_version, \
             egress_policy_changed_at = $2, updated_at = $2 WHERE id = $3",
        )
        .bind(policy)
        .bind(crate::now())
        .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("setting the egress traffic policy")?;
        record(&mut tx, &audit.clone().for_cluster(id, &cluster.name)).await?;
        let cluster = load_cluster(&mut tx, id).await?;
        tx.commit()
            .await
            .ctx("committing the egress traffic policy")?;
        Ok(cluster)
    }
}

/// Refuse a region the cluster does not have, naming the ones it has.
pub(crate) fn require_region(cluster: &Cluster, region: &str) -> Result<()> {
    if cluster.regions.iter().any(|r| r.name == region) {
        return Ok(());
    }
    let names: Vec<&str> = cluster.regions.iter().map(|r| r.name.as_str()).collect();
    Err(StoreError::Precondition {
        field: "region".into(),
        message: format!(
            "cluster {} has no region {region}; its regions are {}",
            cluster.id,
            names.join(", ")
        ),
    })
}

/// Take a live cluster's row for this transaction (serialising concurrent changes of it on
/// PostgreSQL), bump its policy version, and return it. 404 if missing or deleted.
pub(crate) async fn touch_live_cluster(conn: &mut AnyConnection, id: &str) -> Result<Cluster> {
    let n = sqlx::query("UPDATE clusters SET policy_version = policy_version + 1, rules_epoch = rules_epoch + 1 WHERE id = $1 AND deleted_at IS NULL")
        .bind(id)
        .execute(&mut *conn)
        .await
        .ctx("locking a cluster row")?
        .rows_affected();
    let cluster = load_cluster(conn, id).await?;
    if n == 0 || cluster.is_deleted() {
        return Err(StoreError::NotFound(format!("cluster {id} is deleted")));
    }
    Ok(cluster)
}

/// [`touch_live_cluster`], then refuse with `Locked` when a networking operation is in flight.
pub(crate) async fn lock_cluster(conn: &mut AnyConnection, id: &str) -> Result<Cluster> {
    let cluster = touch_live_cluster(conn, id).await?;
    if let Some(reason) = lock_reason(conn, &cluster).await? {
        return Err(StoreError::Locked(reason));
    }
    Ok(cluster)
}

/// Why the cluster is locked, if it is: an egress traffic policy change still propagating, an
/// egress private endpoint being created or deleted, or its domain names being updated.
pub(crate) async fn lock_reason(
    conn: &mut AnyConnection,
    cluster: &Cluster,
) -> Result<Option<String>> {
    if cluster.egress_policy_updating {
        return Ok(Some(format!(
            "cluster is locked: egress traffic policy of cluster {} is being updated to {}",
            cluster.id, cluster.egress_policy
        )));
    }
    if cluster.visibility_changing {
        return Ok(Some(format!(
            "cluster is locked: network visibility of cluster {} is being changed to {}",
            cluster.id, cluster.network_visibility
        )));
    }
    let row = sqlx::query(
        "SELECT id, state, domain_names_state FROM egress_endpoints \
         WHERE cluster_id = $1 AND (state IN ('PENDING', 'DELETING') OR domain_names_state = 'PENDING') \
         ORDER BY created_at LIMIT 1",
    )
    .bind(&cluster.id)
    .fetch_optional(conn)
    .await
    .ctx("checking the cluster lock")?;
    let Some(row) = row else { return Ok(None) };
    let (ep, state) = (text(&row, "id")?, text(&row, "state")?);
    let what = match state.as_str() {
        "PENDING" => "is being created",
        "DELETING" => "is being deleted",
        _ => "is having its domain names updated",
    };
    Ok(Some(format!(
        "cluster is locked: egress private endpoint {ep} {what}"
    )))
}

async fn write_regions(
    conn: &mut AnyConnection,
    id: &str,
    regions: &[(String, i64)],
) -> Result<()> {
    for (i, (name, nodes)) in regions.iter().enumerate() {
        sqlx::query("INSERT INTO cluster_regions (cluster_id, name, node_count, position) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(name)
            .bind(*nodes)
            .bind(i as i64)
            .execute(&mut *conn)
            .await
            .ctx("writing regions")?;
    }
    Ok(())
}

async fn load_regions(conn: &mut AnyConnection, id: &str) -> Result<Vec<Region>> {
    let rows = sqlx::query(
        "SELECT name, node_count FROM cluster_regions WHERE cluster_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .ctx("reading regions")?;
    rows.iter()
        .map(|r| {
            Ok(Region {
                name: text(r, "name")?,
                node_count: int(r, "node_count")?,
            })
        })
        .collect()
}

pub(crate) async fn load_cluster(conn: &mut AnyConnection, id: &str) -> Result<Cluster> {
    // One round trip: the cluster's columns repeat on each of its region rows.
    let rows = sqlx::query(concat!(
        "SELECT c.*, r.name AS region_name, r.node_count AS region_nodes, ",
        endpoint_locked!("c"),
        " FROM clusters c LEFT JOIN cluster_regions r ON r.cluster_id = c.id WHERE c.id = $1 ORDER BY r.position",
    ))
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .ctx("reading a cluster")?;
    let first = rows
        .first()
        .ok_or_else(|| StoreError::NotFound(format!("cluster {id} not found")))?;
    let mut regions = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(name) = opt_text(r, "region_name")? {
            regions.push(Region {
                name,
                node_count: int(r, "region_nodes")?,
            });
        }
    }
    let roles = crate::credential_roles::load_credential_roles(conn, id).await?;
    cluster_from_row(first, regions, roles)
}

fn cluster_from_row(
    r: &AnyRow,
    regions: Vec<Region>,
    credential_roles: Vec<CredentialRole>,
) -> Result<Cluster> {
    Ok(Cluster {
        id: text(r, "id")?,
        name: text(r, "name")?,
        provider: text(r, "provider")?,
        plan: text(r, "plan")?,
        account_id: text(r, "account_id")?,
        state: text(r, "state")?,
        network_visibility: text(r, "network_visibility")?,
        egress_policy: text(r, "egress_policy")?,
        egress_policy_updating: flag(r, "egress_policy_updating")?,
        endpoint_locked: flag(r, "endpoint_locked")?,
        egress_policy_version: int(r, "egress_policy_version")?,
        egress_policy_changed_at: text(r, "egress_policy_changed_at")?,
        allowlist_propagating: flag(r, "allowlist_propagating")?,
        allowlist_version: int(r, "allowlist_version")?,
        allowlist_changed_at: text(r, "allowlist_changed_at")?,
        visibility_changing: flag(r, "visibility_changing")?,
        visibility_version: int(r, "visibility_version")?,
        policy_version: int(r, "policy_version")?,
        labels: json(r, "labels")?,
        hardware: json(r, "hardware")?,
        cockroach_version: text(r, "cockroach_version")?,
        creator_id: text(r, "creator_id")?,
        created_at: text(r, "created_at")?,
        updated_at: text(r, "updated_at")?,
        deleted_at: opt_text(r, "deleted_at")?,
        regions,
        credential_roles,
    })
}

/// The rows of `table` that a cluster's deletion removes at once: all, except egress private
/// endpoints and private endpoint services that a provider carries (the reconciler deletes
/// them there, then removes them).
fn local_only(table: &str) -> &'static str {
    match table {
        "egress_endpoints" | "ingress_endpoint_services" => "provider = 'local'",
        _ => "1 = 1",
    }
}
