//! The audit log: one entry per accepted change, written in the same transaction as the change.

use sqlx::AnyConnection;

use crate::model::{AuditRecord, text};
use crate::{Ctx, Result, Store};

/// An audit entry to record with a change. `payload` must already be redacted.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub action: String,
    pub cluster_id: String,
    pub cluster_name: String,
    pub service_account_name: String,
    /// `AUDIT_LOG_SOURCE_CC_API` for API calls, `AUDIT_LOG_SOURCE_INTERNAL` for the reconciler.
    pub source: String,
    pub payload: String,
}

impl AuditEntry {
    pub fn api(action: &str, actor: &str, payload: String) -> Self {
        AuditEntry {
            action: action.to_string(),
            service_account_name: actor.to_string(),
            source: "AUDIT_LOG_SOURCE_CC_API".to_string(),
            payload,
            ..Default::default()
        }
    }

    pub fn internal(action: &str, actor: &str, payload: String) -> Self {
        AuditEntry {
            source: "AUDIT_LOG_SOURCE_INTERNAL".to_string(),
            ..Self::api(action, actor, payload)
        }
    }

    pub fn for_cluster(mut self, id: &str, name: &str) -> Self {
        self.cluster_id = id.to_string();
        self.cluster_name = name.to_string();
        self
    }
}

pub(crate) async fn record(conn: &mut AnyConnection, entry: &AuditEntry) -> Result<()> {
    let id = crate::new_id();
    let created_at = crate::now();
    let sort_key = crate::time_sort_key(&created_at, &id);
    sqlx::query(
        "INSERT INTO audit_log (id, created_at, sort_key, action, cluster_id, cluster_name, service_account_name, source, payload, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, '')",
    )
    .bind(&id)
    .bind(&created_at)
    .bind(&sort_key)
    .bind(&entry.action)
    .bind(&entry.cluster_id)
    .bind(&entry.cluster_name)
    .bind(&entry.service_account_name)
    .bind(&entry.source)
    .bind(&entry.payload)
    .execute(conn)
    .await
    .ctx("writing the audit log")?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// Entries at or after (ascending) / at or before (descending) this timestamp.
    pub starting_from: Option<String>,
    pub descending: bool,
    pub limit: u32,
}

impl Store {
    /// A page of audit entries and the timestamp to continue from, if more remain.
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<(Vec<AuditRecord>, Option<String>)> {
        let (op, dir) = if q.descending {
            ("<=", "DESC")
        } else {
            (">=", "ASC")
        };
        let start = q.starting_from.clone().unwrap_or_else(|| {
            if q.descending {
                "9999".to_string()
            } else {
                String::new()
            }
        });
        let sql = format!(
            "SELECT * FROM audit_log WHERE created_at {op} $1 ORDER BY sort_key {dir} LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(start)
            .bind(q.limit as i64 + 1)
            .fetch_all(&self.read)
            .await
            .ctx("listing the audit log")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(AuditRecord {
                id: text(r, "id")?,
                created_at: text(r, "created_at")?,
                action: text(r, "action")?,
                cluster_id: text(r, "cluster_id")?,
                cluster_name: text(r, "cluster_name")?,
                service_account_name: text(r, "service_account_name")?,
                source: text(r, "source")?,
                payload: text(r, "payload")?,
                error: text(r, "error")?,
            });
        }
        let next = if out.len() > q.limit as usize {
            let extra = out.pop().expect("len > limit");
            Some(extra.created_at)
        } else {
            None
        };
        Ok((out, next))
    }

    /// Record an entry on its own (for changes with no other row to write).
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.begin().await?;
        record(&mut tx, entry).await?;
        tx.commit().await.ctx("committing an audit entry")
    }
}
