//! Perimeter's store: schema, migrations, typed queries, transactions and leases.
//!
//! One SQL dialect serves SQLite (the embedded default), PostgreSQL and CockroachDB: columns are
//! `TEXT` or `BIGINT` only, booleans are 0/1, timestamps are fixed-width RFC 3339 UTC text so that
//! they sort as text. Queries use `$n` placeholders, which all three accept.
//!
//! Every mutation runs in one transaction together with its audit entry, so an acknowledged change
//! and its audit record are durable together. On SQLite all writes go through a single connection
//! (SQLite has one writer anyway; this avoids busy errors) while reads use a pool in WAL mode.
//! On PostgreSQL a mutation of a cluster's networking configuration first touches the cluster row,
//! which serialises concurrent changes of one cluster and makes the lock check race-free.

mod audit;
mod clusters;
mod credential_roles;
mod endpoints;
mod gateways;
mod idempotency;
mod identity;
mod ingress;
mod model;
mod notify;
mod page;
mod private_ingress;
mod provider;
mod rules;
mod schema;
mod tls_inspection;

pub use audit::{AuditEntry, AuditQuery};
pub use clusters::{ClusterUpdate, NewCluster};
pub use endpoints::{EndpointWork, NewEndpointService, endpoint_address};
pub use gateways::{DecisionQuery, PolicyInputs, RoutedEndpoint};
pub use identity::Protected;
pub use ingress::Upsert;
pub use model::*;
pub use notify::{CHANNEL as CHANGE_CHANNEL, Change, ChangeListener};
pub use page::{
    Cursor, InvalidPageToken, MAX_PAGE_TOKEN_CHARS, Page, PageBinding, PageRequest, PageTokens,
};
pub use provider::IngressServiceWork;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

/// Errors of the store. `Conflict`, `NotFound`, `Forbidden`, `Locked` and `Precondition` are
/// expected outcomes that the API maps to its error shape; `Database` is an internal failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    /// A unique constraint: the message names the resource and the field.
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// The caller's roles do not allow this change of this resource (an account holding a
    /// protected role, see [`Protected`]).
    #[error("{0}")]
    Forbidden(String),
    /// The cluster has a networking operation in flight.
    #[error("{0}")]
    Locked(String),
    /// The request is valid but the current state forbids it; `field` names the culprit.
    #[error("{message}")]
    Precondition { field: String, message: String },
    #[error("database error while {context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// A file of the embedded database could not be prepared.
    #[error("{context} ({path}): {source}")]
    Io {
        context: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub(crate) trait Ctx<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| StoreError::Database { context, source })
    }
}

/// Which database the store speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite durability. `Full` fsyncs every commit (an acknowledged change survives power loss);
/// `Normal` survives process crashes (kill -9) but not power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    #[default]
    Full,
    Normal,
}

/// The embedded default provider: private endpoints carried by the gateways themselves.
pub const LOCAL_PROVIDER: &str = "local";
/// Private endpoints carried by AWS PrivateLink.
pub const AWS_PROVIDER: &str = "aws";

/// The store: a read pool and a write pool (the same pool on PostgreSQL).
#[derive(Clone, Debug)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    limits: Limits,
    /// The provider new private endpoints and private endpoint services go to (`local`, `aws`).
    provider: &'static str,
    /// The PostgreSQL URL, for connections of their own (change notifications).
    url: Option<String>,
    /// The page-token signer, read from the database on first use ([`Store::page_tokens`]).
    page_tokens: std::sync::Arc<tokio::sync::OnceCell<PageTokens>>,
}

/// How much one organisation and one cluster may hold (`serve --max-*`): every change ships the
/// cluster's whole policy to every gateway, so what it may hold is bounded. A create past a
/// limit is refused with a 400 that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rules_per_cluster: u64,
    pub endpoints_per_cluster: u64,
    pub allowlist_per_cluster: u64,
    pub clusters: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rules_per_cluster: 100_000,
            endpoints_per_cluster: 100,
            allowlist_per_cluster: 2_000,
            clusters: 1_000,
        }
    }
}

/// The database holds API key hashes, sealed secrets and every cluster's policy: readable by
/// its owner alone. A new database file is created 0600 (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and the files of an existing one are set to 0600.
fn private_database_files(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |e: std::io::Error| StoreError::Io {
            context: "making the database files private",
            path: path.display().to_string(),
            source: e,
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        for suffix in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Store {
    /// Open (creating if needed) the embedded SQLite store at `<data_dir>/perimeter.db` and
    /// apply migrations.
    pub async fn open_sqlite(data_dir: &Path, durability: Durability) -> Result<Self> {
        Self::open_sqlite_to(data_dir, durability, i64::MAX).await
    }

    /// [`Store::open_sqlite`], applying the migrations up to `last` only.
    pub(crate) async fn open_sqlite_to(
        data_dir: &Path,
        durability: Durability,
        last: i64,
    ) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let path = data_dir.join("perimeter.db");
        private_database_files(&path)?;
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        let opts = AnyConnectOptions::from_str(&url)
            .ctx("parsing the SQLite path")?
            .disable_statement_logging();
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |c, _| sqlite_setup(c, sync))
            .connect_with(opts.clone())
            .await
            .ctx("opening the SQLite database")?;
        let store_for_migrate = Store {
            read: write.clone(),
            write: write.clone(),
            backend: Backend::Sqlite,
            limits: Limits::default(),
            provider: LOCAL_PROVIDER,
            url: None,
            page_tokens: Default::default(),
        };
        schema::migrate_to(&store_for_migrate, last).await?;
        let readers = std::thread::available_parallelism()
            .map(|n| n.get() as u32 * 2)
            .unwrap_or(4)
            .clamp(4, 16);
        let read = AnyPoolOptions::new()
            .max_connections(readers)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |c, _| sqlite_setup(c, sync))
            .connect_with(opts)
            .await
            .ctx("opening the SQLite read pool")?;
        Ok(Store {
            read,
            write,
            backend: Backend::Sqlite,
            limits: Limits::default(),
            provider: LOCAL_PROVIDER,
            url: None,
            page_tokens: Default::default(),
        })
    }

    /// Connect to PostgreSQL (or CockroachDB) at `url` and apply migrations.
    pub async fn open_postgres(url: &str) -> Result<Self> {
        Self::open_postgres_to(url, i64::MAX).await
    }

    /// [`Store::open_postgres`], applying the migrations up to `last` only.
    pub(crate) async fn open_postgres_to(url: &str, last: i64) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let opts = AnyConnectOptions::from_str(url)
            .ctx("parsing the database URL")?
            .disable_statement_logging();
        // One direct attempt first, so that a wrong URL or a server that is down fails at once
        // with its own error instead of after the pool's acquire timeout.
        use sqlx::Connection;
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::AnyConnection::connect_with(&opts),
        )
        .await
        .map_err(|_| StoreError::Database {
            context: "connecting to PostgreSQL",
            source: sqlx::Error::PoolTimedOut,
        })?
        .ctx("connecting to PostgreSQL")?;
        let _ = probe.close().await;
        let pool = AnyPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .ctx("connecting to PostgreSQL")?;
        let store = Store {
            read: pool.clone(),
            write: pool,
            backend: Backend::Postgres,
            limits: Limits::default(),
            provider: LOCAL_PROVIDER,
            url: Some(url.to_string()),
            page_tokens: Default::default(),
        };
        schema::migrate_to(&store, last).await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The same store, sending new private endpoints and private endpoint services to
    /// `provider` (`serve --provider`).
    pub fn with_provider(mut self, provider: &'static str) -> Self {
        self.provider = provider;
        self
    }

    /// The provider new private endpoints go to.
    pub fn provider(&self) -> &'static str {
        self.provider
    }

    /// The same store, holding to `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Refuse a create that would pass `limit`, which `have` already reached.
    pub(crate) fn within(have: i64, limit: u64, field: &str, what: &str, flag: &str) -> Result<()> {
        if have >= 0 && (have as u64) >= limit {
            return Err(StoreError::Precondition {
                field: field.into(),
                message: format!(
                    "{what}: {have} of at most {limit} (serve {flag}); delete one first"
                ),
            });
        }
        Ok(())
    }

    /// Cheap liveness probe of the database.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .ctx("pinging the database")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    pub(crate) async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.write.begin().await.ctx("starting a transaction")
    }
}

type SetupFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = sqlx::Result<()>> + Send + 'c>>;

/// Per-connection SQLite settings: WAL, the chosen durability, foreign keys, a busy timeout.
fn sqlite_setup<'c>(conn: &'c mut sqlx::AnyConnection, sync: &'static str) -> SetupFuture<'c> {
    use sqlx::Executor;
    Box::pin(async move {
        conn.execute("PRAGMA journal_mode = WAL").await?;
        let sync_sql = if sync == "FULL" {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        };
        conn.execute(sync_sql).await?;
        conn.execute("PRAGMA foreign_keys = ON").await?;
        conn.execute("PRAGMA busy_timeout = 10000").await?;
        Ok(())
    })
}

/// Current time in the store's timestamp format.
pub fn now() -> String {
    ts(chrono::Utc::now())
}

/// Format a time as the store's fixed-width RFC 3339 text (microseconds, `Z`).
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// A sort key that orders by creation time, then id: unique and stable.
pub(crate) fn time_sort_key(created_at: &str, id: &str) -> String {
    format!("{created_at}/{id}")
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL 23505; SQLite 2067 (SQLITE_CONSTRAINT_UNIQUE) / 1555 (PRIMARYKEY).
            code == "23505"
                || code == "2067"
                || code == "1555"
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

#[cfg(all(test, unix))]
mod file_mode_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::{Durability, Store};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    }

    /// Issue 14, finding 8: the database and its WAL and SHM files were 0644.
    #[tokio::test]
    async fn the_sqlite_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        // A write, so that the WAL and the shared memory file exist.
        sqlx::query("CREATE TABLE mode_probe (x INTEGER)")
            .execute(&store.write)
            .await
            .unwrap();
        for file in ["perimeter.db", "perimeter.db-wal", "perimeter.db-shm"] {
            assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
        }
        drop(store);
        // A database left world-readable by an earlier version is made private at open.
        let db = dir.path().join("perimeter.db");
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
