//! The ingress side's public half: the IP allowlist, and the workload addresses the ingress
//! listeners forward to (the private half is in `private_ingress.rs`).

use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::clusters::{lock_cluster, touch_live_cluster};
use crate::model::{AllowlistEntry, Cluster, RegionWorkload, flag, int, text};
use crate::page::{Arg, Page, PageRequest, fetch_page};
use crate::{Ctx, Result, Store, StoreError};

/// How an allowlist write treats an existing entry with the same CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// POST: 409 if it exists.
    CreateOnly,
    /// PUT: create or replace.
    CreateOrReplace,
    /// PATCH: 404 if it does not exist.
    UpdateOnly,
}

impl Store {
    pub async fn list_allowlist(
        &self,
        cluster_id: &str,
        page: &PageRequest,
    ) -> Result<(Page<AllowlistEntry>, bool)> {
        let cluster = self.get_live_cluster(cluster_id).await?;
        let rows = fetch_page(
            &self.read,
            "SELECT * FROM allowlist_entries WHERE cluster_id = $1",
            vec![Arg::Text(cluster_id.to_string())],
            "sort_key",
            page,
        )
        .await?;
        let items = rows
            .items
            .iter()
            .map(allowlist_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((rows.with_items(items), cluster.allowlist_propagating))
    }

    pub async fn get_allowlist_entry(
        &self,
        cluster_id: &str,
        cidr_ip: &str,
        cidr_mask: i64,
    ) -> Result<Option<AllowlistEntry>> {
        sqlx::query("SELECT * FROM allowlist_entries WHERE cluster_id = $1 AND cidr_ip = $2 AND cidr_mask = $3")
            .bind(cluster_id)
            .bind(cidr_ip)
            .bind(cidr_mask)
            .fetch_optional(&self.read)
            .await
            .ctx("reading an allowlist entry")?
            .map(|r| allowlist_from_row(&r))
            .transpose()
    }

    pub async fn write_allowlist(
        &self,
        cluster_id: &str,
        e: &AllowlistEntry,
        mode: Upsert,
        audit: &AuditEntry,
    ) -> Result<AllowlistEntry> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        let exists: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM allowlist_entries WHERE cluster_id = $1 AND cidr_ip = $2 AND cidr_mask = $3",
        )
        .bind(cluster_id)
        .bind(&e.cidr_ip)
        .bind(e.cidr_mask)
        .fetch_optional(&mut *tx)
        .await
        .ctx("reading an allowlist entry")?;
        let cidr = format!("{}/{}", e.cidr_ip, e.cidr_mask);
        match (mode, exists.is_some()) {
            (Upsert::CreateOnly, true) => {
                return Err(StoreError::Conflict {
                    field: "cidr_ip".into(),
                    message: format!(
                        "allowlist entry {cidr} already exists; use PUT or PATCH to change it"
                    ),
                });
            }
            (Upsert::UpdateOnly, false) => {
                return Err(StoreError::NotFound(format!(
                    "allowlist entry {cidr} not found in cluster {cluster_id}"
                )));
            }
            _ => {}
        }
        if exists.is_none() {
            let (have,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM allowlist_entries WHERE cluster_id = $1")
                    .bind(cluster_id)
                    .fetch_one(&mut *tx)
                    .await
                    .ctx("counting allowlist entries")?;
            Store::within(
                have,
                self.limits.allowlist_per_cluster,
                "cidr_ip",
                &format!("cluster {cluster_id} has too many allowlist entries"),
                "--max-allowlist-entries-per-cluster",
            )?;
        }
        if exists.is_some() {
            sqlx::query("UPDATE allowlist_entries SET name = $1, sql_access = $2, ui_access = $3 WHERE cluster_id = $4 AND cidr_ip = $5 AND cidr_mask = $6")
                .bind(&e.name)
                .bind(e.sql as i64)
                .bind(e.ui as i64)
                .bind(cluster_id)
                .bind(&e.cidr_ip)
                .bind(e.cidr_mask)
                .execute(&mut *tx)
                .await
                .ctx("updating an allowlist entry")?;
        } else {
            sqlx::query(
                "INSERT INTO allowlist_entries (cluster_id, cidr_ip, cidr_mask, name, sql_access, ui_access, sort_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(cluster_id)
            .bind(&e.cidr_ip)
            .bind(e.cidr_mask)
            .bind(&e.name)
            .bind(e.sql as i64)
            .bind(e.ui as i64)
            .bind(allowlist_sort_key(&e.cidr_ip, e.cidr_mask))
            .bind(crate::now())
            .execute(&mut *tx)
            .await
            .ctx("adding an allowlist entry")?;
        }
        mark_allowlist_propagating(&mut tx, cluster_id).await?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit().await.ctx("committing an allowlist entry")?;
        Ok(e.clone())
    }

    pub async fn delete_allowlist(
        &self,
        cluster_id: &str,
        cidr_ip: &str,
        cidr_mask: i64,
        audit: &AuditEntry,
    ) -> Result<AllowlistEntry> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        let row = sqlx::query("SELECT * FROM allowlist_entries WHERE cluster_id = $1 AND cidr_ip = $2 AND cidr_mask = $3")
            .bind(cluster_id)
            .bind(cidr_ip)
            .bind(cidr_mask)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an allowlist entry")?
            .ok_or_else(|| StoreError::NotFound(format!("allowlist entry {cidr_ip}/{cidr_mask} not found in cluster {cluster_id}")))?;
        let entry = allowlist_from_row(&row)?;
        sqlx::query("DELETE FROM allowlist_entries WHERE cluster_id = $1 AND cidr_ip = $2 AND cidr_mask = $3")
            .bind(cluster_id)
            .bind(cidr_ip)
            .bind(cidr_mask)
            .execute(&mut *tx)
            .await
            .ctx("deleting an allowlist entry")?;
        mark_allowlist_propagating(&mut tx, cluster_id).await?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit().await.ctx("committing an allowlist deletion")?;
        Ok(entry)
    }

    /// The workload addresses of every region of a live cluster (`""` where unset).
    pub async fn get_workload(&self, cluster_id: &str) -> Result<Vec<RegionWorkload>> {
        let mut tx = self.write.begin().await.ctx("starting a read")?;
        let cluster = crate::clusters::load_cluster(&mut tx, cluster_id).await?;
        if cluster.is_deleted() {
            return Err(StoreError::NotFound(format!(
                "cluster {cluster_id} is deleted"
            )));
        }
        let w = load_workloads(&mut tx, &cluster).await?;
        tx.commit().await.ctx("ending a read")?;
        Ok(w)
    }

    /// Replace the workload addresses of a cluster. Every region named must be one of the
    /// cluster's; regions not named are unset. Bumps the policy version: the addresses travel in
    /// the snapshot.
    pub async fn put_workload(
        &self,
        cluster_id: &str,
        workloads: &[RegionWorkload],
        audit: &AuditEntry,
    ) -> Result<Vec<RegionWorkload>> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        for w in workloads {
            crate::clusters::require_region(&cluster, &w.region).map_err(|e| match e {
                StoreError::Precondition { message, .. } => StoreError::Precondition {
                    field: format!("regions.{}", w.region),
                    message,
                },
                other => other,
            })?;
        }
        sqlx::query("DELETE FROM cluster_workloads WHERE cluster_id = $1")
            .bind(cluster_id)
            .execute(&mut *tx)
            .await
            .ctx("replacing workload addresses")?;
        for w in workloads {
            sqlx::query(
                "INSERT INTO cluster_workloads (cluster_id, region, sql_address, ui_address) VALUES ($1, $2, $3, $4)",
            )
            .bind(cluster_id)
            .bind(&w.region)
            .bind(&w.sql)
            .bind(&w.ui)
            .execute(&mut *tx)
            .await
            .ctx("writing workload addresses")?;
        }
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let w = load_workloads(&mut tx, &cluster).await?;
        tx.commit().await.ctx("committing workload addresses")?;
        Ok(w)
    }
}

async fn mark_allowlist_propagating(
    conn: &mut sqlx::AnyConnection,
    cluster_id: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE clusters SET allowlist_propagating = 1, allowlist_version = policy_version, allowlist_changed_at = $2 WHERE id = $1",
    )
    .bind(cluster_id)
    .bind(crate::now())
        .execute(conn)
        .await
        .ctx("marking the allowlist as propagating")?;
    Ok(())
}

/// The workload addresses of each of the cluster's regions, in region order.
pub(crate) async fn load_workloads(
    conn: &mut sqlx::AnyConnection,
    cluster: &Cluster,
) -> Result<Vec<RegionWorkload>> {
    let rows = sqlx::query("SELECT * FROM cluster_workloads WHERE cluster_id = $1")
        .bind(&cluster.id)
        .fetch_all(conn)
        .await
        .ctx("reading workload addresses")?;
    let mut out = Vec::with_capacity(cluster.regions.len());
    for region in &cluster.regions {
        let mut w = RegionWorkload {
            region: region.name.clone(),
            sql: String::new(),
            ui: String::new(),
        };
        for r in &rows {
            if text(r, "region")? == region.name {
                w.sql = text(r, "sql_address")?;
                w.ui = text(r, "ui_address")?;
            }
        }
        out.push(w);
    }
    Ok(out)
}

/// Sort allowlist entries by address family, then address numerically, then mask.
fn allowlist_sort_key(ip: &str, mask: i64) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => format!("4/{:08x}/{mask:03}", u32::from(a)),
        Ok(std::net::IpAddr::V6(a)) => format!("6/{:032x}/{mask:03}", u128::from(a)),
        Err(_) => format!("x/{ip}/{mask:03}"),
    }
}

pub(crate) fn allowlist_from_row(r: &AnyRow) -> Result<AllowlistEntry> {
    Ok(AllowlistEntry {
        cidr_ip: text(r, "cidr_ip")?,
        cidr_mask: int(r, "cidr_mask")?,
        name: text(r, "name")?,
        sql: flag(r, "sql_access")?,
        ui: flag(r, "ui_access")?,
    })
}
