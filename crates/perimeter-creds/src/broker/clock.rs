//! The time the credential cache lives by. [`SystemClock`] in production; [`ManualClock`] lets a
//! test move time forward by hand and watch the refresher act, with real STS calls.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// A boxed sleep.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Wall-clock time and sleeping until a wall-clock instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
    /// Resolves once `now() >= at`.
    fn sleep_until(&self, at: SystemTime) -> Sleep;
}

/// The machine's clock. A sleep re-reads the wall clock at least once a minute, so that a
/// suspended machine or a clock step does not make a refresh late by more than that.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, at: SystemTime) -> Sleep {
        Box::pin(async move {
            loop {
                let Ok(left) = at.duration_since(SystemTime::now()) else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            }
        })
    }
}

/// A clock that moves only when told to. Sleepers wake as soon as [`ManualClock::advance`] or
/// [`ManualClock::set`] passes their instant.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: watch::Sender<SystemTime>,
}

impl ManualClock {
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock {
            now: watch::Sender::new(start),
        }
    }

    pub fn advance(&self, by: Duration) {
        self.now.send_modify(|t| *t += by);
    }

    pub fn set(&self, to: SystemTime) {
        self.now.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: SystemTime) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, time stopped: never wake.
            if rx.wait_for(|now| *now >= at).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_time_passes_them() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = ManualClock::new(start);
        let at = start + Duration::from_secs(60);
        let sleeper = tokio::spawn(clock.sleep_until(at));
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woke")
            .expect("no panic");
        assert_eq!(clock.now(), at);
    }

    #[tokio::test]
    async fn system_sleep_into_the_past_returns_at_once() {
        SystemClock
            .sleep_until(SystemTime::now() - Duration::from_secs(1))
            .await;
    }
}
