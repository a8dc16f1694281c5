//! One decision, one event: every connection (CONNECT tunnel) and every forwarded request ends
//! in exactly one [`DecisionEvent`], emitted as a tracing event with target
//! [`DECISION_TARGET`], counted in `perimeter_egress_decisions_total` and
//! `perimeter_egress_bytes_total`, and folded into a bounded [`DecisionAggregator`] that a task
//! pushes to the control plane (`POST /api/v1/gateway/decisions`, a
//! [`PushDecisionsRequest`] of [`DecisionCount`]s).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use perimeter_wire::{DecisionCount, EndpointBytes, PushDecisionsRequest, Verdict};

use crate::control_plane::{ControlPlane, ControlPlaneError};

mod live;

pub(crate) use live::ByteCounters;

/// Tracing target of decision events.
pub const DECISION_TARGET: &str = "perimeter::decision";

/// Most distinct aggregates kept between two pushes; past it new keys are dropped and counted in
/// `perimeter_egress_decision_aggregates_dropped_total`.
pub const MAX_AGGREGATES: usize = 10_000;

/// The outcome of a connection or request as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventVerdict {
    /// Allowed by the policy and relayed (or attempted).
    Allowed,
    /// Allowed under `REPORT_ONLY`; `DEFAULT_DENY` would have refused it.
    WouldDeny,
    /// Refused: by the policy (403), or because the request was malformed or inconsistent
    /// (400), or closed after the tunnel was established (SNI/Host mismatch, policy revoked).
    Denied,
    /// The policy allowed it but the upstream failed (DNS, connect, timeout).
    Failed,
}

impl EventVerdict {
    /// Stable lower-case label (logs, metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            EventVerdict::Allowed => "allowed",
            EventVerdict::WouldDeny => "would_deny",
            EventVerdict::Denied => "denied",
            EventVerdict::Failed => "failed",
        }
    }

    /// The control plane's verdict: `ALLOWED`, `DENIED` or `WOULD_DENY`. An upstream failure
    /// is reported as `DENIED` (the connection did not go through) with its reason.
    pub fn wire(self) -> Verdict {
        match self {
            EventVerdict::Allowed => Verdict::Allowed,
            EventVerdict::WouldDeny => Verdict::WouldDeny,
            EventVerdict::Denied | EventVerdict::Failed => Verdict::Denied,
        }
    }
}

/// What the gateway decided about one connection or request, and what went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionEvent {
    pub cluster: String,
    pub region: String,
    /// The client's address.
    pub source: Option<SocketAddr>,
    /// The destination as normalised (hostname or canonical IP), or as received when it could
    /// not be parsed.
    pub destination: String,
    pub port: u16,
    /// TLS SNI or HTTP Host seen from the client, if any.
    pub sni_or_host: Option<String>,
    /// Normalised request path, when seen.
    pub path: Option<String>,
    /// The request's method, when the gateway saw a request (plain HTTP, inspected HTTPS).
    pub method: Option<String>,
    pub verdict: EventVerdict,
    /// Name of the rule that allowed.
    pub rule: Option<String>,
    /// Stable reason: a policy reason (`allowed_by_rule`, `no_rule_for_destination`,
    /// `special_address`...), or a gateway reason (`sni_mismatch`, `dns_nxdomain`...). Under
    /// `REPORT_ONLY` with verdict `WouldDeny`, the reason `DEFAULT_DENY` would have given.
    pub reason: String,
    /// Client to upstream.
    pub bytes_up: u64,
    /// Upstream to client.
    pub bytes_down: u64,
    pub duration: Duration,
}

impl DecisionEvent {
    /// Log it (target [`DECISION_TARGET`]) and count it.
    pub fn emit(&self) {
        tracing::info!(
            target: DECISION_TARGET,
            cluster = %self.cluster,
            region = %self.region,
            source = %OptionalAddr(self.source),
            destination = %self.destination,
            port = self.port,
            sni_or_host = self.sni_or_host.as_deref().unwrap_or(""),
            path = self.path.as_deref().unwrap_or(""),
            method = self.method.as_deref().unwrap_or(""),
            verdict = self.verdict.as_str(),
            rule = self.rule.as_deref().unwrap_or(""),
            reason = %self.reason,
            bytes_up = self.bytes_up,
            bytes_down = self.bytes_down,
            duration_ms = self.duration.as_millis() as u64,
            "egress decision"
        );
        metrics::counter!(
            "perimeter_egress_decisions_total",
            "cluster" => self.cluster.clone(),
            "region" => self.region.clone(),
            "verdict" => self.verdict.as_str(),
            "reason" => self.reason.clone(),
        )
        .increment(1);
        for (direction, n) in [("up", self.bytes_up), ("down", self.bytes_down)] {
            if n > 0 {
                metrics::counter!(
                    "perimeter_egress_bytes_total",
                    "cluster" => self.cluster.clone(),
                    "region" => self.region.clone(),
                    "direction" => direction,
                )
                .increment(n);
            }
        }
    }
}

/// A decision of an ingress listener: a connection admitted or refused by the IP allowlist, or
/// cut when a newer snapshot no longer admits it.
#[derive(Debug, Clone)]
pub struct IngressEvent {
    pub cluster: String,
    pub region: String,
    /// `sql` or `ui`.
    pub listener: &'static str,
    /// The judged source: the TCP peer, or the client a trusted proxy's PROXY header names.
    pub source: SocketAddr,
    /// The TCP peer (a trusted proxy when it differs from `source`).
    pub peer: SocketAddr,
    /// `ADMITTED`, `REFUSED`, or `REVOKED` (an admitted connection cut by a change).
    pub verdict: &'static str,
    /// `allowlisted`, `allowlist_empty`, `not_allowlisted`, `listener_not_allowed`,
    /// `no_snapshot`, or a gateway reason (`no_workload_address`, `workload_unreachable`,
    /// `proxy_header_untrusted`, `proxy_header_missing`, `proxy_header_invalid`,
    /// `proxy_header_truncated`, `proxy_header_timeout`, `client_closed`).
    pub reason: &'static str,
    /// The deciding allowlist entry (`cidr` and name), if any.
    pub entry: Option<String>,
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub duration: Duration,
}

impl IngressEvent {
    /// Log it (target [`DECISION_TARGET`]) and count it in
    /// `perimeter_ingress_decisions_total{cluster,region,listener,verdict,reason}`.
    pub fn emit(&self) {
        tracing::info!(
            target: DECISION_TARGET,
            cluster = %self.cluster,
            region = %self.region,
            listener = self.listener,
            source = %self.source,
            peer = %self.peer,
            verdict = self.verdict,
            reason = self.reason,
            entry = self.entry.as_deref().unwrap_or(""),
            bytes_up = self.bytes_up,
            bytes_down = self.bytes_down,
            duration_ms = self.duration.as_millis() as u64,
            "ingress decision"
        );
        metrics::counter!(
            "perimeter_ingress_decisions_total",
            "cluster" => self.cluster.clone(),
            "region" => self.region.clone(),
            "listener" => self.listener,
            "verdict" => self.verdict,
            "reason" => self.reason,
        )
        .increment(1);
    }
}

/// An optional address as a log field: the address, or nothing.
struct OptionalAddr(Option<SocketAddr>);

impl std::fmt::Display for OptionalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AggKey {
    destination: String,
    port: u16,
    verdict: Verdict,
    rule_name: String,
    reason: String,
}

#[derive(Debug, Clone)]
struct AggValue {
    count: u64,
    bytes: u64,
    /// Kept as times, formatted when drained: an event costs a clock read, not a formatting.
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

/// Decision counts since the last push, keyed (destination, port, verdict, rule, reason), at
/// most `max` keys.
#[derive(Debug)]
pub struct DecisionAggregator {
    max: usize,
    map: Mutex<HashMap<AggKey, AggValue>>,
}

impl Default for DecisionAggregator {
    fn default() -> Self {
        Self::new(MAX_AGGREGATES)
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl DecisionAggregator {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Fold one event in.
    pub fn record(&self, e: &DecisionEvent) {
        let key = AggKey {
            destination: e.destination.chars().take(300).collect(),
            port: e.port,
            verdict: e.verdict.wire(),
            rule_name: e.rule.clone().unwrap_or_default(),
            reason: e.reason.clone(),
        };
        let now = Utc::now();
        let bytes = e.bytes_up.saturating_add(e.bytes_down);
        self.add(key, 1, bytes, now, now);
    }

    fn add(&self, key: AggKey, count: u64, bytes: u64, first: DateTime<Utc>, last: DateTime<Utc>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let full = map.len() >= self.max;
        match map.get_mut(&key) {
            Some(v) => {
                v.count = v.count.saturating_add(count);
                v.bytes = v.bytes.saturating_add(bytes);
                v.last_seen = v.last_seen.max(last);
                v.first_seen = v.first_seen.min(first);
            }
            None if full => {
                metrics::counter!("perimeter_egress_decision_aggregates_dropped_total")
                    .increment(1);
            }
            None => {
                map.insert(
                    key,
                    AggValue {
                        count,
                        bytes,
                        first_seen: first,
                        last_seen: last,
                    },
                );
            }
        }
    }

    /// Take everything counted so far.
    pub fn drain(&self) -> Vec<DecisionCount> {
        let map = std::mem::take(&mut *self.map.lock().unwrap_or_else(|p| p.into_inner()));
        let mut out: Vec<DecisionCount> = map
            .into_iter()
            .map(|(k, v)| DecisionCount {
                destination: k.destination,
                port: k.port,
                verdict: k.verdict,
                rule_name: k.rule_name,
                reason: k.reason,
                count: v.count,
                bytes: v.bytes,
                first_seen: rfc3339(v.first_seen),
                last_seen: rfc3339(v.last_seen),
            })
            .collect();
        out.sort_by(|a, b| (&a.destination, a.port).cmp(&(&b.destination, b.port)));
        out
    }

    /// Put back what could not be pushed (bounded like everything else).
    pub fn restore(&self, counts: Vec<DecisionCount>) {
        for c in counts {
            let key = AggKey {
                destination: c.destination,
                port: c.port,
                verdict: c.verdict,
                rule_name: c.rule_name,
                reason: c.reason,
            };
            // The times are the ones drain formatted; one that does not parse is now.
            let time = |s: &str| {
                DateTime::parse_from_rfc3339(s).map_or_else(|_| Utc::now(), |t| t.to_utc())
            };
            self.add(
                key,
                c.count,
                c.bytes,
                time(&c.first_seen),
                time(&c.last_seen),
            );
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where decision events go: the log, the metrics, the aggregator. It holds the `region` label
/// of the gateway's events: the region of its registration, which the policy sync learns from
/// the control plane (and keeps beside the last-known-good policy), so it may change once after
/// start, from what the gateway knew then to what the control plane says.
#[derive(Debug)]
pub struct DecisionSink {
    region: RwLock<Arc<str>>,
    pub aggregator: DecisionAggregator,
    /// Bytes relayed per private endpoint since the last push (both directions).
    endpoint_bytes: Mutex<HashMap<String, u64>>,
    /// Connections to private endpoints, metered while they live.
    live: live::LiveMeters,
}

impl DecisionSink {
    /// A sink labelling events with `region` until [`DecisionSink::set_region`] says otherwise
    /// (empty: not known yet).
    pub fn new(region: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            region: RwLock::new(Arc::from(region.into())),
            aggregator: DecisionAggregator::default(),
            endpoint_bytes: Mutex::default(),
            live: live::LiveMeters::default(),
        })
    }

    /// The region label of events decided now.
    pub fn region(&self) -> String {
        self.region
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .to_string()
    }

    /// Label events decided from now on with `region`.
    pub fn set_region(&self, region: &str) {
        let mut current = self.region.write().unwrap_or_else(|p| p.into_inner());
        if **current != *region {
            *current = Arc::from(region);
        }
    }

    pub fn record(&self, event: &DecisionEvent) {
        event.emit();
        self.aggregator.record(event);
    }

    /// Log and count an ingress decision (not an egress aggregate).
    pub fn record_ingress(&self, event: &IngressEvent) {
        event.emit();
    }

    /// Meter bytes a private endpoint's forwarder relayed: the metric
    /// `perimeter_private_endpoint_bytes_total{cluster,region,endpoint,direction}`, and the
    /// endpoint's `bytes_processed` at the next push. A connection that lives on is metered
    /// through [`DecisionSink::meter_live`].
    pub fn meter_endpoint(&self, cluster: &str, endpoint: &str, up: u64, down: u64) {
        for (direction, n) in [("up", up), ("down", down)] {
            if n > 0 {
                metrics::counter!(
                    "perimeter_private_endpoint_bytes_total",
                    "cluster" => cluster.to_string(),
                    "region" => self.region(),
                    "endpoint" => endpoint.to_string(),
                    "direction" => direction,
                )
                .increment(n);
            }
        }
        if up + down > 0 {
            let mut bytes = self
                .endpoint_bytes
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *bytes.entry(endpoint.to_string()).or_default() += up + down;
        }
    }

    /// Meter the bytes `counters` count for `endpoint` of `cluster`: at every sweep
    /// ([`DecisionSink::sweep_meters`]) while the returned guard lives, and the rest when it is
    /// dropped.
    pub(crate) fn meter_live(
        self: &Arc<Self>,
        cluster: &str,
        endpoint: &str,
        counters: Arc<dyn ByteCounters>,
    ) -> Metered {
        let id = self.live.register(cluster, endpoint, counters);
        Metered {
            sink: self.clone(),
            id,
        }
    }

    /// Meter what every live connection moved since the last sweep.
    pub fn sweep_meters(&self) {
        for m in self.live.sweep() {
            self.meter_endpoint(&m.cluster, &m.endpoint, m.up, m.down);
        }
    }

    /// Take the endpoint bytes metered since the last call.
    pub fn drain_endpoint_bytes(&self) -> Vec<EndpointBytes> {
        let mut bytes = self
            .endpoint_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        bytes
            .drain()
            .map(|(endpoint_id, bytes)| EndpointBytes { endpoint_id, bytes })
            .collect()
    }

    /// Put back endpoint bytes a push could not deliver.
    pub fn restore_endpoint_bytes(&self, back: Vec<EndpointBytes>) {
        let mut bytes = self
            .endpoint_bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for b in back {
            *bytes.entry(b.endpoint_id).or_default() += b.bytes;
        }
    }
}

/// A connection metered while it lives ([`DecisionSink::meter_live`]); dropped, it meters what
/// is left and leaves the sweep.
#[must_use = "dropping it ends the metering"]
pub(crate) struct Metered {
    sink: Arc<DecisionSink>,
    id: u64,
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(m) = self.sink.live.end(self.id) {
            self.sink
                .meter_endpoint(&m.cluster, &m.endpoint, m.up, m.down);
        }
    }
}

/// Push the aggregates every `interval` until `shutdown`, then once more (bounded by the
/// client's push timeout). Each push first meters what the live connections to private
/// endpoints moved since the last ([`DecisionSink::sweep_meters`]).
pub async fn push_loop(
    sink: Arc<DecisionSink>,
    control_plane: Arc<ControlPlane>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = &mut shutdown => true,
            _ = tick.tick() => false,
        };
        sink.sweep_meters();
        let push = PushDecisionsRequest {
            decisions: sink.aggregator.drain(),
            endpoint_bytes: sink.drain_endpoint_bytes(),
        };
        if !push.decisions.is_empty() || !push.endpoint_bytes.is_empty() {
            match control_plane.push(&push).await {
                Ok(()) => {}
                Err(ControlPlaneError::Refused { status, body, .. }) => {
                    // A refusal of the content will not get better by retrying it.
                    tracing::warn!(
                        status,
                        body,
                        "control plane refused decision counts; dropping them"
                    );
                }
                Err(e @ ControlPlaneError::Unreachable { .. }) => {
                    tracing::debug!(error = %e, "control plane unreachable; keeping decision counts for the next push");
                    sink.aggregator.restore(push.decisions);
                    sink.restore_endpoint_bytes(push.endpoint_bytes);
                }
            }
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(dest: &str, verdict: EventVerdict, up: u64) -> DecisionEvent {
        DecisionEvent {
            cluster: "c".into(),
            region: "r".into(),
            source: None,
            destination: dest.into(),
            port: 443,
            sni_or_host: None,
            path: None,
            method: None,
            verdict,
            rule: Some("rule".into()),
            reason: "allowed_by_rule".into(),
            bytes_up: up,
            bytes_down: 1,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn aggregates_by_key_and_stays_bounded() {
        let agg = DecisionAggregator::new(2);
        agg.record(&event("a.example.com", EventVerdict::Allowed, 10));
        agg.record(&event("a.example.com", EventVerdict::Allowed, 5));
        agg.record(&event("a.example.com", EventVerdict::WouldDeny, 0));
        agg.record(&event("b.example.com", EventVerdict::Allowed, 0));
        let out = agg.drain();
        assert_eq!(out.len(), 2, "the third key is dropped: {out:?}");
        let allowed = out.iter().find(|c| c.verdict == Verdict::Allowed).unwrap();
        assert_eq!((allowed.count, allowed.bytes), (2, 17));
        assert!(agg.is_empty());
        agg.restore(out);
        assert_eq!(agg.len(), 2);
    }

    #[test]
    fn failures_are_reported_as_denied() {
        assert_eq!(EventVerdict::Failed.wire(), Verdict::Denied);
        assert_eq!(EventVerdict::WouldDeny.wire(), Verdict::WouldDeny);
        assert_eq!(EventVerdict::Allowed.wire(), Verdict::Allowed);
    }
}
