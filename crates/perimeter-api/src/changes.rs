//! Wake-ups across replicas. Every replica's snapshot long-polls wait on [`AppState::changes`];
//! a change made through this process bumps it directly, and one made through another replica
//! sharing PostgreSQL arrives as a notification from the store ([`follow`]), which also keeps
//! each cluster's latest policy version here, so an idle long-poll reads nothing from the store
//! until its cluster's version moves. Without notifications (SQLite, or a database without
//! LISTEN/NOTIFY) the long-polls read the store's version every second instead.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::AppState;

/// Cluster policy versions as the store's notifications told them, while they are followed.
#[derive(Default)]
pub struct StoreChanges {
    live: AtomicBool,
    versions: Mutex<HashMap<String, i64>>,
}

impl StoreChanges {
    /// Whether notifications are being followed: a version known here is current (up to the
    /// notification in flight, which wakes the long-polls when it lands).
    pub fn live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// The cluster's version, when notifications are followed and it is known.
    pub fn version(&self, cluster_id: &str) -> Option<i64> {
        if !self.live() {
            return None;
        }
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cluster_id)
            .copied()
    }

    /// A version read from the store or notified: kept when it is the newest seen (a read
    /// racing a notification never moves it back).
    pub fn observe(&self, cluster_id: &str, version: i64) {
        if !self.live() {
            return;
        }
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let v = map.entry(cluster_id.to_string()).or_insert(version);
        *v = (*v).max(version);
    }

    /// Forget every version (notifications may have been missed) and say whether they are
    /// followed from now on.
    fn reset(&self, live: bool) {
        let mut map = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        map.clear();
        self.live.store(live, Ordering::Release);
    }
}

/// Follow the store's change notifications until `shutdown`, waking this replica's long-polls
/// on every change. Returns at once when the store has none. A lost connection is reopened
/// (after a pause); meanwhile the long-polls read the store every second.
pub async fn follow(state: AppState, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    match state.store.install_change_notifications().await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install change notifications; long-polls read the store every second");
            return;
        }
    }
    let wake = |state: &AppState| state.changes.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        match state.store.listen_changes().await {
            Ok(Some(mut listener)) => {
                state.store_changes.reset(true);
                // Anything may have moved while nothing was followed.
                wake(&state);
                tracing::info!("following the store's change notifications");
                loop {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        next = listener.next() => match next {
                            Ok(Some(c)) => {
                                state.store_changes.observe(&c.cluster_id, c.version);
                                wake(&state);
                            }
                            Ok(None) | Err(_) => {
                                tracing::warn!("lost the store's change notifications; reconnecting");
                                state.store_changes.reset(false);
                                wake(&state);
                                break;
                            }
                        },
                    }
                }
            }
            Ok(None) => return,
            Err(e) => {
                state.store_changes.reset(false);
                tracing::warn!(error = %e, "cannot listen for the store's change notifications; retrying");
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::StoreChanges;

    #[test]
    fn versions_are_kept_only_while_followed_and_never_go_back() {
        let c = StoreChanges::default();
        c.observe("a", 3);
        assert_eq!(c.version("a"), None, "not followed: nothing kept");
        c.reset(true);
        c.observe("a", 3);
        c.observe("a", 5);
        c.observe("a", 4);
        assert_eq!(c.version("a"), Some(5));
        assert_eq!(c.version("b"), None);
        c.reset(false);
        assert_eq!(c.version("a"), None, "a lost connection forgets everything");
        c.reset(true);
        assert_eq!(c.version("a"), None);
    }
}
