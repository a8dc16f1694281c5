//! Functional roles: per cluster and purpose, the role ARN template the platform puts first in
//! the cluster's role chains. The API validates the templates; the store keeps them as text.
//! A cluster read carries them (`Cluster::credential_roles`); a deleted cluster has none.

use sqlx::AnyConnection;

use crate::audit::{AuditEntry, record};
use crate::model::{CredentialRole, text};
use crate::{Ctx, Result, Store, StoreError};

impl Store {
    /// Replace the functional roles of a live cluster with `roles` (none clears them), with
    /// its audit entry, in one transaction. The cluster's `updated_at` moves: its roles are
    /// part of what it shows. No gateway carries them, so the policy version stays.
    pub async fn put_credential_roles(
        &self,
        cluster_id: &str,
        roles: &[CredentialRole],
        audit: &AuditEntry,
    ) -> Result<Vec<CredentialRole>> {
        let mut tx = self.begin().await?;
        // Taking the row first serialises this with a concurrent delete of the cluster.
        let n =
            sqlx::query("UPDATE clusters SET updated_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(crate::now())
                .bind(cluster_id)
                .execute(&mut *tx)
                .await
                .ctx("locking a cluster row")?
                .rows_affected();
        let cluster = crate::clusters::load_cluster(&mut tx, cluster_id).await?;
        if n == 0 || cluster.is_deleted() {
            return Err(StoreError::NotFound(format!(
                "cluster {cluster_id} is deleted"
            )));
        }
        sqlx::query("DELETE FROM cluster_credential_roles WHERE cluster_id = $1")
            .bind(cluster_id)
            .execute(&mut *tx)
            .await
            .ctx("replacing credential roles")?;
        for r in roles {
            sqlx::query(
                "INSERT INTO cluster_credential_roles (cluster_id, purpose, template) VALUES ($1, $2, $3)",
            )
            .bind(cluster_id)
            .bind(&r.purpose)
            .bind(&r.template)
            .execute(&mut *tx)
            .await
            .ctx("writing credential roles")?;
        }
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let roles = load_credential_roles(&mut tx, cluster_id).await?;
        tx.commit().await.ctx("committing credential roles")?;
        Ok(roles)
    }
}

/// A cluster's functional roles, in purpose order (sorted here: SQLite and PostgreSQL collate
/// `-` differently).
pub(crate) async fn load_credential_roles(
    conn: &mut AnyConnection,
    cluster_id: &str,
) -> Result<Vec<CredentialRole>> {
    let rows =
        sqlx::query("SELECT purpose, template FROM cluster_credential_roles WHERE cluster_id = $1")
            .bind(cluster_id)
            .fetch_all(conn)
            .await
            .ctx("reading credential roles")?;
    let mut roles = rows
        .iter()
        .map(|r| {
            Ok(CredentialRole {
                purpose: text(r, "purpose")?,
                template: text(r, "template")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    roles.sort_by(|a, b| a.purpose.cmp(&b.purpose));
    Ok(roles)
}
