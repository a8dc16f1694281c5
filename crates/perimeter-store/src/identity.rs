//! Service accounts, role bindings and API keys. Secrets never reach the store: only hashes.
//!
//! A change to an existing account (its name, roles, keys, existence) may be refused for the
//! accounts that hold a protected role ([`Protected`]). The check runs in the change's
//! transaction after the account's row is locked, so a grant committed meanwhile cannot slip
//! between the check and the change.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::model::{ApiKey, Principal, RoleBinding, ServiceAccount, text};
use crate::page::{Arg, Page, PageRequest, fetch_page};
use crate::{Ctx, Result, Store, StoreError, is_unique_violation};

/// The accounts a change may not touch: those holding `Protected(Some(role))` at any scope.
/// `Protected(None)`: any account may be changed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protected<'a>(pub Option<&'a str>);

impl Store {
    /// True when no service account exists yet (first start).
    pub async fn is_empty(&self) -> Result<bool> {
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM service_accounts")
            .fetch_one(&self.read)
            .await
            .ctx("counting service accounts")?;
        Ok(n.0 == 0)
    }

    /// Create the bootstrap admin and its key in one transaction, only if the store is empty.
    /// Returns false (and changes nothing) when an account already exists.
    pub async fn bootstrap_admin(
        &self,
        roles: &[RoleBinding],
        key_id: &str,
        secret_hash: &str,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM service_accounts")
            .fetch_one(&mut *tx)
            .await
            .ctx("counting service accounts")?;
        if n.0 > 0 {
            return Ok(false);
        }
        let sa = insert_account(
            &mut tx,
            "admin",
            "bootstrap administrator",
            "perimeter",
            roles,
        )
        .await?;
        insert_key(&mut tx, key_id, &sa.id, "admin", secret_hash).await?;
        record(
            &mut tx,
            &AuditEntry::internal(
                "AUDIT_LOG_ACTION_CREATE_SERVICE_ACCOUNT",
                "perimeter",
                format!(r#"{{"name":"admin","api_key_id":"{key_id}","secret":"[REDACTED]"}}"#),
            ),
        )
        .await?;
        tx.commit().await.ctx("committing the bootstrap admin")?;
        Ok(true)
    }

    pub async fn create_service_account(
        &self,
        name: &str,
        description: &str,
        creator: &str,
        roles: &[RoleBinding],
        audit: &AuditEntry,
    ) -> Result<ServiceAccount> {
        let mut tx = self.begin().await?;
        let sa = insert_account(&mut tx, name, description, creator, roles).await?;
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing a service account")?;
        Ok(sa)
    }

    pub async fn get_service_account(&self, id: &str) -> Result<ServiceAccount> {
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        load_account(&mut conn, id).await
    }

    pub async fn list_service_accounts(&self, page: &PageRequest) -> Result<Page<ServiceAccount>> {
        let rows = fetch_page(
            &self.read,
            "SELECT * FROM service_accounts WHERE 1 = 1",
            vec![],
            "sort_key",
            page,
        )
        .await?;
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        let mut items = Vec::with_capacity(rows.items.len());
        for r in &rows.items {
            let roles = load_roles(&mut conn, &text(r, "id")?).await?;
            items.push(account_from_row(r, roles)?);
        }
        Ok(rows.with_items(items))
    }

    pub async fn update_service_account(
        &self,
        id: &str,
        name: Option<&str>,
        description: Option<&str>,
        protected: Protected<'_>,
        audit: &AuditEntry,
    ) -> Result<ServiceAccount> {
        let mut tx = self.begin().await?;
        let cur = lock_account(&mut tx, id, protected).await?;
        let name = name.unwrap_or(&cur.name);
        sqlx::query("UPDATE service_accounts SET name = $1, description = $2 WHERE id = $3")
            .bind(name)
            .bind(description.unwrap_or(&cur.description))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| name_taken(e, name, "updating a service account"))?;
        let sa = load_account(&mut tx, id).await?;
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing a service account")?;
        Ok(sa)
    }

    /// Delete an account with its keys and bindings; returns it as it was.
    pub async fn delete_service_account(
        &self,
        id: &str,
        protected: Protected<'_>,
        audit: &AuditEntry,
    ) -> Result<ServiceAccount> {
        let mut tx = self.begin().await?;
        let sa = lock_account(&mut tx, id, protected).await?;
        for table in ["api_keys", "role_bindings"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE service_account_id = $1"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting a service account")?;
        }
        sqlx::query("DELETE FROM service_accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting a service account")?;
        record(&mut tx, audit).await?;
        tx.commit()
            .await
            .ctx("committing a service account deletion")?;
        Ok(sa)
    }

    /// Replace an account's bindings.
    pub async fn set_roles(
        &self,
        id: &str,
        roles: &[RoleBinding],
        protected: Protected<'_>,
        audit: &AuditEntry,
    ) -> Result<ServiceAccount> {
        let mut tx = self.begin().await?;
        lock_account(&mut tx, id, protected).await?;
        sqlx::query("DELETE FROM role_bindings WHERE service_account_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("replacing role bindings")?;
        insert_roles(&mut tx, id, roles).await?;
        let sa = load_account(&mut tx, id).await?;
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing role bindings")?;
        Ok(sa)
    }

    pub async fn create_api_key(
        &self,
        key_id: &str,
        service_account_id: &str,
        name: &str,
        secret_hash: &str,
        protected: Protected<'_>,
        audit: &AuditEntry,
    ) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        lock_account(&mut tx, service_account_id, protected)
            .await
            .map_err(|e| match e {
                StoreError::NotFound(m) => StoreError::Precondition {
                    field: "service_account_id".into(),
                    message: m,
                },
                e => e,
            })?;
        let key = insert_key(&mut tx, key_id, service_account_id, name, secret_hash).await?;
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing an API key")?;
        Ok(key)
    }

    pub async fn get_api_key(&self, id: &str) -> Result<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .ctx("reading an API key")?
            .ok_or_else(|| StoreError::NotFound(format!("api key {id} not found")))?;
        key_from_row(&row)
    }

    pub async fn list_api_keys(
        &self,
        service_account_id: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ApiKey>> {
        let (sql, args) = match service_account_id {
            Some(sa) => (
                "SELECT * FROM api_keys WHERE service_account_id = $1",
                vec![Arg::Text(sa.to_string())],
            ),
            None => ("SELECT * FROM api_keys WHERE 1 = 1", vec![]),
        };
        let rows = fetch_page(&self.read, sql, args, "sort_key", page).await?;
        let items = rows
            .items
            .iter()
            .map(key_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(rows.with_items(items))
    }

    pub async fn rename_api_key(
        &self,
        id: &str,
        name: &str,
        protected: Protected<'_>,
        audit: &AuditEntry,
    ) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        lock_key_account(&mut tx, id, protected).await?;
        let n = sqlx::query("UPDATE api_keys SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("renaming an API key")?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("api key {id} not found")));
        }
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing an API key")?;
        self.get_api_key(id).await
    }

    pub async fn delete_api_key(
        &self,
        id: &str,
        protected: Protected<'_>,
        audit: &AuditEntry,
    ) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        lock_key_account(&mut tx, id, protected).await?;
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading an API key")?
            .ok_or_else(|| StoreError::NotFound(format!("api key {id} not found")))?;
        let key = key_from_row(&row)?;
        sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting an API key")?;
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing an API key deletion")?;
        Ok(key)
    }

    /// The stored hash of key `id` and the principal it authenticates; the caller compares the
    /// hash in constant time.
    pub async fn key_for_auth(&self, id: &str) -> Result<Option<(String, Principal)>> {
        let row = sqlx::query(
            "SELECT k.secret_hash, k.service_account_id, s.name FROM api_keys k \
             JOIN service_accounts s ON s.id = k.service_account_id WHERE k.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .ctx("authenticating an API key")?;
        let Some(row) = row else { return Ok(None) };
        let sa_id = text(&row, "service_account_id")?;
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        let roles = load_roles(&mut conn, &sa_id).await?;
        Ok(Some((
            text(&row, "secret_hash")?,
            Principal {
                key_id: id.to_string(),
                service_account_id: sa_id,
                service_account_name: text(&row, "name")?,
                roles,
            },
        )))
    }
}

async fn insert_account(
    conn: &mut AnyConnection,
    name: &str,
    description: &str,
    creator: &str,
    roles: &[RoleBinding],
) -> Result<ServiceAccount> {
    let id = crate::new_id();
    let created_at = crate::now();
    sqlx::query(
        "INSERT INTO service_accounts (id, name, description, creator_name, created_at, sort_key) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(name)
    .bind(description)
    .bind(creator)
    .bind(&created_at)
    .bind(crate::time_sort_key(&created_at, &id))
    .execute(&mut *conn)
    .await
    .map_err(|e| name_taken(e, name, "creating a service account"))?;
    insert_roles(conn, &id, roles).await?;
    load_account(conn, &id).await
}

/// A unique violation on a service account's name as the conflict it is; any other error as is.
fn name_taken(e: sqlx::Error, name: &str, context: &'static str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict {
            field: "name".into(),
            message: format!("a service account named {name:?} already exists; names are unique"),
        }
    } else {
        StoreError::Database { context, source: e }
    }
}

async fn insert_roles(conn: &mut AnyConnection, id: &str, roles: &[RoleBinding]) -> Result<()> {
    for r in roles {
        sqlx::query(
            "INSERT INTO role_bindings (service_account_id, role, resource_type, resource_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&r.role)
        .bind(&r.resource_type)
        .bind(&r.resource_id)
        .execute(&mut *conn)
        .await
        .ctx("writing role bindings")?;
    }
    Ok(())
}

async fn insert_key(
    conn: &mut AnyConnection,
    key_id: &str,
    sa: &str,
    name: &str,
    hash: &str,
) -> Result<ApiKey> {
    let created_at = crate::now();
    sqlx::query(
        "INSERT INTO api_keys (id, service_account_id, name, secret_hash, created_at, sort_key) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(key_id)
    .bind(sa)
    .bind(name)
    .bind(hash)
    .bind(&created_at)
    .bind(crate::time_sort_key(&created_at, key_id))
    .execute(conn)
    .await
    .ctx("creating an API key")?;
    Ok(ApiKey {
        id: key_id.to_string(),
        service_account_id: sa.to_string(),
        name: name.to_string(),
        created_at,
    })
}

async fn load_roles(conn: &mut AnyConnection, id: &str) -> Result<Vec<RoleBinding>> {
    let rows = sqlx::query(
        "SELECT role, resource_type, resource_id FROM role_bindings WHERE service_account_id = $1 ORDER BY role, resource_type, resource_id",
    )
    .bind(id)
    .fetch_all(conn)
    .await
    .ctx("reading role bindings")?;
    rows.iter()
        .map(|r| {
            Ok(RoleBinding {
                role: text(r, "role")?,
                resource_type: text(r, "resource_type")?,
                resource_id: text(r, "resource_id")?,
            })
        })
        .collect()
}

/// Lock account `id`'s row for the rest of the transaction (an UPDATE that changes nothing, the
/// portable row lock) and read it; refuse when it holds the protected role.
async fn lock_account(
    conn: &mut AnyConnection,
    id: &str,
    protected: Protected<'_>,
) -> Result<ServiceAccount> {
    let n = sqlx::query("UPDATE service_accounts SET name = name WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .ctx("locking a service account")?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound(format!(
            "service account {id} not found"
        )));
    }
    let sa = load_account(conn, id).await?;
    if let Protected(Some(role)) = protected
        && sa.roles.iter().any(|b| b.role == role)
    {
        return Err(StoreError::Forbidden(format!(
            "service account {id} holds {role}: only a caller holding {role} may change it, its roles or its keys"
        )));
    }
    Ok(sa)
}

/// [`lock_account`] for the account of key `id` (NotFound when the key is unknown).
async fn lock_key_account(
    conn: &mut AnyConnection,
    id: &str,
    protected: Protected<'_>,
) -> Result<ServiceAccount> {
    let owner: Option<(String,)> =
        sqlx::query_as("SELECT service_account_id FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .ctx("reading an API key")?;
    let (sa,) = owner.ok_or_else(|| StoreError::NotFound(format!("api key {id} not found")))?;
    lock_account(conn, &sa, protected).await
}

async fn load_account(conn: &mut AnyConnection, id: &str) -> Result<ServiceAccount> {
    let row = sqlx::query("SELECT * FROM service_accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .ctx("reading a service account")?
        .ok_or_else(|| StoreError::NotFound(format!("service account {id} not found")))?;
    let roles = load_roles(conn, id).await?;
    account_from_row(&row, roles)
}

fn account_from_row(r: &AnyRow, roles: Vec<RoleBinding>) -> Result<ServiceAccount> {
    Ok(ServiceAccount {
        id: text(r, "id")?,
        name: text(r, "name")?,
        description: text(r, "description")?,
        creator_name: text(r, "creator_name")?,
        created_at: text(r, "created_at")?,
        roles,
    })
}

fn key_from_row(r: &AnyRow) -> Result<ApiKey> {
    Ok(ApiKey {
        id: text(r, "id")?,
        service_account_id: text(r, "service_account_id")?,
        name: text(r, "name")?,
        created_at: text(r, "created_at")?,
    })
}
