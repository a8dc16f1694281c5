//! The reconciler's clock: [`WallClock`] in production, [`ManualClock`] in tests that drive
//! the loop itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// The reconciler's time: the `now` its deadlines are judged at, and the sleep between passes.
/// [`WallClock`] in production; [`ManualClock`] lets a test move time and watch the loop act.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// The machine's clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Time that moves only when [`ManualClock::advance`] moves it. It counts the sleeps asked of
/// it, so a test can wait for the loop to finish a pass ([`ManualClock::sleeps`]) and read where
/// it planned to wake ([`ManualClock::next_wake`]).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
    sleeps: Arc<std::sync::Mutex<(u64, Option<DateTime<Utc>>)>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: watch::Sender::new(start),
            sleeps: Arc::default(),
        }
    }

    pub fn advance(&self, by: Duration) {
        let by = chrono::Duration::from_std(by).unwrap_or_default();
        self.now.send_modify(|t| *t += by);
    }

    /// How many sleeps were asked so far (one per finished pass of the loop).
    pub fn sleeps(&self) -> u64 {
        self.sleeps.lock().expect("clock lock").0
    }

    /// When the last sleep asked ends.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.sleeps.lock().expect("clock lock").1
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep(&self, d: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let until = self.now() + chrono::Duration::from_std(d).unwrap_or_default();
        {
            let mut s = self.sleeps.lock().expect("clock lock");
            s.0 += 1;
            s.1 = Some(until);
        }
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            if rx.wait_for(|now| *now >= until).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}
