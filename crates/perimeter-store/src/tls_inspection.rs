//! TLS inspection of a cluster's egress: on or off, the cluster's inspection CA (its key sealed
//! by the control plane; the store never sees it in clear), the never-inspect host patterns, and
//! the propagation of the latest change, observed like the allowlist's.

use sqlx::AnyConnection;

use crate::audit::{AuditEntry, record};
use crate::clusters::lock_cluster;
use crate::model::{NewInspectionCa, TlsInspection, flag, int, json, text, to_json};
use crate::{Ctx, Result, Store, StoreError};

impl Store {
    /// The TLS inspection setting of a live cluster; `None` when it was never set. 404 for a
    /// missing or deleted cluster.
    pub async fn get_tls_inspection(&self, cluster_id: &str) -> Result<Option<TlsInspection>> {
        let mut tx = self.write.begin().await.ctx("starting a read")?;
        let cluster = crate::clusters::load_cluster(&mut tx, cluster_id).await?;
        if cluster.is_deleted() {
            return Err(StoreError::NotFound(format!(
                "cluster {cluster_id} is deleted"
            )));
        }
        let t = load_tls_inspection(&mut tx, cluster_id).await?;
        tx.commit().await.ctx("ending a read")?;
        Ok(t)
    }

    /// Turn TLS inspection on or off and set the never-inspect patterns, under the cluster lock
    /// (refused while a networking operation is in flight), with its audit entry, in one
    /// transaction. Bumps the policy version (the setting travels in the snapshot) and marks
    /// the change propagating until every live gateway applied that version.
    ///
    /// The CA is kept once the cluster has one: `new_ca` is used only when it has none yet,
    /// and is required then to turn inspection on.
    pub async fn put_tls_inspection(
        &self,
        cluster_id: &str,
        enabled: bool,
        never_inspect: &[String],
        new_ca: Option<&NewInspectionCa>,
        audit: &AuditEntry,
    ) -> Result<TlsInspection> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        let current = load_tls_inspection(&mut tx, cluster_id).await?;
        let (ca_certificate, ca_key_sealed) = match (current, new_ca) {
            (Some(c), _) if !c.ca_certificate.is_empty() => (c.ca_certificate, c.ca_key_sealed),
            (_, Some(n)) => (n.ca_certificate.clone(), n.ca_key_sealed.clone()),
            (_, None) if enabled => {
                return Err(StoreError::Precondition {
                    field: "enabled".into(),
                    message: format!(
                        "cluster {cluster_id} has no inspection CA yet; one is needed to turn inspection on"
                    ),
                });
            }
            (_, None) => (String::new(), String::new()),
        };
        sqlx::query(
            "INSERT INTO cluster_tls_inspection (cluster_id, enabled, ca_certificate, ca_key_sealed, never_inspect, propagating, changed_version, changed_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6, $7) \
             ON CONFLICT (cluster_id) DO UPDATE SET enabled = excluded.enabled, ca_certificate = excluded.ca_certificate, \
             ca_key_sealed = excluded.ca_key_sealed, never_inspect = excluded.never_inspect, propagating = 1, \
             changed_version = excluded.changed_version, changed_at = excluded.changed_at",
        )
        .bind(cluster_id)
        .bind(enabled as i64)
        .bind(&ca_certificate)
        .bind(&ca_key_sealed)
        .bind(to_json(&never_inspect))
        .bind(cluster.policy_version)
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .ctx("writing the TLS inspection setting")?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let t = load_tls_inspection(&mut tx, cluster_id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table: "cluster_tls_inspection",
                detail: format!("cluster {cluster_id}: the row just written is missing"),
            })?;
        tx.commit()
            .await
            .ctx("committing the TLS inspection setting")?;
        Ok(t)
    }

    /// End `propagating` of the TLS inspection change made at `version`.
    pub async fn settle_tls_inspection(&self, cluster_id: &str, version: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE cluster_tls_inspection SET propagating = 0 WHERE cluster_id = $1 AND changed_version = $2 AND propagating = 1",
        )
        .bind(cluster_id)
        .bind(version)
        .execute(&self.write)
        .await
        .ctx("settling the TLS inspection setting")?
        .rows_affected();
        Ok(n == 1)
    }
}

/// A cluster's TLS inspection row, if any.
pub(crate) async fn load_tls_inspection(
    conn: &mut AnyConnection,
    cluster_id: &str,
) -> Result<Option<TlsInspection>> {
    let row = sqlx::query("SELECT * FROM cluster_tls_inspection WHERE cluster_id = $1")
        .bind(cluster_id)
        .fetch_optional(conn)
        .await
        .ctx("reading the TLS inspection setting")?;
    let Some(r) = row else { return Ok(None) };
    let t = TlsInspection {
        enabled: flag(&r, "enabled")?,
        ca_certificate: text(&r, "ca_certificate")?,
        ca_key_sealed: text(&r, "ca_key_sealed")?,
        never_inspect: json(&r, "never_inspect")?,
        propagating: flag(&r, "propagating")?,
        changed_version: int(&r, "changed_version")?,
        changed_at: text(&r, "changed_at")?,
    };
    if t.enabled && (t.ca_certificate.is_empty() || t.ca_key_sealed.is_empty()) {
        return Err(StoreError::Corrupt {
            table: "cluster_tls_inspection",
            detail: format!("cluster {cluster_id}: inspection is on without a CA"),
        });
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Durability, NewCluster};

    #[tokio::test]
    async fn the_ca_is_kept_changes_propagate_and_deleting_the_cluster_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
        let cluster = store
            .create_cluster(&NewCluster::example("inspected"), &audit)
            .await
            .unwrap();
        let id = cluster.id.as_str();
        assert_eq!(store.get_tls_inspection(id).await.unwrap(), None);
        let e = store
            .put_tls_inspection(id, true, &[], None, &audit)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Precondition { field, .. } if field == "enabled"),
            "{e}"
        );
        let first = NewInspectionCa {
            ca_certificate: "CERT-1".into(),
            ca_key_sealed: "SEALED-1".into(),
        };
        let on = store
            .put_tls_inspection(
                id,
                true,
                &["pinned.example.com".into()],
                Some(&first),
                &audit,
            )
            .await
            .unwrap();
        let v1 = store.policy_version_of(id).await.unwrap().unwrap().0;
        assert!(on.enabled && on.propagating);
        assert_eq!(
            on.changed_version, v1,
            "the change is at the bumped version"
        );
        assert_eq!(on.never_inspect, vec!["pinned.example.com".to_string()]);
        assert!(
            store
                .clusters_propagating()
                .await
                .unwrap()
                .contains(&cluster.id)
        );
        // Another CA offered later is ignored: the cluster keeps its own.
        let second = NewInspectionCa {
            ca_certificate: "CERT-2".into(),
            ca_key_sealed: "SEALED-2".into(),
        };
        let off = store
            .put_tls_inspection(id, false, &[], Some(&second), &audit)
            .await
            .unwrap();
        assert!(!off.enabled);
        assert_eq!(off.ca_certificate, "CERT-1");
        assert_eq!(off.ca_key_sealed, "SEALED-1");
        assert!(off.changed_version > v1);
        // Settling an older change does nothing; the latest one ends propagating.
        assert!(!store.settle_tls_inspection(id, v1).await.unwrap());
        assert!(
            store
                .settle_tls_inspection(id, off.changed_version)
                .await
                .unwrap()
        );
        let t = store.get_tls_inspection(id).await.unwrap().unwrap();
        assert!(!t.propagating);
        assert!(
            !store
                .clusters_propagating()
                .await
                .unwrap()
                .contains(&cluster.id)
        );
        let inputs = store.policy_inputs(id).await.unwrap();
        assert_eq!(inputs.tls_inspection, Some(t));
        store.delete_cluster(id, &audit).await.unwrap();
        let left: Vec<(String,)> =
            sqlx::query_as("SELECT cluster_id FROM cluster_tls_inspection WHERE cluster_id = $1")
                .bind(id)
                .fetch_all(&store.read)
                .await
                .unwrap();
        assert!(left.is_empty(), "the CA goes with the cluster");
        assert!(matches!(
            store.get_tls_inspection(id).await,
            Err(StoreError::NotFound(_))
        ));
    }
}
