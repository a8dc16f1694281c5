//! Scheduling what a cloud provider carries: each item is looked at again after a poll while
//! it is on its way, after a growing backoff when the provider throttles or fails
//! transiently, and at once when its state changes; the steps themselves are in [`super::aws`].

use perimeter_store::{EndpointWork, StoreError};

use super::{Action, Reconciler, aws};

/// An item a cloud provider carries that waits: in which state, after how many errors in a
/// row, until when. A change of state (a deletion, say) ends the wait.
pub(super) type ProviderWait = (String, u32, chrono::DateTime<chrono::Utc>);

impl Reconciler {
    /// Whether a provider-carried item in `state` is due (not waiting out a poll or a
    /// backoff in that state).
    fn due(&self, key: &str, state: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
        let waits = self.provider_waits.lock().expect("provider waits");
        waits
            .get(key)
            .is_none_or(|(s, _, at)| s != state || *at <= now)
    }

    /// Record how a provider step went: when to look again (`Await`: when something changes).
    /// A transient error doubles the wait from `provider_backoff`.
    fn after(
        &self,
        key: &str,
        state: &str,
        now: chrono::DateTime<chrono::Utc>,
        outcome: &Result<Action, aws::StepError>,
    ) -> Action {
        let mut waits = self.provider_waits.lock().expect("provider waits");
        let (wait, failures) = match outcome {
            Ok(Action::Requeue(d)) => (*d, 0),
            Ok(Action::Await) => {
                waits.remove(key);
                return Action::Await;
            }
            Err(_) => {
                let failures = waits
                    .get(key)
                    .filter(|(s, _, _)| s == state)
                    .map_or(0, |(_, f, _)| *f)
                    + 1;
                let wait = self.cfg.provider_backoff * (1u32 << (failures - 1).min(6));
                (wait, failures)
            }
        };
        let until = now + chrono::Duration::from_std(wait).unwrap_or_default();
        waits.insert(key.to_string(), (state.to_string(), failures, until));
        Action::Requeue(wait)
    }

    /// One step on an egress private endpoint a cloud provider carries.
    pub(super) async fn provider_endpoint(
        &self,
        work: &EndpointWork,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Action, StoreError> {
        let ep = &work.endpoint;
        let Some(aws) = self
            .aws
            .as_ref()
            .filter(|_| ep.provider == perimeter_store::AWS_PROVIDER)
        else {
            let reason = format!(
                "carried by the {} provider, which this control plane does not run (serve --provider)",
                ep.provider
            );
            if ep.state_reason != reason {
                self.store.note_endpoint_reason(&ep.id, &reason).await?;
            }
            return Ok(Action::Requeue(self.cfg.interval * 20));
        };
        let key = format!("endpoint/{}", ep.id);
        if !self.due(&key, &ep.state, now) {
            return Ok(Action::Requeue(self.cfg.interval));
        }
        let outcome = aws::step_endpoint(&self.store, &self.cfg, aws, work, now).await;
        let action = self.after(&key, &ep.state, now, &outcome);
        // Looked at: it goes to the back of the claim order.
        self.store.note_provider_check(&ep.id).await?;
        match outcome {
            Ok(_) => Ok(action),
            Err(aws::StepError::Store(e)) => Err(e),
            Err(aws::StepError::Transient(e)) => {
                tracing::warn!(endpoint = %ep.id, cluster = %ep.cluster_id, error = %e, retry_in_ms = match action { Action::Requeue(d) => d.as_millis() as u64, Action::Await => 0 }, "AWS call failed; retrying with backoff");
                self.store
                    .note_endpoint_reason(&ep.id, &format!("retrying after: {e}"))
                    .await?;
                Ok(action)
            }
        }
    }

    /// One step on a private endpoint service a cloud provider carries.
    pub(super) async fn provider_service(
        &self,
        cluster: &str,
        region: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Action, StoreError> {
        let Some(aws) = self.aws.as_ref() else {
            return Ok(Action::Await);
        };
        let key = format!("service/{cluster}/{region}");
        let holder = self.cfg.holder.as_str();
        let Some(work) = self.store.ingress_service_work(cluster, region).await? else {
            return Ok(Action::Await);
        };
        if !self.due(&key, &work.service.status, now) {
            self.store
                .finish_ingress_service(holder, cluster, region, work.generation, false)
                .await?;
            return Ok(Action::Requeue(self.cfg.interval));
        }
        let outcome = aws::step_service(&self.store, &self.cfg, aws, &work).await;
        let done = matches!(outcome, Ok(true));
        let as_action = match &outcome {
            Ok(true) => Ok(Action::Await),
            Ok(false) => Ok(Action::Requeue(self.cfg.provider_poll)),
            Err(aws::StepError::Transient(e)) => Err(aws::StepError::Transient(e.clone())),
            Err(aws::StepError::Store(_)) => Ok(Action::Requeue(self.cfg.provider_poll)),
        };
        let action = self.after(&key, &work.service.status, now, &as_action);
        self.store
            .finish_ingress_service(holder, cluster, region, work.generation, done)
            .await?;
        match outcome {
            Err(aws::StepError::Store(e)) => Err(e),
            Err(aws::StepError::Transient(e)) => {
                tracing::warn!(cluster, region, error = %e, "AWS call failed; retrying with backoff");
                Ok(action)
            }
            Ok(_) => Ok(action),
        }
    }
}
