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
        10,
        "control plane hardening",
        include_str!("../migrations/0010_control_plane_hardening.sql"),
    ),
];

pub(crate) async fn migrate(store: &Store) -> Result<()> {
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
    for &(version, description, sql) in MIGRATIONS {
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
