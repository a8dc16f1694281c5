//! The credential cache: one entry per role chain, filled on first use, refreshed in the
//! background well before expiry, and single-flight: however many callers ask at once, one of
//! them assumes the chain and the others get its result.
//!
//! Times are kept in the cache's clock: an entry's expiry is the moment it was received plus the
//! lifetime the provider gave it (its expiration minus the wall clock at receipt), so a test's
//! [`ManualClock`](super::ManualClock) and a provider on real time agree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::task::JoinHandle;

use super::clock::Clock;
use super::sts::{AwsCredentials, ChainError, RoleChain, Sts};

/// When entries are refreshed.
#[derive(Debug, Clone, Copy)]
pub struct RefreshPolicy {
    /// Refresh this long before expiry (at half the lifetime for credentials that live less
    /// than twice this).
    pub refresh_before: Duration,
    /// A caller is never handed credentials with less than this left (a quarter of the
    /// lifetime at most): it waits for fresh ones instead.
    pub min_remaining: Duration,
    /// After a failed background refresh, try again this long later (sooner if expiry is
    /// nearer).
    pub retry_after: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            refresh_before: Duration::from_secs(15 * 60),
            min_remaining: Duration::from_secs(5 * 60),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// Cached credentials and when, in the cache's clock, they were received and expire.
#[derive(Debug, Clone)]
pub struct Cached {
    pub credentials: AwsCredentials,
    pub received: SystemTime,
    pub expires_at: SystemTime,
}

impl Cached {
    fn lifetime(&self) -> Duration {
        self.expires_at
            .duration_since(self.received)
            .unwrap_or_default()
    }

    /// When the background refresher replaces it.
    pub fn refresh_at(&self, policy: &RefreshPolicy) -> SystemTime {
        let before = policy.refresh_before.min(self.lifetime() / 2);
        self.expires_at - before
    }

    fn usable_at(&self, now: SystemTime, policy: &RefreshPolicy) -> bool {
        let need = policy.min_remaining.min(self.lifetime() / 4);
        self.expires_at
            .duration_since(now)
            .is_ok_and(|left| left > need)
    }
}

/// What the cache did, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Chains assumed because a caller found nothing usable.
    pub fills: u64,
    /// Chains assumed by the background refresher.
    pub refreshes: u64,
    /// Failed assumptions (either kind).
    pub failures: u64,
}

#[derive(Default)]
struct Counters {
    fills: AtomicU64,
    refreshes: AtomicU64,
    failures: AtomicU64,
}

struct Entry {
    chain: RoleChain,
    current: Mutex<Option<Cached>>,
    /// Held by whoever is assuming the chain; it keeps the last attempt's error for the callers
    /// that waited on it.
    flight: tokio::sync::Mutex<Flight>,
    /// Finished attempts.
    attempts: AtomicU64,
    refresher: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Flight {
    last_error: Option<ChainError>,
}

impl Entry {
    fn current(&self) -> Option<Cached> {
        self.current.lock().expect("entry lock").clone()
    }
}

struct Inner {
    sts: Arc<Sts>,
    clock: Arc<dyn Clock>,
    policy: RefreshPolicy,
    entries: Mutex<HashMap<RoleChain, Arc<Entry>>>,
    counters: Counters,
}

/// The cache. Cheap to clone (shared); dropping the last clone stops its refreshers.
#[derive(Clone)]
pub struct CredentialCache {
    inner: Arc<Inner>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for entry in self.entries.get_mut().expect("entries lock").values() {
            if let Some(task) = entry.refresher.lock().expect("refresher lock").take() {
                task.abort();
            }
        }
    }
}

impl CredentialCache {
    pub fn new(sts: Arc<Sts>, clock: Arc<dyn Clock>, policy: RefreshPolicy) -> CredentialCache {
        CredentialCache {
            inner: Arc::new(Inner {
                sts,
                clock,
                policy,
                entries: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            fills: c.fills.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// The STS client the cache assumes chains with.
    pub fn sts(&self) -> &Arc<Sts> {
        &self.inner.sts
    }

    /// What the cache holds for a chain, if anything.
    pub fn peek(&self, chain: &RoleChain) -> Option<Cached> {
        let entry = self
            .inner
            .entries
            .lock()
            .expect("entries lock")
            .get(chain)
            .cloned();
        entry.and_then(|e| e.current())
    }

    /// When the refresher will next replace the chain's credentials.
    pub fn next_refresh(&self, chain: &RoleChain) -> Option<SystemTime> {
        self.peek(chain).map(|c| c.refresh_at(&self.inner.policy))
    }

    /// Credentials of the chain with at least the policy's `min_remaining` left: cached, or
    /// assumed now (once for all concurrent callers).
    pub async fn get(&self, chain: &RoleChain) -> Result<AwsCredentials, ChainError> {
        let inner = &self.inner;
        let entry = {
            let mut entries = inner.entries.lock().expect("entries lock");
            entries
                .entry(chain.clone())
                .or_insert_with(|| {
                    Arc::new(Entry {
                        chain: chain.clone(),
                        current: Mutex::new(None),
                        flight: tokio::sync::Mutex::new(Flight::default()),
                        attempts: AtomicU64::new(0),
                        refresher: Mutex::new(None),
                    })
                })
                .clone()
        };
        if let Some(c) = self.usable(&entry) {
            return Ok(c);
        }
        let seen = entry.attempts.load(Ordering::Acquire);
        let mut flight = entry.flight.lock().await;
        if let Some(c) = self.usable(&entry) {
            return Ok(c);
        }
        if entry.attempts.load(Ordering::Acquire) != seen
            && let Some(e) = &flight.last_error
        {
            // The attempt we waited behind failed: share its answer instead of piling on.
            return Err(e.clone());
        }
        inner.counters.fills.fetch_add(1, Ordering::Relaxed);
        let result = assume_into(inner, &entry, &mut flight).await;
        drop(flight);
        let creds = result?;
        self.start_refresher(&entry);
        Ok(creds)
    }

    fn usable(&self, entry: &Entry) -> Option<AwsCredentials> {
        let now = self.inner.clock.now();
        entry
            .current()
            .filter(|c| c.usable_at(now, &self.inner.policy))
            .map(|c| c.credentials)
    }

    fn start_refresher(&self, entry: &Arc<Entry>) {
        let mut slot = entry.refresher.lock().expect("refresher lock");
        if slot.is_some() {
            return;
        }
        *slot = Some(tokio::spawn(refresh_loop(
            Arc::downgrade(&self.inner),
            Arc::downgrade(entry),
        )));
    }
}

/// Assume the entry's chain (the caller holds its flight) and store the result.
async fn assume_into(
    inner: &Inner,
    entry: &Entry,
    flight: &mut Flight,
) -> Result<AwsCredentials, ChainError> {
    let result = inner.sts.assume(&entry.chain).await;
    match &result {
        Ok(creds) => {
            flight.last_error = None;
            let received = inner.clock.now();
            let lifetime = creds
                .expiration
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            *entry.current.lock().expect("entry lock") = Some(Cached {
                credentials: creds.clone(),
                received,
                expires_at: received + lifetime,
            });
        }
        Err(e) => {
            inner.counters.failures.fetch_add(1, Ordering::Relaxed);
            flight.last_error = Some(e.clone());
        }
    }
    entry.attempts.fetch_add(1, Ordering::Release);
    result
}

/// Replace the entry's credentials at their refresh time, for as long as the cache lives.
async fn refresh_loop(inner: Weak<Inner>, entry: Weak<Entry>) {
    loop {
        let (sleep, at) = {
            let (Some(inner), Some(entry)) = (inner.upgrade(), entry.upgrade()) else {
                return;
            };
            let Some(current) = entry.current() else {
                return;
            };
            let at = current.refresh_at(&inner.policy);
            (inner.clock.sleep_until(at), at)
        };
        sleep.await;
        let (Some(inner), Some(entry)) = (inner.upgrade(), entry.upgrade()) else {
            return;
        };
        let mut flight = entry.flight.lock().await;
        // A caller may have refilled it meanwhile.
        if entry
            .current()
            .is_some_and(|c| c.refresh_at(&inner.policy) > at)
        {
            continue;
        }
        match assume_into(&inner, &entry, &mut flight).await {
            Ok(_) => {
                inner.counters.refreshes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(chain = %entry.chain, "credentials refreshed");
            }
            Err(e) => {
                tracing::warn!(chain = %entry.chain, error = %e, "credential refresh failed; retrying");
                drop(flight);
                let left = entry
                    .current()
                    .and_then(|c| c.expires_at.duration_since(inner.clock.now()).ok())
                    .unwrap_or_default();
                let wait = inner
                    .policy
                    .retry_after
                    .min(left / 2)
                    .max(Duration::from_secs(1));
                let retry = inner.clock.sleep_until(inner.clock.now() + wait);
                drop(inner);
                drop(entry);
                retry.await;
                // Refresh again at once: the stored credentials' refresh time has passed.
            }
        }
    }
}
