//! Embedded migrations, applied in order on start. Each runs in its own transaction together with
//! the row that records it, so a crash mid-migration leaves the schema at the previous version.

use crate::{Backend, Ctx, Result, Store, StoreError};

/// (version, description, SQL). Append only; never edit a migration that has shipped.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("../migrations/0001_initial.sql")),
    (
        2,
        "gateways",
        include_str!("../migrations/0002_gateways.sql"),
    ),
];

pub(crate) async fn migrate(store: &Store) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )
    .execute(&store.write)
    .await
    .ctx("creating schema_migrations")?;
    for &(version, description, sql) in MIGRATIONS {
        let mut tx = store.begin().await?;
        if store.backend == Backend::Postgres {
            // Two replicas starting together: the second waits here until the first commits.
            sqlx::query("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .ctx("locking schema_migrations")?;
        }
        let done: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading schema_migrations")?;
        if done.is_some() {
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
        sqlx::query(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(version)
        .bind(description)
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .ctx("recording a migration")?;
        tx.commit().await.ctx("committing a migration")?;
        tracing::info!(version, description, "applied store migration");
    }
    Ok(())
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
