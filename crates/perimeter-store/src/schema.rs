//! Embedded migrations, applied in order on start. Each runs in its own transaction together with
//! the row that records it, so a crash mid-migration leaves the schema at the previous version.

use crate::{Ctx, Result, Store, StoreError};

/// (version, description, SQL). Append only; never edit a migration that has shipped.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "gateways",
        include_str!("../migrations/0002_gateways.sql"),
    ),
    (
        3,
        "forwarders",
        include_str!("../migrations/0003_forwarders.sql"),
    ),
    (
        4,
        "workloads",
        include_str!("../migrations/0004_workloads.sql"),
    ),
    (
        5,
        "rule counts",
        include_str!("../migrations/0005_rule_counts.sql"),
    ),
    (
        6,
        "private ingress",
        include_str!("../migrations/0006_private_ingress.sql"),
    ),
    (
        7,
        "credential roles",
        include_str!("../migrations/0007_credential_roles.sql"),
    ),
    (
        8,
        "tls inspection",
        include_str!("../migrations/0008_tls_inspection.sql"),
    ),
    (
        9,
        "identity",
        include_str!("../migrations/0009_identity.sql"),
    ),
    (
        10,
        "control plane hardening",
        include_str!("../migrations/0010_control_plane_hardening.sql"),
    ),
    (
        11,
        "aws provider",
        include_str!("../migrations/0011_aws_provider.sql"),
    ),
];

/// Apply the migrations up to `last` (`i64::MAX`: all; the store's tests stop earlier to load
/// the rows a later migration must carry over).
pub(crate) async fn migrate_to(store: &Store, last: i64) -> Result<()> {
    // Concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL's catalog when replicas
    // start together (a unique violation on pg_type, or "type ... already exists"); the loser
    // retries and finds the table.
    let mut attempt = 0;
    loop {
        let r = sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
        )
        .execute(&store.write)
        .await;
        match r {
            Ok(_) => break,
            Err(e) if attempt < 5 && lost_catalog_race(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(source) => {
                return Err(StoreError::Database {
                    context: "creating schema_migrations",
                    source,
                });
            }
        }
    }
    for &(version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 <= last) {
        let mut tx = store.begin().await?;
        // Claim the migration by inserting its row first. A second replica starting at the same
        // moment blocks on that row (PostgreSQL) or gets a retryable conflict (CockroachDB) and
        // then finds it taken; SQLite has a single writer. Portable across all three, unlike
        // LOCK TABLE or advisory locks.
        let claimed = sqlx::query(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3) ON CONFLICT (version) DO NOTHING",
        )
        .bind(version)
        .bind(description)
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .ctx("claiming a migration")?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await.ctx("ending a migration check")?;
            continue;
        }
        for statement in split_statements(sql) {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Database {
                    context: "applying a migration",
                    source,
                })?;
        }
        tx.commit().await.ctx("committing a migration")?;
        tracing::info!(version, description, "applied store migration");
    }
    Ok(())
}

/// Whether creating a table failed only because another session created it at the same moment:
/// a unique violation, or PostgreSQL's duplicate_object (42710, the table's row type) or
/// duplicate_table (42P07).
fn lost_catalog_race(e: &sqlx::Error) -> bool {
    let duplicate = match e {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("42710" | "42P07")),
        _ => false,
    };
    duplicate || crate::is_unique_violation(e)
}

/// Split a migration file into statements on `;` at line ends, dropping `--` comments.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let line = match line.find("--") {
            Some(i) => &line[..i],
            None => line,
        };
        if line.trim().is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{AuditEntry, AuditQuery, Durability, Store, StoreError};

    /// Three accounts named `ops` and one `solo` in a store at migration 8, and an audit entry.
    async fn load_v8(store: &Store) {
        for (id, name, at) in [
            (
                "00000000-0000-4000-8000-000000000003",
                "ops",
                "2026-01-01T00:00:03.000000Z",
            ),
            (
                "00000000-0000-4000-8000-000000000001",
                "ops",
                "2026-01-01T00:00:01.000000Z",
            ),
            (
                "00000000-0000-4000-8000-000000000002",
                "ops",
                "2026-01-01T00:00:02.000000Z",
            ),
            (
                "00000000-0000-4000-8000-000000000004",
                "solo",
                "2026-01-01T00:00:04.000000Z",
            ),
        ] {
            sqlx::query(
                "INSERT INTO service_accounts (id, name, description, creator_name, created_at, sort_key) VALUES ($1, $2, '', 'admin', $3, $4)",
            )
            .bind(id)
            .bind(name)
            .bind(at)
            .bind(crate::time_sort_key(at, id))
            .execute(&store.write)
            .await
            .unwrap();
        }
        sqlx::query(
            "INSERT INTO audit_log (id, created_at, sort_key, action, cluster_id, cluster_name, service_account_name, source, payload, error) \
             VALUES ('e1', '2026-01-01T00:00:05.000000Z', '2026-01-01T00:00:05.000000Z/e1', 'AUDIT_LOG_ACTION_TEST', '', '', 'ops', 'AUDIT_LOG_SOURCE_CC_API', '{}', '')",
        )
        .execute(&store.write)
        .await
        .unwrap();
    }

    /// After migration 9: the oldest `ops` keeps its name, the others read `ops (<id>)`; a new
    /// `ops` is a conflict naming `name`; old entries name no account id, new ones do.
    async fn check_v9(store: &Store) {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, name FROM service_accounts ORDER BY sort_key")
                .fetch_all(&store.read)
                .await
                .unwrap();
        let want: Vec<(String, String)> = [
            ("00000000-0000-4000-8000-000000000001", "ops"),
            (
                "00000000-0000-4000-8000-000000000002",
                "ops (00000000-0000-4000-8000-000000000002)",
            ),
            (
                "00000000-0000-4000-8000-000000000003",
                "ops (00000000-0000-4000-8000-000000000003)",
            ),
            ("00000000-0000-4000-8000-000000000004", "solo"),
        ]
        .iter()
        .map(|(i, n)| (i.to_string(), n.to_string()))
        .collect();
        assert_eq!(rows, want);
        let audit = AuditEntry {
            service_account_id: "00000000-0000-4000-8000-000000000004".into(),
            ..AuditEntry::api(
                "AUDIT_LOG_ACTION_CREATE_SERVICE_ACCOUNT",
                "solo",
                "{}".into(),
            )
        };
        match store
            .create_service_account("ops", "", "solo", &[], &audit)
            .await
        {
            Err(StoreError::Conflict { field, message }) => {
                assert_eq!(field, "name");
                assert!(message.contains("\"ops\""), "{message}");
            }
            other => panic!("a second ops: {other:?}"),
        }
        store
            .create_service_account("ops-2", "", "solo", &[], &audit)
            .await
            .unwrap();
        let (entries, _) = store
            .list_audit(&AuditQuery {
                starting_from: None,
                descending: false,
                limit: 10,
            })
            .await
            .unwrap();
        let ids: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e.service_account_name.as_str(),
                    e.service_account_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            ids,
            vec![
                ("ops", ""),
                ("solo", "00000000-0000-4000-8000-000000000004")
            ]
        );
    }

    #[tokio::test]
    async fn migration_9_makes_names_unique_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let old = Store::open_sqlite_to(dir.path(), Durability::Normal, 8)
            .await
            .unwrap();
        load_v8(&old).await;
        old.close().await;
        let store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        check_v9(&store).await;
    }

    /// The same on PostgreSQL (`PERIMETER_TEST_PG`, default the local server's `test`
    /// database), in a database of its own.
    #[tokio::test]
    async fn migration_9_makes_names_unique_on_postgres() {
        use sqlx::Connection;
        let admin = std::env::var("PERIMETER_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("perimeter_store_m9_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
        let old = Store::open_postgres_to(&url, 8).await.unwrap();
        load_v8(&old).await;
        old.close().await;
        let store = Store::open_postgres(&url).await.unwrap();
        check_v9(&store).await;
        store.close().await;
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let s = super::split_statements(
            "-- c\nCREATE TABLE a (x TEXT); -- t\nCREATE INDEX i ON a (x);\n",
        );
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x TEXT)", "CREATE INDEX i ON a (x)"]
        );
    }
}
