//! Connections to private endpoints, metered while they live. Each registers its byte counters
//! ([`Activity`]) with the sink; a sweep ([`DecisionSink::sweep_meters`], before every push)
//! meters what all of them moved since the last sweep, and a connection meters the rest when it
//! ends ([`Metered`] dropped). So a connection holds no timer of its own: an idle one is never
//! woken to meter nothing, and its relay runs as any tunnel's does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::DecisionSink;
use crate::listen::Activity;

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
    activity: Arc<Activity>,
    /// What was metered so far, each way.
    up: u64,
    down: u64,
}

impl Live {
    /// What moved since the last call, each way.
    fn take(&mut self) -> (u64, u64) {
        let (up, down) = (self.activity.up(), self.activity.down());
        let taken = (up.saturating_sub(self.up), down.saturating_sub(self.down));
        (self.up, self.down) = (up, down);
        taken
    }
}

/// A connection metered while it lives; dropped, it meters what is left and leaves the sweep.
#[must_use = "dropping it ends the metering"]
pub(crate) struct Metered {
    sink: Arc<DecisionSink>,
    id: u64,
}

impl Drop for Metered {
    fn drop(&mut self) {
        let live = self.sink.live.lock().conns.remove(&self.id);
        if let Some(mut live) = live {
            let (up, down) = live.take();
            self.sink
                .meter_endpoint(&live.cluster, &live.endpoint, up, down);
        }
    }
}

impl std::fmt::Debug for LiveMeters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveMeters")
            .field("connections", &self.len())
            .finish()
    }
}

impl LiveMeters {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many connections are registered.
    pub(super) fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

impl DecisionSink {
    /// Meter the bytes `activity` counts for `endpoint` of `cluster` while the returned guard
    /// lives, and the rest when it is dropped.
    pub(crate) fn meter_live(
        self: &Arc<Self>,
        cluster: &str,
        endpoint: &str,
        activity: Arc<Activity>,
    ) -> Metered {
        let mut inner = self.live.lock();
        let id = inner.next;
        inner.next += 1;
        inner.conns.insert(
            id,
            Live {
                cluster: Arc::from(cluster),
                endpoint: Arc::from(endpoint),
                activity,
                up: 0,
                down: 0,
            },
        );
        Metered {
            sink: self.clone(),
            id,
        }
    }

    /// Meter what every live connection moved since the last sweep, summed per endpoint.
    pub fn sweep_meters(&self) {
        let mut moved: HashMap<(Arc<str>, Arc<str>), (u64, u64)> = HashMap::new();
        {
            let mut inner = self.live.lock();
            for live in inner.conns.values_mut() {
                let (up, down) = live.take();
                if up + down > 0 {
                    let sum = moved
                        .entry((live.cluster.clone(), live.endpoint.clone()))
                        .or_default();
                    (sum.0, sum.1) = (sum.0 + up, sum.1 + down);
                }
            }
        }
        for ((cluster, endpoint), (up, down)) in moved {
            self.meter_endpoint(&cluster, &endpoint, up, down);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::listen::Direction;

    use super::*;

    fn drained(sink: &DecisionSink) -> Vec<(String, u64)> {
        let mut v: Vec<_> = sink
            .drain_endpoint_bytes()
            .into_iter()
            .map(|b| (b.endpoint_id, b.bytes))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn live_connections_are_metered_by_the_sweep_and_the_rest_when_they_end() {
        let sink = DecisionSink::new("r");
        let a = Activity::new();
        let b = Activity::new();
        let idle = Activity::new();
        let ma = sink.meter_live("c", "ep-1", a.clone());
        let mb = sink.meter_live("c", "ep-1", b.clone());
        let mi = sink.meter_live("c", "ep-2", idle.clone());
        assert_eq!(sink.live.len(), 3);

        a.add(Direction::Up, 100);
        a.add(Direction::Down, 7);
        b.add(Direction::Up, 3);
        sink.sweep_meters();
        assert_eq!(
            drained(&sink),
            [("ep-1".into(), 110)],
            "summed per endpoint"
        );

        // Nothing moved since: nothing metered, the idle connection included.
        sink.sweep_meters();
        assert_eq!(drained(&sink), []);

        // Ended: what moved since the last sweep is metered once, and it leaves the sweep.
        a.add(Direction::Up, 5);
        drop(ma);
        assert_eq!(sink.live.len(), 2);
        assert_eq!(drained(&sink), [("ep-1".into(), 5)]);
        a.add(Direction::Up, 1_000);
        sink.sweep_meters();
        assert_eq!(
            drained(&sink),
            [],
            "an ended connection is not metered again"
        );

        b.add(Direction::Down, 20);
        drop((mb, mi));
        assert_eq!(drained(&sink), [("ep-1".into(), 20)]);
        assert_eq!(sink.live.len(), 0);
    }
}
