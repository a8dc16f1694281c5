//! Idempotency keys: a repeated request with the same key gets the first answer again.

use crate::{Ctx, Result, Store};

impl Store {
    /// The request hash and response stored for `(scope, key)`, if any.
    pub async fn idempotent_response(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<(String, String)>> {
        sqlx::query_as("SELECT request_hash, response FROM idempotency_keys WHERE scope = $1 AND idem_key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(&self.write)
            .await
            .ctx("reading an idempotency key")
    }

    /// Remember the response to `(scope, key)`. The first writer wins.
    pub async fn remember_response(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        response: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO idempotency_keys (scope, idem_key, request_hash, response, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(scope)
        .bind(key)
        .bind(request_hash)
        .bind(response)
        .bind(crate::now())
        .execute(&self.write)
        .await
        .ctx("storing an idempotency key")?;
        Ok(())
    }

    /// A persistent setting (e.g. embedded gateway ports), if set.
    pub async fn setting(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .ctx("reading a setting")?;
        Ok(row.map(|(v,)| v))
    }

    pub async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&self.write)
            .await
            .ctx("writing a setting")?;
        Ok(())
    }
}
