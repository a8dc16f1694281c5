//! PostgreSQL for the tests that run on both stores: a database of its own per test.

use std::process::{Command, Output};

/// A database of its own on the local PostgreSQL (`PERIMETER_TEST_PG`, default
/// `postgres://postgres@127.0.0.1:5432/test`), dropped when this value is.
pub struct PgDatabase {
    admin: String,
    name: String,
    /// What `serve --database-url` takes.
    pub url: String,
}

impl PgDatabase {
    /// Create `<name>_<pid>`, dropping a leftover of that name first; panics (saying
    /// PostgreSQL is needed) when the server cannot be reached.
    pub fn create(name: &str) -> PgDatabase {
        let admin = std::env::var("PERIMETER_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let base = admin
            .rsplit_once('/')
            .expect("a database URL")
            .0
            .to_string();
        let db = format!("{name}_{}", std::process::id());
        let out = psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
        assert!(
            out.status.success(),
            "PostgreSQL is needed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = psql(&admin, &format!("CREATE DATABASE {db}"));
        assert!(
            out.status.success(),
            "CREATE DATABASE {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgDatabase {
            url: format!("{base}/{db}"),
            admin,
            name: db,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(admin: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([admin, "-qc", sql])
        .output()
        .expect("running psql (the PostgreSQL client is needed)")
}
