//! What is known of a connection or request as it goes down the pipeline ([`Draft`]), finished
//! exactly once as a [`DecisionEvent`]. A forwarded request finishes when both its request
//! body and its response are done ([`SharedDraft`]), so the event counts the whole upload.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::Response;
use perimeter_policy::{Decision, Snapshot};

use super::ProxyContext;
use super::refusal::{ProxyBody, Refusal, Why};
use super::relay::Activity;
use crate::decision::{DecisionEvent, DecisionSink, EventVerdict};

/// A decision event being filled in.
pub(crate) struct Draft {
    sink: Arc<DecisionSink>,
    pub(crate) cluster: String,
    pub(crate) source: SocketAddr,
    pub(crate) destination: String,
    pub(crate) port: u16,
    pub(crate) sni_or_host: Option<String>,
    pub(crate) path: Option<String>,
    /// The request's method (forwarded requests only).
    pub(crate) method: Option<String>,
    pub(crate) rule: Option<String>,
    /// A request forwarded to this private endpoint: its bytes are metered at the finish.
    pub(crate) endpoint: Option<Arc<str>>,
    started: Instant,
}

impl Draft {
    /// A draft for a decision taken on the current snapshot.
    pub(crate) fn new(
        ctx: &ProxyContext,
        source: SocketAddr,
        destination: String,
        port: u16,
    ) -> Self {
        Self::on(ctx, &ctx.snapshots.borrow(), source, destination, port)
    }

    /// A draft for a decision taken on `snap`.
    pub(crate) fn on(
        ctx: &ProxyContext,
        snap: &Snapshot,
        source: SocketAddr,
        destination: String,
        port: u16,
    ) -> Self {
        Self {
            sink: ctx.sink.clone(),
            cluster: snap.cluster_id().to_string(),
            source,
            destination,
            port,
            sni_or_host: None,
            path: None,
            rule: None,
            method: None,
            endpoint: None,
            started: Instant::now(),
        }
    }

    /// The rule of an allowing decision.
    pub(crate) fn allowed_by(&mut self, d: &Decision) {
        self.rule = d.rule().map(|r| r.name.to_string());
    }

    pub(crate) fn finish(self, verdict: EventVerdict, reason: &str, up: u64, down: u64) {
        if let Some(endpoint) = &self.endpoint {
            self.sink.meter_endpoint(&self.cluster, endpoint, up, down);
        }
        let event = DecisionEvent {
            cluster: self.cluster,
            region: self.sink.region(),
            source: Some(self.source),
            destination: self.destination,
            port: self.port,
            sni_or_host: self.sni_or_host,
            path: self.path,
            method: self.method,
            verdict,
            rule: self.rule,
            reason: reason.to_string(),
            bytes_up: up,
            bytes_down: down,
            duration: self.started.elapsed(),
        };
        self.sink.record(&event);
    }

    /// Finish with a refusal or a closing reason.
    pub(crate) fn finish_why(self, why: &Why, up: u64, down: u64) {
        self.finish(why.verdict(), why.as_str(), up, down);
    }

    /// Record the refusal and build its answer.
    pub(crate) fn refuse(self, r: Refusal) -> Response<ProxyBody> {
        let response = r.response();
        self.finish_why(&r.why, 0, 0);
        response
    }
}

/// The allowing side of a decision as recorded: `WouldDeny` under `REPORT_ONLY` when
/// `DEFAULT_DENY` would have refused.
pub(crate) fn allowed_outcome(d: &Decision) -> Outcome {
    match d.would_deny() {
        Some(w) => (EventVerdict::WouldDeny, w.as_str()),
        None => (EventVerdict::Allowed, d.reason().as_str()),
    }
}

/// A verdict and its stable reason.
pub(crate) type Outcome = (EventVerdict, &'static str);

/// A draft finished by the last of `parts` holders (a forwarded request's body and its
/// response), with the bytes its [`Activity`] counted by then.
pub(crate) struct SharedDraft {
    draft: Mutex<Option<Draft>>,
    outcome: Mutex<Outcome>,
    parts: AtomicUsize,
    activity: Arc<Activity>,
    /// The activity's counts when the exchange began (a connection may carry several).
    base: (u64, u64),
}

impl SharedDraft {
    pub(crate) fn new(
        draft: Draft,
        outcome: Outcome,
        parts: usize,
        activity: Arc<Activity>,
    ) -> Arc<Self> {
        let base = (activity.up(), activity.down());
        Arc::new(Self {
            draft: Mutex::new(Some(draft)),
            outcome: Mutex::new(outcome),
            parts: AtomicUsize::new(parts),
            activity,
            base,
        })
    }

    /// The connection's byte counts.
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    /// The exchange ends otherwise than allowed (revoked, failed): the event says so. A
    /// revocation is final: the failure it causes upstream does not replace it.
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        let mut current = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if current.1 != Why::PolicyRevoked.as_str() {
            *current = outcome;
        }
    }

    /// One part is done; the last one finishes the event.
    pub(crate) fn part_done(&self) {
        if self.parts.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let draft = self.draft.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(draft) = draft {
            let (verdict, reason) = *self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            let up = self.activity.up() - self.base.0;
            let down = self.activity.down() - self.base.1;
            draft.finish(verdict, reason, up, down);
        }
    }
}
