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

/// Transactions the database at `url` has committed or rolled back, as PostgreSQL counts them
/// (`pg_stat_database`).
pub fn transactions(url: &str) -> i64 {
    let out = Command::new("psql")
        .args([
            url,
            "-tAc",
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        ])
        .output()
        .expect("running psql (Debian package postgresql-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Transactions of the database at `url` over `window`. PostgreSQL flushes its counters about
/// once a second, so the window is read after a settling pause on both sides; the two reads
/// themselves are taken out.
pub fn transactions_over(url: &str, window: std::time::Duration) -> i64 {
    let settle = std::time::Duration::from_millis(1500);
    std::thread::sleep(settle);
    let before = transactions(url);
    std::thread::sleep(window);
    std::thread::sleep(settle);
    transactions(url) - before - 2
}
