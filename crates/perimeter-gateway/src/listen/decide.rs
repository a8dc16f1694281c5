//! Decide: the target as the client named it (with the normalised path where the gateway sees
//! one), on the snapshot in force when the connection or request arrived. A deny is final here;
//! an allow still needs an address ([`super::resolve`]); a name routed to a private endpoint
//! goes there ([`super::endpoint`]), never to the public path.

use std::sync::Arc;

use perimeter_policy::{Snapshot, TargetDecision, Verdict};

use super::refusal::{Refusal, Why};
use super::target::Target;

/// A target the policy may allow: the snapshot it was decided on and step 1 of the decision.
pub(crate) struct Decided {
    pub(crate) snap: Arc<Snapshot>,
    pub(crate) target: Target,
    pub(crate) path: Option<String>,
    pub(crate) decision: TargetDecision,
}

/// Step 1 of the policy for `target` (and `path`) on `snap`.
pub(crate) fn decide(
    snap: Arc<Snapshot>,
    target: Target,
    path: Option<String>,
) -> Result<Decided, Refusal> {
    let decision = snap.decide_target(target.destination(), target.port, path.as_deref());
    if let Some(d) = decision.final_decision()
        && d.verdict() == &Verdict::Deny
    {
        return Err(Refusal::policy(d.reason()));
    }
    Ok(Decided {
        snap,
        target,
        path,
        decision,
    })
}

impl Decided {
    /// The private endpoint the target is routed to, if it is.
    pub(crate) fn endpoint(&self) -> Option<Arc<str>> {
        match self.decision.final_decision().map(|d| d.verdict()) {
            Some(Verdict::PrivateEndpoint { endpoint_id }) => Some(endpoint_id.clone()),
            _ => None,
        }
    }
}

/// A target routed to a private endpoint where the gateway does not forward to endpoints
/// (absolute-form HTTP, an address that is not the target's).
pub(crate) fn private_endpoint() -> Refusal {
    Refusal::new(
        Why::PrivateEndpointNotServed,
        "the destination is routed to a private endpoint: reach it through CONNECT (HTTPS_PROXY) or the transparent listener",
    )
}
