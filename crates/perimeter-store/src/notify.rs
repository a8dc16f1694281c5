//! Change notifications across replicas: on PostgreSQL, every bump of a cluster's policy
//! version notifies channel [`CHANNEL`] with `"<cluster id> <version>"` (a trigger, so that every
//! path that bumps it, in any replica, is covered), and each replica listens. A long-poll for a
//! snapshot then waits on notifications instead of reading the store every second.
//!
//! Databases that speak PostgreSQL's protocol without LISTEN/NOTIFY or triggers (CockroachDB)
//! and SQLite have none: [`Store::install_change_notifications`] says so, and the caller keeps
//! polling.

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::{Backend, Ctx, Result, Store, StoreError};

/// The notification channel.
pub const CHANNEL: &str = "perimeter_changes";

const FUNCTION: &str = "CREATE OR REPLACE FUNCTION perimeter_notify_change() RETURNS trigger LANGUAGE plpgsql AS $body$ \
BEGIN PERFORM pg_notify('perimeter_changes', NEW.id || ' ' || NEW.policy_version); RETURN NULL; END $body$";

const TRIGGER: &str = "CREATE OR REPLACE TRIGGER perimeter_notify_change AFTER UPDATE OF policy_version ON clusters \
FOR EACH ROW WHEN (OLD.policy_version IS DISTINCT FROM NEW.policy_version) EXECUTE FUNCTION perimeter_notify_change()";

/// A cluster's policy version moved (committed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub cluster_id: String,
    pub version: i64,
}

impl Change {
    /// Read a notification's payload, `"<cluster id> <version>"`.
    pub fn parse(payload: &str) -> Option<Change> {
        let (id, v) = payload.rsplit_once(' ')?;
        Some(Change {
            cluster_id: id.to_string(),
            version: v.parse().ok()?,
        })
    }
}

/// A connection listening on [`CHANNEL`].
pub struct ChangeListener {
    inner: PgListener,
}

impl ChangeListener {
    /// The next change; `Ok(None)` when the connection was lost (changes made meanwhile are
    /// not seen: the caller must assume anything moved, then [`Store::listen_changes`] again).
    pub async fn next(&mut self) -> Result<Option<Change>> {
        match self
            .inner
            .try_recv()
            .await
            .ctx("receiving a change notification")?
        {
            None => Ok(None),
            Some(n) => match Change::parse(n.payload()) {
                Some(c) => Ok(Some(c)),
                None => {
                    tracing::warn!(
                        payload = n.payload(),
                        "ignoring a malformed change notification"
                    );
                    Box::pin(self.next()).await
                }
            },
        }
    }
}

impl Store {
    /// Install the trigger that notifies every policy version bump. `Ok(false)` on SQLite, and
    /// on a database that cannot (logged): notifications are then not available.
    pub async fn install_change_notifications(&self) -> Result<bool> {
        if self.backend != Backend::Postgres {
            return Ok(false);
        }
        // Replicas starting together may race on the catalog: a few tries.
        let mut last = None;
        for attempt in 0..3 {
            let done = async {
                sqlx::query(FUNCTION).execute(&self.write).await?;
                sqlx::query(TRIGGER).execute(&self.write).await
            }
            .await;
            match done {
                Ok(_) => return Ok(true),
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
                }
            }
        }
        if let Some(e) = last {
            tracing::warn!(error = %e, "the database cannot notify changes (no triggers or LISTEN/NOTIFY); long-polls read it every second instead");
        }
        Ok(false)
    }

    /// Listen on [`CHANNEL`] on a connection of its own (PostgreSQL only: `Ok(None)` otherwise).
    pub async fn listen_changes(&self) -> Result<Option<ChangeListener>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut inner = tokio::time::timeout(Duration::from_secs(10), PgListener::connect(url))
            .await
            .map_err(|_| StoreError::Database {
                context: "connecting to listen for changes",
                source: sqlx::Error::PoolTimedOut,
            })?
            .ctx("connecting to listen for changes")?;
        inner.listen(CHANNEL).await.ctx("listening for changes")?;
        Ok(Some(ChangeListener { inner }))
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn payloads() {
        assert_eq!(
            Change::parse("3f2c-11 42"),
            Some(Change {
                cluster_id: "3f2c-11".into(),
                version: 42
            })
        );
        for bad in ["", "x", "x y", "42", "a 1.5"] {
            assert_eq!(Change::parse(bad), None, "{bad:?}");
        }
    }
}
