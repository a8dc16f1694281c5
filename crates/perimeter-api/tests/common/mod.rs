//! Test harness: a real control plane on a loopback socket over SQLite (a temp dir) or
//! PostgreSQL (a fresh database per test on the local server), with a reconciler running.

#![allow(dead_code)]

pub mod side;

use std::net::SocketAddr;
use std::time::Duration;

use perimeter_api::reconcile::{Reconciler, ReconcilerConfig};
use perimeter_api::{AppState, generate_key, hash_secret};
use perimeter_store::{Durability, RoleBinding, Store};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::watch;

/// Where PostgreSQL tests create their databases. `PERIMETER_TEST_PG` overrides.
pub fn pg_admin_url() -> String {
    std::env::var("PERIMETER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Who carries private endpoints on a test server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Local,
    /// `aws`, against moto with PrivateLink's behaviour on loopback.
    Aws,
}

/// The AWS side of a test server on the `aws` provider.
pub struct AwsSide {
    pub moto: perimeter_testkit::moto::Moto,
    pub provider: std::sync::Arc<perimeter_aws::AwsProvider>,
    /// The `--provider-config` text.
    pub config: String,
}

/// The regions every `aws` test server's platform network covers.
pub const AWS_REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

pub struct TestServer {
    pub addr: SocketAddr,
    pub aws: Option<AwsSide>,
    pub admin: String,
    pub store: Store,
    pub http: reqwest::Client,
    pub backend: Backend,
    stop: watch::Sender<bool>,
    _dir: Option<tempfile::TempDir>,
    pg_db: Option<String>,
}

/// Create a fresh PostgreSQL database and return its URL.
pub async fn fresh_pg_database() -> (String, String) {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("perimeter_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = tokio::time::timeout(Duration::from_secs(10), sqlx::PgConnection::connect(&admin))
        .await
        .expect("connecting to PostgreSQL timed out")
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for the postgres tests (start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    let base = admin.rsplit_once('/').expect("database URL has a path").0;
    (format!("{base}/{name}"), name)
}

pub async fn drop_pg_database(name: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

pub async fn open_store(backend: Backend) -> (Store, Option<tempfile::TempDir>, Option<String>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open_sqlite(dir.path(), Durability::Normal)
                .await
                .expect("open sqlite");
            (store, Some(dir), None)
        }
        Backend::Postgres => {
            let (url, name) = fresh_pg_database().await;
            let store = Store::open_postgres(&url).await.expect("open postgres");
            (store, None, Some(name))
        }
    }
}

pub fn org(role: &str) -> RoleBinding {
    RoleBinding {
        role: role.into(),
        resource_type: "ORGANIZATION".into(),
        resource_id: String::new(),
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, Provider::Local).await
    }

    /// A server of `backend` whose private endpoints `provider` carries.
    pub async fn start_with(backend: Backend, provider: Provider) -> TestServer {
        TestServer::start_inner(backend, provider, true).await
    }

    /// [`TestServer::start_with`] with no reconciler running: the test takes its steps.
    pub async fn start_without_reconciler(backend: Backend, provider: Provider) -> TestServer {
        TestServer::start_inner(backend, provider, false).await
    }

    /// A reconciler like the test servers run (quick intervals), on this server's store and
    /// provider.
    pub fn reconciler(&self, holder: &str) -> Reconciler {
        self.reconciler_with(test_reconciler_config(holder))
    }

    /// [`TestServer::reconciler`] with settings of the test's own.
    pub fn reconciler_with(&self, cfg: ReconcilerConfig) -> Reconciler {
        let rec = Reconciler::new(
            self.store.clone(),
            std::sync::Arc::new(tokio::sync::Notify::new()),
            cfg,
        );
        match &self.aws {
            Some(a) => rec.with_aws(a.provider.clone()),
            None => rec,
        }
    }

    async fn start_inner(backend: Backend, provider: Provider, reconcile: bool) -> TestServer {
        let (store, dir, pg_db) = open_store(backend).await;
        let aws = match provider {
            Provider::Local => None,
            Provider::Aws => Some(start_aws().await),
        };
        let store = match aws {
            Some(_) => store.with_provider(perimeter_store::AWS_PROVIDER),
            None => store,
        };
        let (id, secret) = generate_key();
        let roles = ["ORG_ADMIN", "CLUSTER_ADMIN", "PLATFORM_OPERATOR"].map(org);
        assert!(
            store
                .bootstrap_admin(&roles, &id, &hash_secret(&secret))
                .await
                .unwrap()
        );
        let state = AppState::new(store.clone()).with_secrets_key(std::sync::Arc::new(
            perimeter_api::secrets::SecretsKey::generate().unwrap(),
        ));
        let (stop, rx) = watch::channel(false);
        if reconcile {
            let rec = Reconciler::new(
                store.clone(),
                state.reconcile.clone(),
                test_reconciler_config(&format!("test-{}", uuid::Uuid::new_v4())),
            );
            let rec = match &aws {
                Some(a) => rec.with_aws(a.provider.clone()),
                None => rec,
            };
            let mut r1 = rx.clone();
            tokio::spawn(rec.run(async move {
                let _ = r1.wait_for(|s| *s).await;
            }));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        state.add_api_listener(addr);
        let mut r2 = rx.clone();
        tokio::spawn(perimeter_api::serve(listener, state, async move {
            let _ = r2.wait_for(|s| *s).await;
        }));
        TestServer {
            addr,
            aws,
            admin: secret,
            store,
            http: reqwest::Client::new(),
            backend,
            stop,
            _dir: dir,
            pg_db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Send a request with `key` (None: no Authorization header); returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = tokio::time::timeout(Duration::from_secs(20), rb.send())
            .await
            .unwrap_or_else(|_| panic!("request to {path} hung"))
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(method, path, Some(&self.admin.clone()), body)
            .await
    }

    /// As admin, expecting 200.
    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self.admin(method.clone(), path, body).await;
        assert_eq!(s, 200, "{method} {path} -> {s}: {v}");
        v
    }

    pub async fn create_cluster(&self, name: &str, regions: Value) -> String {
        let v = self
            .ok(
                Method::POST,
                "/api/v1/clusters",
                Some(json!({"name": name, "provider": "AWS", "spec": {"dedicated": {"region_nodes": regions}}})),
            )
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// A service account bound to `roles` and its API key secret.
    pub async fn key_with(&self, name: &str, roles: Value) -> (String, String) {
        let sa = self
            .ok(
                Method::POST,
                "/api/v1/service-accounts",
                Some(json!({"name": name, "description": "test", "roles": roles})),
            )
            .await;
        let sa_id = sa["id"].as_str().unwrap().to_string();
        let k = self
            .ok(
                Method::POST,
                "/api/v1/api-keys",
                Some(json!({"name": format!("{name}-key"), "service_account_id": sa_id})),
            )
            .await;
        (sa_id, k["secret"].as_str().unwrap().to_string())
    }

    /// Poll `path` until `pred` holds on the JSON, or panic after `secs` seconds.
    pub async fn wait_for(
        &self,
        path: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let (s, v) = self.admin(Method::GET, path, None).await;
            if s == 200 && pred(&v) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out after {secs}s waiting for {what} at {path}; last answer {s}: {v}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.store.close().await;
        if let Some(db) = &self.pg_db {
            drop_pg_database(db).await;
        }
    }
}

/// The test servers' reconciler settings: quick intervals and deadlines.
pub fn test_reconciler_config(holder: &str) -> ReconcilerConfig {
    ReconcilerConfig {
        holder: holder.to_string(),
        interval: Duration::from_millis(50),
        propagation_deadline: Duration::from_secs(1),
        provider_poll: Duration::from_millis(100),
        provider_backoff: Duration::from_millis(200),
        provider_refresh: Duration::from_millis(300),
        ..Default::default()
    }
}

/// moto with PrivateLink's behaviour, the platform network of [`AWS_REGIONS`] in it, and the
/// aws provider configured for it (quick SDK retries: the tests inject throttling).
pub async fn start_aws() -> AwsSide {
    let moto = tokio::task::spawn_blocking(perimeter_testkit::moto::Moto::start_privatelink)
        .await
        .expect("start moto");
    let config = moto.aws_platform(&AWS_REGIONS);
    // `perimeter serve` takes credentials from the standard chain (its own tests give them in
    // the environment); in-process, static keys stand in (moto does not check them).
    let provider = perimeter_aws::AwsProvider::connect_with(
        perimeter_aws::ProviderConfig::parse(&config).expect("a valid provider config"),
        perimeter_aws::Retries {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
        },
        Some(("AKIAIOSFODNN7EXAMPLE", "perimeter-test-secret")),
    )
    .await;
    AwsSide {
        moto,
        provider: std::sync::Arc::new(provider),
        config,
    }
}

/// Generate, for each listed `async fn name(s: &TestServer)` of the calling file, a test
/// `sqlite::name` and a test `postgres::name` running it on a fresh server of that backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = $crate::common::TestServer::start($crate::common::Backend::Sqlite).await;
                    super::$name(&s).await;
                    s.stop().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let s = $crate::common::TestServer::start($crate::common::Backend::Postgres).await;
                    super::$name(&s).await;
                    s.stop().await;
                }
            )*
        }
    };
}

pub fn field_of(v: &Value) -> String {
    v["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .map(|d| {
            d["field_violations"][0]["field"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default()
}

/// Assert a 400 naming `field`, with `needle` in the message.
pub async fn expect_invalid(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Value,
    field: &str,
    needle: &str,
) {
    let (st, v) = s.admin(method.clone(), path, Some(body.clone())).await;
    assert_eq!(st, 400, "{method} {path} {body} should be 400: {v}");
    assert!(
        v["code"] == 3 || v["code"] == 9,
        "INVALID_ARGUMENT or FAILED_PRECONDITION: {v}"
    );
    assert_eq!(field_of(&v), field, "field of {v}");
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(needle),
        "message {msg:?} should contain {needle:?}"
    );
}

/// A gateway played by an HTTP client speaking the gateway protocol.
pub struct Gw {
    pub token: String,
    pub id: String,
    pub version: u64,
}

/// Register a gateway of `cluster` in us-east-1.
pub async fn register(s: &TestServer, cluster: &str, name: &str) -> Gw {
    let v = s
        .ok(
            Method::POST,
            &format!("/api/v1/clusters/{cluster}/gateways"),
            Some(json!({"region": "us-east-1", "name": name})),
        )
        .await;
    Gw {
        token: v["token"].as_str().unwrap().to_string(),
        id: v["gateway"]["id"].as_str().unwrap().to_string(),
        version: 0,
    }
}

/// Long-poll for a newer snapshot (bounded), apply it, acknowledge it.
pub async fn sync(s: &TestServer, g: &mut Gw) -> Value {
    sync_with(s, g, None).await
}

/// [`sync`], reporting where the gateway's private ingress listener is reached.
pub async fn sync_with(s: &TestServer, g: &mut Gw, private_ingress: Option<&str>) -> Value {
    let (st, v) = s
        .call(
            Method::GET,
            &format!(
                "/api/v1/gateway/snapshot?after_version={}&wait_seconds=5",
                g.version
            ),
            Some(&g.token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let doc = v["document"].clone();
    assert!(doc.is_object(), "a newer snapshot was expected: {v}");
    let version = doc["version"].as_u64().unwrap();
    assert!(version > g.version);
    let (st, a) = s
        .call(
            Method::POST,
            "/api/v1/gateway/ack",
            Some(&g.token),
            Some(json!({"version": version, "applied": true, "private_ingress_address": private_ingress})),
        )
        .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["applied_version"], version);
    g.version = version;
    doc
}
