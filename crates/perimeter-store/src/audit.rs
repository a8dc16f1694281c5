//! The audit log: one entry per accepted change, written in the same transaction as the change.

use sqlx::AnyConnection;

use crate::model::{AuditRecord, text};
use crate::{Ctx, Result, Store, StoreError};

/// An audit entry to record with a change. `payload` must already be redacted.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry {
    pub action: String,
    pub cluster_id: String,
    pub cluster_name: String,
    /// The acting service account: its id (empty for the platform's own changes) and its name.
    /// The id is what identifies it; a name is only what it was called at the time.
    pub service_account_id: String,
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
        "INSERT INTO audit_log (id, created_at, sort_key, action, cluster_id, cluster_name, service_account_id, service_account_name, source, payload, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '')",
    )
    .bind(&id)
    .bind(&created_at)
    .bind(&sort_key)
    .bind(&entry.action)
    .bind(&entry.cluster_id)
    .bind(&entry.cluster_name)
    .bind(&entry.service_account_id)
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
    /// Entries after (ascending) / before (descending) this timestamp, exclusive, taken at
    /// whole-second precision: the second it names is left out whole (a client that sends back
    /// `next_starting_from` without its fraction, as the official SDK does, still moves on).
    pub starting_from: Option<chrono::DateTime<chrono::Utc>>,
    pub descending: bool,
    pub limit: u32,
}

/// The start of `t`'s second.
fn second_of(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(0)
}

impl Store {
    /// A page of audit entries and where the next page starts, if more remain. A page holds
    /// at least `limit` entries when that many remain, and always every entry of each second it
    /// touches: `next_starting_from` is the last entry's second, as RFC 3339 without a
    /// fraction, and the next page starts after it.
    pub async fn list_audit(&self, q: &AuditQuery) -> Result<(Vec<AuditRecord>, Option<String>)> {
        let one = chrono::Duration::seconds(1);
        let (sql, bound) = match (q.descending, q.starting_from) {
            (false, Some(t)) => (
                "SELECT * FROM audit_log WHERE created_at >= $1 ORDER BY sort_key ASC LIMIT $2",
                crate::ts(second_of(t) + one),
            ),
            (false, None) => (
                "SELECT * FROM audit_log WHERE created_at >= $1 ORDER BY sort_key ASC LIMIT $2",
                String::new(),
            ),
            (true, Some(t)) => (
                "SELECT * FROM audit_log WHERE created_at < $1 ORDER BY sort_key DESC LIMIT $2",
                crate::ts(second_of(t)),
            ),
            (true, None) => (
                "SELECT * FROM audit_log WHERE created_at < $1 ORDER BY sort_key DESC LIMIT $2",
                "9999".to_string(),
            ),
        };
        let rows = sqlx::query(sql)
            .bind(bound)
            .bind(q.limit.max(1) as i64 + 1)
            .fetch_all(&self.read)
            .await
            .ctx("listing the audit log")?;
        let mut out = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        if out.len() <= q.limit.max(1) as usize {
            return Ok((out, None));
        }
        // More remain: end the page on a whole second. Drop what was read of the last entry's
        // second and read all of that second instead.
        out.truncate(q.limit.max(1) as usize);
        let last = out.last().map(|e| e.created_at.clone()).unwrap_or_default();
        let second = chrono::DateTime::parse_from_rfc3339(&last)
            .map(|t| second_of(t.with_timezone(&chrono::Utc)))
            .map_err(|e| StoreError::Corrupt {
                table: "audit_log",
                detail: format!("created_at {last:?}: {e}"),
            })?;
        let (from, to) = (crate::ts(second), crate::ts(second + one));
        out.retain(|e| e.created_at < from || e.created_at >= to);
        let order = if q.descending { "DESC" } else { "ASC" };
        let whole = sqlx::query(&format!(
            "SELECT * FROM audit_log WHERE created_at >= $1 AND created_at < $2 ORDER BY sort_key {order}"
        ))
        .bind(&from)
        .bind(&to)
        .fetch_all(&self.read)
        .await
        .ctx("listing the audit log")?;
        for r in &whole {
            out.push(audit_from_row(r)?);
        }
        // What was read past the limit may all have been of that second.
        let beyond = if q.descending {
            "SELECT id FROM audit_log WHERE created_at < $1 LIMIT 1"
        } else {
            "SELECT id FROM audit_log WHERE created_at >= $1 LIMIT 1"
        };
        let more: Option<(String,)> = sqlx::query_as(beyond)
            .bind(if q.descending { &from } else { &to })
            .fetch_optional(&self.read)
            .await
            .ctx("listing the audit log")?;
        let next = more.map(|_| second.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        Ok((out, next))
    }

    /// Record an entry on its own (for changes with no other row to write).
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.begin().await?;
        record(&mut tx, entry).await?;
        tx.commit().await.ctx("committing an audit entry")
    }
}

fn audit_from_row(r: &sqlx::any::AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: text(r, "id")?,
        created_at: text(r, "created_at")?,
        action: text(r, "action")?,
        cluster_id: text(r, "cluster_id")?,
        cluster_name: text(r, "cluster_name")?,
        service_account_id: text(r, "service_account_id")?,
        service_account_name: text(r, "service_account_name")?,
        source: text(r, "source")?,
        payload: text(r, "payload")?,
        error: text(r, "error")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three seconds of three entries each, the entries of a second at the very same instant.
    async fn store_with_entries() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), crate::Durability::Normal)
            .await
            .unwrap();
        for (second, at) in ["10", "11", "12"].iter().enumerate() {
            for i in 0..3 {
                let created_at = format!("2026-12-03T20:00:{at}.250000Z");
                let id = format!("e{second}{i}");
                sqlx::query(
                    "INSERT INTO audit_log (id, created_at, sort_key, action, cluster_id, cluster_name, service_account_name, source, payload, error) \
                     VALUES ($1, $2, $3, 'AUDIT_LOG_ACTION_TEST', '', '', 'admin', 'API', '{}', '')",
                )
                .bind(&id)
                .bind(&created_at)
                .bind(crate::time_sort_key(&created_at, &id))
                .execute(&store.write)
                .await
                .unwrap();
            }
        }
        (store, dir)
    }

    async fn walk(store: &Store, descending: bool, drop_fraction: bool) -> (Vec<String>, usize) {
        let mut seen = Vec::new();
        let mut starting_from = None;
        for pages in 1..=10 {
            let q = AuditQuery {
                starting_from,
                descending,
                limit: 2,
            };
            let (entries, next) = store.list_audit(&q).await.unwrap();
            seen.extend(entries.iter().map(|e| e.id.clone()));
            let Some(next) = next else {
                return (seen, pages);
            };
            // A client may send it back with or without the fraction it never had.
            let text = if drop_fraction {
                next
            } else {
                next.replace('Z', ".000000Z")
            };
            starting_from = Some(
                chrono::DateTime::parse_from_rfc3339(&text)
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            );
        }
        panic!("paging does not end: {seen:?}");
    }

    #[tokio::test]
    async fn pages_hold_whole_seconds_and_starting_from_is_exclusive() {
        let (store, _dir) = store_with_entries().await;
        let ids = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        for drop_fraction in [true, false] {
            let (seen, pages) = walk(&store, false, drop_fraction).await;
            assert_eq!(
                seen,
                ids(&[
                    "e00", "e01", "e02", "e10", "e11", "e12", "e20", "e21", "e22"
                ])
            );
            assert_eq!(pages, 3, "a page per second: the limit never splits one");
            let (seen, pages) = walk(&store, true, drop_fraction).await;
            assert_eq!(
                seen,
                ids(&[
                    "e22", "e21", "e20", "e12", "e11", "e10", "e02", "e01", "e00"
                ])
            );
            assert_eq!(pages, 3);
        }
        // The first page says where to go on: the second it ends with, without a fraction.
        let (first, next) = store
            .list_audit(&AuditQuery {
                starting_from: None,
                descending: false,
                limit: 2,
            })
            .await
            .unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(next.as_deref(), Some("2026-12-03T20:00:10Z"));
        // A limit that ends exactly at the last entry: no next page.
        let (all, next) = store
            .list_audit(&AuditQuery {
                starting_from: None,
                descending: false,
                limit: 9,
            })
            .await
            .unwrap();
        assert_eq!((all.len(), next), (9, None));
    }
}
