//! Connections to private endpoints, metered while they live: the bookkeeping. Each connection
//! registers its byte counters ([`ByteCounters`]); a sweep takes what all of them moved since
//! the last one, summed per endpoint, and a connection that ends gives what it moved since.
//! The sink meters what these return ([`super::DecisionSink::sweep_meters`], before every
//! push), so a connection holds no timer of its own: an idle one is never woken to meter
//! nothing, and its relay runs as any tunnel's does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A live connection's byte counters, read at each sweep.
pub trait ByteCounters: Send + Sync {
    /// Bytes from the client to the upstream so far.
    fn up(&self) -> u64;
    /// Bytes from the upstream to the client so far.
    fn down(&self) -> u64;
}

/// Bytes moved for an endpoint of a cluster.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Moved {
    pub(super) cluster: Arc<str>,
    pub(super) endpoint: Arc<str>,
    pub(super) up: u64,
    pub(super) down: u64,
}

/// The live connections of a sink.
#[derive(Default)]
pub(super) struct LiveMeters {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, Live>,
}

struct Live {
    cluster: Arc<str>,
    endpoint: Arc<str>,
    counters: Arc<dyn ByteCounters>,
    /// What was taken so far, each way.
    up: u64,
    down: u64,
}

impl Live {
    /// What moved since the last call.
    fn take(&mut self) -> Moved {
        let (up, down) = (self.counters.up(), self.counters.down());
        let moved = Moved {
            cluster: self.cluster.clone(),
            endpoint: self.endpoint.clone(),
            up: up.saturating_sub(self.up),
            down: down.saturating_sub(self.down),
        };
        (self.up, self.down) = (up, down);
        moved
    }
}

impl std::fmt::Debug for LiveMeters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMeters")
            .field("connections", &self.lock().conns.len())
            .finish()
    }
}

impl LiveMeters {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a connection to `endpoint` of `cluster`; its id, for [`LiveMeters::end`].
    pub(super) fn register(
        &self,
        cluster: &str,
        endpoint: &str,
        counters: Arc<dyn ByteCounters>,
    ) -> u64 {
        let mut inner = self.lock();
        let id = inner.next;
        inner.next += 1;
        let live = Live {
            cluster: Arc::from(cluster),
            endpoint: Arc::from(endpoint),
            counters,
            up: 0,
            down: 0,
        };
        inner.conns.insert(id, live);
        id
    }

    /// Unregister connection `id`: what it moved since the last sweep (`None`: not registered).
    pub(super) fn end(&self, id: u64) -> Option<Moved> {
        let live = self.lock().conns.remove(&id);
        live.map(|mut l| l.take())
    }

    /// What every live connection moved since the last sweep, summed per endpoint; endpoints
    /// whose connections moved nothing are left out.
    pub(super) fn sweep(&self) -> Vec<Moved> {
        let mut moved: HashMap<(Arc<str>, Arc<str>), Moved> = HashMap::new();
        for live in self.lock().conns.values_mut() {
            let m = live.take();
            if m.up + m.down == 0 {
                continue;
            }
            let key = (m.cluster.clone(), m.endpoint.clone());
            match moved.get_mut(&key) {
                Some(sum) => (sum.up, sum.down) = (sum.up + m.up, sum.down + m.down),
                None => {
                    moved.insert(key, m);
                }
            }
        }
        moved.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::decision::DecisionSink;

    #[derive(Default)]
    struct Counters(AtomicU64, AtomicU64);

    impl Counters {
        fn add(&self, up: u64, down: u64) {
            self.0.fetch_add(up, Ordering::Relaxed);
            self.1.fetch_add(down, Ordering::Relaxed);
        }
    }

    impl ByteCounters for Counters {
        fn up(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
        fn down(&self) -> u64 {
            self.1.load(Ordering::Relaxed)
        }
    }

    fn moved(endpoint: &str, up: u64, down: u64) -> Moved {
        Moved {
            cluster: Arc::from("c"),
            endpoint: Arc::from(endpoint),
            up,
            down,
        }
    }

    fn sorted(mut v: Vec<Moved>) -> Vec<Moved> {
        v.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
        v
    }

    #[test]
    fn a_sweep_takes_what_moved_since_the_last_per_endpoint_and_an_end_the_rest() {
        let live = LiveMeters::default();
        let [a, b, c, idle] = <[Arc<Counters>; 4]>::default();
        let ia = live.register("c", "ep-1", a.clone());
        let ib = live.register("c", "ep-1", b.clone());
        let ic = live.register("c", "ep-3", c.clone());
        let ii = live.register("c", "ep-2", idle.clone());

        a.add(100, 7);
        b.add(3, 0);
        c.add(0, 1);
        assert_eq!(
            sorted(live.sweep()),
            [moved("ep-1", 103, 7), moved("ep-3", 0, 1)],
            "summed per endpoint; the idle connection's endpoint left out"
        );
        assert_eq!(live.sweep(), [], "nothing moved since");

        // Ended: what moved since the last sweep, once; then it leaves the sweep.
        a.add(5, 0);
        assert_eq!(live.end(ia), Some(moved("ep-1", 5, 0)));
        assert_eq!(live.end(ia), None, "ended once");
        a.add(1_000, 0);
        assert_eq!(live.sweep(), [], "an ended connection is not swept");

        b.add(0, 20);
        assert_eq!(live.end(ib), Some(moved("ep-1", 0, 20)));
        assert_eq!(live.end(ii), Some(moved("ep-2", 0, 0)));
        assert_eq!(live.end(ic), Some(moved("ep-3", 0, 0)));
        assert_eq!(live.lock().conns.len(), 0);
    }

    #[test]
    fn the_sink_meters_at_a_sweep_and_the_rest_when_the_guard_drops() {
        let sink = DecisionSink::new("r");
        let drained = || -> Vec<(String, u64)> {
            let bytes = sink.drain_endpoint_bytes().into_iter();
            bytes.map(|b| (b.endpoint_id, b.bytes)).collect()
        };
        let a = Arc::new(Counters::default());
        let guard = sink.meter_live("c", "ep-1", a.clone());
        a.add(10, 2);
        sink.sweep_meters();
        assert_eq!(drained(), [("ep-1".to_string(), 12)]);
        a.add(1, 0);
        drop(guard);
        assert_eq!(
            drained(),
            [("ep-1".to_string(), 1)],
            "the rest, when it ends"
        );
        a.add(1, 0);
        sink.sweep_meters();
        assert_eq!(drained(), [], "gone from the sweep");
    }
}
