//! Policy sync: the gateway pulls versioned policy documents from the control plane
//! (long-poll), compiles each, persists it as last-known-good *before* acknowledging it, and
//! swaps the compiled snapshot in atomically. It starts from the last-known-good file when the
//! control plane is unreachable, and denies everything when it has none. It never falls open.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use perimeter_policy::{PolicyDocument, Snapshot, compile};
use serde::Deserialize;
use tokio::sync::watch;

/// Where the gateway keeps its last-known-good document.
pub const LKG_FILE: &str = "last-known-good.json";

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Base URL of the control plane, e.g. `http://127.0.0.1:8080`.
    pub control_plane: String,
    /// The gateway's token (`PRGW.<id>.<secret>`).
    pub token: String,
    /// Directory of the last-known-good document.
    pub state_dir: PathBuf,
    /// Longest long-poll wait asked of the control plane.
    pub wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("control plane unreachable at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("control plane answered {status} while {context}: {body}")]
    Refused {
        status: u16,
        context: &'static str,
        body: String,
    },
    #[error("while {context}: {source}")]
    Io {
        context: &'static str,
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
struct SnapshotAnswer {
    version: u64,
    document: Option<PolicyDocument>,
}

/// Read and compile the last-known-good document, if there is a usable one.
pub fn load_last_known_good(state_dir: &Path) -> Option<(PolicyDocument, Snapshot)> {
    let path = state_dir.join(LKG_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    let doc: PolicyDocument = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "last-known-good policy is unreadable; denying everything until the control plane answers");
            return None;
        }
    };
    match compile(&doc) {
        Ok(s) => Some((doc, s)),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "last-known-good policy does not compile; denying everything until the control plane answers");
            None
        }
    }
}

/// Write the document durably: temp file, fsync, rename, fsync the directory.
pub fn persist(state_dir: &Path, doc: &PolicyDocument) -> Result<(), SyncError> {
    use std::io::Write;
    let io = |context| move |source| SyncError::Io { context, source };
    std::fs::create_dir_all(state_dir).map_err(io("creating the state directory"))?;
    let tmp = state_dir.join(format!("{LKG_FILE}.tmp"));
    let bytes = serde_json::to_vec(doc).expect("a policy document serialises");
    let mut f = std::fs::File::create(&tmp).map_err(io("writing the last-known-good policy"))?;
    f.write_all(&bytes)
        .map_err(io("writing the last-known-good policy"))?;
    f.sync_all()
        .map_err(io("syncing the last-known-good policy"))?;
    std::fs::rename(&tmp, state_dir.join(LKG_FILE))
        .map_err(io("replacing the last-known-good policy"))?;
    if let Ok(dir) = std::fs::File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The response if it is a 200, else the control plane's refusal with its body.
async fn ok_or_refused(
    resp: reqwest::Response,
    context: &'static str,
) -> Result<reqwest::Response, SyncError> {
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    Err(SyncError::Refused {
        status,
        context,
        body,
    })
}

/// The running sync: a receiver of the current snapshot, swapped atomically on every version.
pub struct PolicySync {
    cfg: SyncConfig,
    http: reqwest::Client,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl PolicySync {
    /// Start from the last-known-good document (or deny-all) and return the sync with the
    /// receiver listeners read from.
    pub fn new(cfg: SyncConfig) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let initial = match load_last_known_good(&cfg.state_dir) {
            Some((doc, snap)) => {
                tracing::info!(version = doc.version, cluster = %doc.cluster_id, "enforcing the last-known-good policy until the control plane answers");
                snap
            }
            None => {
                tracing::warn!("no policy yet: denying everything until the control plane answers");
                Snapshot::empty_deny()
            }
        };
        let (tx, rx) = watch::channel(Arc::new(initial));
        let http = reqwest::Client::builder()
            .timeout(cfg.wait + Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with timeouts builds");
        (PolicySync { cfg, http, tx }, rx)
    }

    fn current_version(&self) -> u64 {
        self.tx.borrow().version()
    }

    /// Run until `shutdown` resolves: poll, apply, acknowledge; back off while the control plane
    /// is unreachable, enforcing what it has.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let step = tokio::select! {
                _ = &mut shutdown => return,
                r = self.step() => r,
            };
            let pause = match step {
                Ok(()) => {
                    failures = 0;
                    Duration::ZERO
                }
                Err(e) => {
                    failures += 1;
                    let wait = Duration::from_millis(200u64.saturating_mul(1 << failures.min(6)))
                        .min(Duration::from_secs(10));
                    tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, version = self.current_version(), "policy sync failed; enforcing the current snapshot");
                    wait
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// One long-poll; applies and acknowledges a newer document if one came.
    pub async fn step(&self) -> Result<(), SyncError> {
        let after = self.current_version();
        let url = format!(
            "{}/api/v1/gateway/snapshot?after_version={after}&wait_seconds={}",
            self.cfg.control_plane.trim_end_matches('/'),
            self.cfg.wait.as_secs()
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.cfg.token)
            .send()
            .await
            .map_err(|source| SyncError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let resp = ok_or_refused(resp, "fetching a snapshot").await?;
        let answer: SnapshotAnswer =
            resp.json().await.map_err(|source| SyncError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let Some(doc) = answer.document else {
            tracing::debug!(
                control_plane_version = answer.version,
                "no newer policy snapshot"
            );
            return Ok(());
        };
        if doc.version <= after {
            return Ok(());
        }
        let version = doc.version;
        match compile(&doc) {
            Ok(snap) => {
                // Durable before acknowledged: a restart enforces what the control plane was told.
                persist(&self.cfg.state_dir, &doc)?;
                self.tx.send_replace(Arc::new(snap));
                tracing::info!(
                    version,
                    rules = doc.rules.len(),
                    policy = doc.traffic_policy.as_str(),
                    "applied policy snapshot"
                );
                self.ack(version, true, None).await
            }
            Err(e) => {
                tracing::error!(version, error = %e, "policy snapshot does not compile; keeping the current one");
                self.ack(version, false, Some(e.to_string())).await
            }
        }
    }

    async fn ack(
        &self,
        version: u64,
        applied: bool,
        error: Option<String>,
    ) -> Result<(), SyncError> {
        let url = format!(
            "{}/api/v1/gateway/ack",
            self.cfg.control_plane.trim_end_matches('/')
        );
        let body = serde_json::json!({"version": version, "applied": applied, "error": error});
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.cfg.token)
            .json(&body)
            .send()
            .await
            .map_err(|source| SyncError::Unreachable {
                url: url.clone(),
                source,
            })?;
        ok_or_refused(resp, "acknowledging a snapshot").await?;
        Ok(())
    }
}
