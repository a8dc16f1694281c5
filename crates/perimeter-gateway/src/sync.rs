//! Policy sync: the gateway pulls versioned policy documents from the control plane
//! (long-poll), compiles each, persists it as last-known-good *before* acknowledging it, and
//! swaps the compiled snapshot in atomically. It starts from the last-known-good file when the
//! control plane is unreachable, and denies everything when it has none. It never falls open.
//!
//! Every answer also carries the gateway's [`Registration`]: its region labels the gateway's
//! decisions, and is kept beside the last-known-good policy. The first poll of a process asks
//! not to wait, so the registration (and any newer policy) is known at once.
//!
//! It reaches the control plane through the gateway's [`ControlPlane`] client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use perimeter_policy::{PolicyDocument, Snapshot, compile};
use perimeter_wire::AckRequest;
use tokio::sync::watch;

use crate::control_plane::{ControlPlane, ControlPlaneError};
use crate::decision::DecisionSink;
use crate::registration::{self, REGISTRATION_FILE, RegionMismatch, Registration};

/// Where the gateway keeps its last-known-good document.
pub const LKG_FILE: &str = "last-known-good.json";

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Directory of the last-known-good document.
    pub state_dir: PathBuf,
    /// Longest long-poll wait asked of the control plane (the [`ControlPlane`]'s timeouts allow
    /// for it).
    pub wait: Duration,
    /// The region the gateway was started for, if it was told one: the registration must name
    /// the same region, else the sync stops with [`RegionMismatch`].
    pub expected_region: Option<String>,
    /// Where the gateway's private ingress listener is reached, reported with every
    /// acknowledgement.
    pub private_ingress_address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    ControlPlane(#[from] ControlPlaneError),
    /// The control plane refused the gateway's token: everything is denied until it accepts
    /// it again.
    #[error("the control plane refuses this gateway's token; denying everything")]
    Revoked,
    #[error("while {context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Registration(#[from] RegionMismatch),
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
    // The inspection CA's key never goes to disk: a gateway that restarts without the control
    // plane enforces the rest of the policy, and denies what only inspection could allow
    // (`path_needs_tls_inspection`): it fails closed.
    let stored;
    let doc = if doc.tls_inspection.is_some() {
        stored = PolicyDocument {
            tls_inspection: None,
            ..doc.clone()
        };
        &stored
    } else {
        doc
    };
    let bytes = serde_json::to_vec(doc).expect("a policy document serialises");
    write_durably(state_dir, LKG_FILE, &bytes)
}

/// Write the gateway's registration durably beside the last-known-good policy.
pub fn persist_registration(state_dir: &Path, reg: &Registration) -> Result<(), SyncError> {
    let bytes = serde_json::to_vec(reg).expect("a registration serialises");
    write_durably(state_dir, REGISTRATION_FILE, &bytes)
}

/// Temp file, fsync, rename over `file`, fsync the directory.
fn write_durably(state_dir: &Path, file: &str, bytes: &[u8]) -> Result<(), SyncError> {
    use std::io::Write;
    let io = |context, path: &Path| {
        let path = path.to_owned();
        move |source| SyncError::Io {
            context,
            path,
            source,
        }
    };
    // The policy names what the cluster may reach: readable by the gateway's user alone.
    private_dir(state_dir).map_err(io("creating the state directory", state_dir))?;
    let tmp = state_dir.join(format!("{file}.tmp"));
    let mut f = private_file(&tmp).map_err(io("writing", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    let path = state_dir.join(file);
    std::fs::rename(&tmp, &path).map_err(io("replacing", &path))?;
    if let Ok(dir) = std::fs::File::open(state_dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Create `dir` if missing, and the parents it needs, 0700 each; make `dir` 0700 if it was
/// there already (parents that were are left as they are).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Create (or truncate) `path` for writing, 0600 from its first byte.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let f = options.open(path)?;
        // A file left by an earlier run keeps its mode through `open`: set it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        Ok(f)
    }
    #[cfg(not(unix))]
    options.open(path)
}

/// The running sync: a receiver of the current snapshot, swapped atomically on every version.
pub struct PolicySync {
    cfg: SyncConfig,
    control_plane: Arc<ControlPlane>,
    tx: watch::Sender<Arc<Snapshot>>,
    /// Where the region label of decisions is set.
    sink: Arc<DecisionSink>,
    /// The registration as last kept (from the state directory, then from the control plane).
    registration: std::sync::Mutex<Option<Registration>>,
    /// Whether the control plane answered this process yet: until then polls do not wait.
    answered: AtomicBool,
}

impl PolicySync {
    /// Start from the last-known-good document (or deny-all) and return the sync with the
    /// receiver listeners read from. Decisions are labelled with the region of the registration
    /// kept in the state directory, else with the expected region, else with an empty region
    /// until the control plane answers. A kept registration of another region than the
    /// expected one is refused.
    pub fn new(
        cfg: SyncConfig,
        control_plane: Arc<ControlPlane>,
        sink: Arc<DecisionSink>,
    ) -> Result<(Self, watch::Receiver<Arc<Snapshot>>), RegionMismatch> {
        let kept = registration::load(&cfg.state_dir, control_plane.gateway_id());
        match &kept {
            Some(reg) => {
                registration::check_region(reg, cfg.expected_region.as_deref())?;
                tracing::info!(gateway = %reg.id, name = %reg.name, region = %reg.region, "labelling decisions with the kept registration's region until the control plane answers");
                sink.set_region(&reg.region);
            }
            None => sink.set_region(cfg.expected_region.as_deref().unwrap_or_default()),
        }
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
        let sync = PolicySync {
            cfg,
            control_plane,
            tx,
            sink,
            registration: std::sync::Mutex::new(kept),
            answered: AtomicBool::new(false),
        };
        Ok((sync, rx))
    }

    /// Take the control plane's word on the registration: refuse one of another region than
    /// expected, keep it beside the last-known-good policy, and label decisions with its region.
    fn learn(&self, reg: Registration) -> Result<(), SyncError> {
        registration::check_region(&reg, self.cfg.expected_region.as_deref())?;
        let mut kept = self.registration.lock().unwrap_or_else(|p| p.into_inner());
        if kept.as_ref() != Some(&reg) {
            persist_registration(&self.cfg.state_dir, &reg)?;
            self.sink.set_region(&reg.region);
            tracing::info!(gateway = %reg.id, name = %reg.name, cluster = %reg.cluster_id, region = %reg.region, "registered as {} in region {}", reg.name, reg.region);
            *kept = Some(reg);
        }
        Ok(())
    }

    fn current_version(&self) -> u64 {
        self.tx.borrow().version()
    }

    /// Run until `shutdown` resolves: poll, apply, acknowledge; back off while the control plane
    /// is unreachable, enforcing what it has. Stops with the error when the control plane says
    /// the gateway is registered in another region than expected. However it stops, it leaves
    /// the deny-everything snapshot in force, so the connections still open (tunnels, private
    /// endpoint forwarders of a cluster that was deleted) are cut rather than outliving the
    /// gateway's policy.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), RegionMismatch> {
        let ended = self.run_until(shutdown).await;
        self.tx.send_replace(Arc::new(Snapshot::empty_deny()));
        ended
    }

    async fn run_until(
        &self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), RegionMismatch> {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let step = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = self.step() => r,
            };
            let pause = match step {
                Ok(()) => {
                    failures = 0;
                    Duration::ZERO
                }
                Err(SyncError::Registration(e)) => {
                    tracing::error!(error = %e, "the gateway's registration names another region; stopping");
                    return Err(e);
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
                    _ = &mut shutdown => return Ok(()),
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// One long-poll (not waiting until the control plane first answered); learns the
    /// registration, applies and acknowledges a newer document if one came.
    pub async fn step(&self) -> Result<(), SyncError> {
        let after = self.current_version();
        let wait = if self.answered.load(Ordering::Relaxed) {
            self.cfg.wait.as_secs()
        } else {
            0
        };
        let answer = match self.control_plane.snapshot(after, wait).await {
            Err(ControlPlaneError::Refused { status: 401, .. }) => {
                self.revoked();
                return Err(SyncError::Revoked);
            }
            r => r?,
        };
        if let Some(reg) = answer.gateway {
            self.learn(reg)?;
        }
        self.answered.store(true, Ordering::Relaxed);
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

    /// The control plane refuses the gateway's token: the gateway (or its cluster) was
    /// deleted, or the token is not this control plane's. Whatever the policy allowed no longer
    /// holds: deny everything now (the connections still open are cut), and forget the
    /// last-known-good policy so that a restart denies too. The sync keeps asking, backing off.
    fn revoked(&self) {
        if self.tx.borrow().version() != 0 || self.cfg.state_dir.join(LKG_FILE).exists() {
            tracing::error!(
                "the control plane refuses this gateway's token (401): the gateway or its cluster was deleted, or the token is wrong; denying everything"
            );
        }
        self.tx.send_replace(Arc::new(Snapshot::empty_deny()));
        let path = self.cfg.state_dir.join(LKG_FILE);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(path = %path.display(), error = %e, "cannot remove the last-known-good policy of a revoked gateway");
        }
    }

    async fn ack(
        &self,
        version: u64,
        applied: bool,
        error: Option<String>,
    ) -> Result<(), SyncError> {
        let ack = AckRequest {
            version,
            applied,
            error,
            private_ingress_address: self.cfg.private_ingress_address.clone(),
        };
        Ok(self.control_plane.ack(&ack).await?)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use perimeter_policy::PolicyDocument;

    use super::{LKG_FILE, load_last_known_good, persist};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Issue 14, finding 8: the state directory and `last-known-good.json` were 0755/0644.
    #[test]
    fn the_last_known_good_policy_is_private() {
        let dir = std::env::temp_dir().join(format!("perimeter-lkg-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = dir.join("state");
        let doc = PolicyDocument {
            format: perimeter_policy::POLICY_FORMAT,
            version: 3,
            cluster_id: "c".into(),
            traffic_policy: perimeter_policy::TrafficPolicy::DefaultDeny,
            ingress: Default::default(),
            rules: vec![],
            private_endpoints: vec![],
            tls_inspection: None,
        };
        persist(&state, &doc).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(LKG_FILE)), 0o600);
        // Files and directories left open by an earlier version are closed at the next write.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(state.join(LKG_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        persist(&state, &doc).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(LKG_FILE)), 0o600);
        assert_eq!(load_last_known_good(&state).unwrap().0.version, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
