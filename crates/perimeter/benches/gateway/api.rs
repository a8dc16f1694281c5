//! The control plane's REST API, called over HTTP with the admin key, as an operator would.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::BIN;
use crate::procs::Proc;

/// Start `perimeter serve` on loopback, its SQLite database under `<dir>/cp` (durability
/// normal), with none of the environment's `PERIMETER_*` settings and `extra` flags after;
/// wait until it listens. Returns it and a client of its API with the admin key, keeping at
/// most `idle` idle connections.
pub(crate) fn start_serve(dir: &Path, extra: &[&str], idle: usize) -> (Proc, Api) {
    let data = dir.join("cp");
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "normal",
        "--data-dir",
    ])
    .arg(&data)
    .args(extra);
    for var in [
        "PERIMETER_ADMIN_API_KEY",
        "PERIMETER_DATABASE_URL",
        "PERIMETER_LISTEN",
        "PERIMETER_DATA_DIR",
        "PERIMETER_SECRETS_KEY_FILE",
        "PERIMETER_LOG_FORMAT",
        "PERIMETER_LOG",
    ] {
        cmd.env_remove(var);
    }
    let mut serve = Proc::spawn("perimeter serve", &mut cmd, dir.join("serve.log"));
    let base = serve.announced("control plane listening on ", 60);
    let key = std::fs::read_to_string(data.join("admin-api-key"))
        .expect("admin-api-key")
        .trim()
        .to_string();
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(idle)
            .build()
            .unwrap(),
        base,
        key,
    };
    (serve, api)
}

pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) key: String,
}

impl Api {
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        for attempt in 0..20 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key);
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v = r.json::<Value>().await.unwrap_or(Value::Null);
                    if status == 429 || status == 503 {
                        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
                        continue;
                    }
                    return (status, v);
                }
                Err(e) if attempt < 19 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
        panic!("{method} {path}: still refused after 20 attempts");
    }

    pub(crate) async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (st, v) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }
}

/// Await every future, polling them together (no extra dependency for join_all).
pub(crate) async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(move |cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
