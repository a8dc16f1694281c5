//! Egress private endpoints, the `local` provider's endpoint services and their connections,
//! and the lease-guarded primitives the reconciler drives them with.

use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::clusters::{lock_cluster, lock_reason, touch_live_cluster};
use crate::model::{
    EgressEndpoint, EndpointConnection, EndpointService, flag, int, json, opt_text, text, to_json,
};
use crate::page::{Arg, Page, PageRequest, fetch_page};
use crate::{Ctx, Result, Store, StoreError, is_unique_violation};

#[derive(Debug, Clone)]
pub struct NewEndpointService {
    pub service_name: String,
    pub region: String,
    pub backends: Vec<perimeter_policy::BackendDoc>,
    pub proxy_protocol: bool,
    pub acceptance_required: bool,
    pub auto_accept_accounts: Vec<String>,
    pub acceptance_timeout_seconds: i64,
    /// A platform operator registered special-address backends explicitly.
    pub special_addresses: bool,
}

/// What the reconciler needs to take one step on an endpoint.
#[derive(Debug, Clone)]
pub struct EndpointWork {
    pub endpoint: EgressEndpoint,
    pub cluster_account_id: String,
    pub connection: Option<EndpointConnection>,
    /// The service named by the endpoint's identifier in its region, if one is registered.
    pub service: Option<EndpointService>,
}

const ENDPOINT_ACTOR: &str = "perimeter-reconciler";

impl Store {
    pub async fn create_endpoint(
        &self,
        cluster_id: &str,
        region: &str,
        identifier: &str,
        target_type: &str,
        audit: &AuditEntry,
    ) -> Result<EgressEndpoint> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        crate::clusters::require_region(&cluster, region)?;
        let (have,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM egress_endpoints WHERE cluster_id = $1")
                .bind(cluster_id)
                .fetch_one(&mut *tx)
                .await
                .ctx("counting egress private endpoints")?;
        Store::within(
            have,
            self.limits.endpoints_per_cluster,
            "target_service_identifier",
            &format!("cluster {cluster_id} has too many egress private endpoints"),
            "--max-endpoints-per-cluster",
        )?;
        let id = crate::new_id();
        let now = crate::now();
        sqlx::query(
            "INSERT INTO egress_endpoints (id, cluster_id, region, target_service_identifier, target_service_type, endpoint_connection_id, \
             endpoint_address, state, state_reason, domain_names, domain_names_state, created_at, updated_at, sort_key, lease_holder, lease_until, provider) \
             VALUES ($1, $2, $3, $4, $5, '', '', 'PENDING', '', '[]', 'EMPTY', $6, $6, $7, NULL, NULL, $8)",
        )
        .bind(&id)
        .bind(cluster_id)
        .bind(region)
        .bind(identifier)
        .bind(target_type)
        .bind(&now)
        .bind(crate::time_sort_key(&now, &id))
        .bind(self.provider)
        .execute(&mut *tx)
        .await
        .ctx("creating an egress private endpoint")?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let ep = load_endpoint(&mut tx, cluster_id, &id).await?;
        tx.commit()
            .await
            .ctx("committing an egress private endpoint")?;
        Ok(ep)
    }

    pub async fn get_endpoint(&self, cluster_id: &str, id: &str) -> Result<EgressEndpoint> {
        let mut conn = self.read.acquire().await.ctx("acquiring a connection")?;
        load_endpoint(&mut conn, cluster_id, id).await
    }

    pub async fn list_endpoints(
        &self,
        cluster_id: &str,
        page: &PageRequest,
    ) -> Result<Page<EgressEndpoint>> {
        let rows = fetch_page(
            &self.read,
            "SELECT * FROM egress_endpoints WHERE cluster_id = $1",
            vec![Arg::Text(cluster_id.to_string())],
            "sort_key",
            page,
        )
        .await?;
        let items = rows
            .items
            .iter()
            .map(endpoint_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(rows.with_items(items))
    }

    /// Start deleting an endpoint. Allowed while the cluster is locked by this very endpoint
    /// (that cancels its creation); refused while another operation holds the lock.
    pub async fn delete_endpoint(
        &self,
        cluster_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<EgressEndpoint> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        let ep = load_endpoint(&mut tx, cluster_id, id).await?;
        if ep.state == "DELETING" {
            return Ok(ep);
        }
        if let Some(reason) = lock_reason(&mut tx, &cluster).await?
            && !reason.contains(id)
        {
            return Err(StoreError::Locked(reason));
        }
        sqlx::query(
            "UPDATE egress_endpoints SET state = 'DELETING', updated_at = $1, routed_version = $2 WHERE id = $3",
        )
        .bind(crate::now())
        .bind(cluster.policy_version)
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("deleting an egress private endpoint")?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let ep = load_endpoint(&mut tx, cluster_id, id).await?;
        tx.commit().await.ctx("committing an endpoint deletion")?;
        Ok(ep)
    }

    /// Replace an `AVAILABLE` endpoint's domain names; they read `PENDING` until the cluster's
    /// gateways serve them.
    pub async fn set_domain_names(
        &self,
        cluster_id: &str,
        id: &str,
        names: &[String],
        audit: &AuditEntry,
    ) -> Result<EgressEndpoint> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        let ep = load_endpoint(&mut tx, cluster_id, id).await?;
        if ep.state != "AVAILABLE" {
            return Err(StoreError::Precondition {
                field: "domain_names".into(),
                message: format!(
                    "egress private endpoint {id} is {}; domain names can be set only while it is AVAILABLE",
                    ep.state
                ),
            });
        }
        if let Some(reason) = lock_reason(&mut tx, &cluster).await? {
            return Err(StoreError::Locked(reason));
        }
        // A name routes to one endpoint: one that another endpoint of the cluster claims (as a
        // domain name or as its own address) would make the cluster's policy uncompilable.
        let others = sqlx::query(
            "SELECT id, endpoint_address, domain_names FROM egress_endpoints WHERE cluster_id = $1 AND id <> $2 \
             AND state IN ('PENDING', 'PENDING_ACCEPTANCE', 'AVAILABLE', 'DELETING')",
        )
        .bind(cluster_id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .ctx("checking domain names")?;
        for row in &others {
            let other = text(row, "id")?;
            let mut claimed: Vec<String> = json(row, "domain_names")?;
            claimed.push(text(row, "endpoint_address")?);
            if let Some((i, name)) = names.iter().enumerate().find(|(_, n)| claimed.contains(n)) {
                return Err(StoreError::Precondition {
                    field: format!("domain_names[{i}]"),
                    message: format!(
                        "{name} is already routed to egress private endpoint {other} of this cluster; a name routes to one endpoint"
                    ),
                });
            }
        }
        // A provider's records of the names removed go first: PENDING until they are gone.
        let state = if names.is_empty() && ep.applied_domain_names.is_empty() {
            "EMPTY"
        } else {
            "PENDING"
        };
        sqlx::query("UPDATE egress_endpoints SET domain_names = $1, domain_names_state = $2, updated_at = $3, domain_names_version = $4 WHERE id = $5")
            .bind(to_json(&names))
            .bind(state)
            .bind(crate::now())
            .bind(cluster.policy_version)
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("setting domain names")?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let ep = load_endpoint(&mut tx, cluster_id, id).await?;
        tx.commit().await.ctx("committing domain names")?;
        Ok(ep)
    }

    /// Record what the gateways observed of an endpoint's domain names: `to` (`AVAILABLE` or
    /// `FAILED`) if they are still `PENDING` at `version`. False when they changed under us.
    pub async fn settle_domain_names(&self, id: &str, version: i64, to: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE egress_endpoints SET domain_names_state = $1, updated_at = $2, domain_changes = '[]' \
             WHERE id = $3 AND domain_names_state = 'PENDING' AND domain_names_version = $4",
        )
        .bind(to)
        .bind(crate::now())
        .bind(id)
        .bind(version)
        .execute(&self.write)
        .await
        .ctx("settling domain names")?
        .rows_affected();
        Ok(n == 1)
    }

    // ---- endpoint services (the service owner's side) ---------------------------------------

    pub async fn create_endpoint_service(
        &self,
        s: &NewEndpointService,
        audit: &AuditEntry,
    ) -> Result<EndpointService> {
        let mut tx = self.begin().await?;
        let id = crate::new_id();
        let now = crate::now();
        sqlx::query(
            "INSERT INTO endpoint_services (id, service_name, region, backends, acceptance_required, auto_accept_accounts, acceptance_timeout_seconds, created_at, sort_key, proxy_protocol, special_addresses) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(&s.service_name)
        .bind(&s.region)
        .bind(to_json(&s.backends))
        .bind(s.acceptance_required as i64)
        .bind(to_json(&s.auto_accept_accounts))
        .bind(s.acceptance_timeout_seconds)
        .bind(&now)
        .bind(crate::time_sort_key(&now, &id))
        .bind(s.proxy_protocol as i64)
        .bind(s.special_addresses as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict {
                    field: "service_name".into(),
                    message: format!("an endpoint service named {:?} already exists", s.service_name),
                }
            } else {
                StoreError::Database { context: "creating an endpoint service", source: e }
            }
        })?;
        record(&mut tx, audit).await?;
        tx.commit().await.ctx("committing an endpoint service")?;
        self.get_endpoint_service(&id).await
    }

    pub async fn get_endpoint_service(&self, id: &str) -> Result<EndpointService> {
        let row = sqlx::query("SELECT * FROM endpoint_services WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .ctx("reading an endpoint service")?
            .ok_or_else(|| StoreError::NotFound(format!("endpoint service {id} not found")))?;
        service_from_row(&row)
    }

    pub async fn list_endpoint_services(
        &self,
        page: &PageRequest,
    ) -> Result<Page<EndpointService>> {
        let rows = fetch_page(
            &self.read,
            "SELECT * FROM endpoint_services WHERE 1 = 1",
            vec![],
            "sort_key",
            page,
        )
        .await?;
        let items = rows
            .items
            .iter()
            .map(service_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(rows.with_items(items))
    }

    /// Delete a service that no live endpoint uses; otherwise name the endpoints in the way.
    pub async fn delete_endpoint_service(
        &self,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<EndpointService> {
        let service = self.get_endpoint_service(id).await?;
        let mut tx = self.begin().await?;
        let live: Vec<(String,)> = sqlx::query_as(
            "SELECT egress_private_endpoint_id FROM endpoint_connections WHERE service_id = $1 \
             AND status IN ('PENDING_ACCEPTANCE', 'AVAILABLE') ORDER BY created_at",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await
        .ctx("checking endpoint connections")?;
        if !live.is_empty() {
            let ids: Vec<String> = live.into_iter().map(|(i,)| i).collect();
            return Err(StoreError::Precondition {
                field: "id".into(),
                message: format!(
                    "endpoint service {id} still has connections from egress private endpoints {}; delete or reject them first",
                    ids.join(", ")
                ),
            });
        }
        sqlx::query("DELETE FROM endpoint_connections WHERE service_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting endpoint connections")?;
        sqlx::query("DELETE FROM endpoint_services WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("deleting an endpoint service")?;
        record(&mut tx, audit).await?;
        tx.commit()
            .await
            .ctx("committing an endpoint service deletion")?;
        Ok(service)
    }

    pub async fn list_connections(
        &self,
        service_id: &str,
        page: &PageRequest,
    ) -> Result<Page<EndpointConnection>> {
        self.get_endpoint_service(service_id).await?;
        let rows = fetch_page(
            &self.read,
            "SELECT * FROM endpoint_connections WHERE service_id = $1",
            vec![Arg::Text(service_id.to_string())],
            "sort_key",
            page,
        )
        .await?;
        let items = rows
            .items
            .iter()
            .map(connection_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(rows.with_items(items))
    }

    /// The service owner accepts (`AVAILABLE`) or rejects (`REJECTED`) a connection that waits
    /// for acceptance.
    pub async fn decide_connection(
        &self,
        service_id: &str,
        connection_id: &str,
        status: &str,
        audit: &AuditEntry,
    ) -> Result<EndpointConnection> {
        let mut tx = self.begin().await?;
        let row =
            sqlx::query("SELECT * FROM endpoint_connections WHERE id = $1 AND service_id = $2")
                .bind(connection_id)
                .bind(service_id)
                .fetch_optional(&mut *tx)
                .await
                .ctx("reading an endpoint connection")?
                .ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "connection {connection_id} not found on endpoint service {service_id}"
                    ))
                })?;
        let conn = connection_from_row(&row)?;
        if conn.status != "PENDING_ACCEPTANCE" {
            return Err(StoreError::Precondition {
                field: "connection_id".into(),
                message: format!(
                    "connection {connection_id} is {}; only a connection in PENDING_ACCEPTANCE can be accepted or rejected",
                    conn.status
                ),
            });
        }
        sqlx::query("UPDATE endpoint_connections SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'PENDING_ACCEPTANCE'")
            .bind(status)
            .bind(crate::now())
            .bind(connection_id)
            .execute(&mut *tx)
            .await
            .ctx("deciding an endpoint connection")?;
        record(&mut tx, &audit.clone().for_cluster(&conn.cluster_id, "")).await?;
        let row = sqlx::query("SELECT * FROM endpoint_connections WHERE id = $1")
            .bind(connection_id)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading an endpoint connection")?;
        tx.commit().await.ctx("committing an endpoint connection")?;
        connection_from_row(&row)
    }

    // ---- reconciler primitives ---------------------------------------------------------------

    /// Claim up to `limit` endpoints that need driving (`PENDING`, `PENDING_ACCEPTANCE`,
    /// `DELETING`, or domain names `PENDING`) and whose lease is free or expired; a provider's
    /// endpoints least recently looked at first, so that many waiting (for acceptance, or out
    /// a backoff) never crowd out a new one. Each claim is one conditional update, so
    /// two replicas never hold the same endpoint.
    pub async fn claim_endpoints(
        &self,
        holder: &str,
        lease_until: &str,
        limit: u32,
    ) -> Result<Vec<String>> {
        let now = crate::now();
        let candidates: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM egress_endpoints WHERE (state IN ('PENDING', 'PENDING_ACCEPTANCE', 'DELETING') OR domain_names_state = 'PENDING') \
             AND (lease_until IS NULL OR lease_until < $1 OR lease_holder = $2) \
             ORDER BY CASE WHEN provider = 'local' THEN updated_at ELSE provider_checked_at END LIMIT $3",
        )
        .bind(&now)
        .bind(holder)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .ctx("finding endpoint work")?;
        self.claim_each(holder, lease_until, candidates).await
    }

    /// Take the lease of each candidate that is still free (or expired, or already
    /// `holder`'s): one conditional update each, so two replicas never hold one endpoint.
    pub(crate) async fn claim_each(
        &self,
        holder: &str,
        lease_until: &str,
        candidates: Vec<(String,)>,
    ) -> Result<Vec<String>> {
        let now = crate::now();
        let mut claimed = Vec::new();
        for (id,) in candidates {
            let n = sqlx::query(
                "UPDATE egress_endpoints SET lease_holder = $1, lease_until = $2 \
                 WHERE id = $3 AND (lease_until IS NULL OR lease_until < $4 OR lease_holder = $1)",
            )
            .bind(holder)
            .bind(lease_until)
            .bind(&id)
            .bind(&now)
            .execute(&self.write)
            .await
            .ctx("claiming an endpoint lease")?
            .rows_affected();
            if n == 1 {
                claimed.push(id);
            }
        }
        Ok(claimed)
    }

    pub async fn release_endpoint(&self, holder: &str, id: &str) -> Result<()> {
        sqlx::query("UPDATE egress_endpoints SET lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2")
            .bind(id)
            .bind(holder)
            .execute(&self.write)
            .await
            .ctx("releasing an endpoint lease")?;
        Ok(())
    }

    /// Everything the reconciler reads for one endpoint, or None if it is gone.
    pub async fn endpoint_work(&self, id: &str) -> Result<Option<EndpointWork>> {
        let Some(row) = sqlx::query("SELECT * FROM egress_endpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .ctx("reading endpoint work")?
        else {
            return Ok(None);
        };
        let endpoint = endpoint_from_row(&row)?;
        let (account,): (String,) = sqlx::query_as("SELECT account_id FROM clusters WHERE id = $1")
            .bind(&endpoint.cluster_id)
            .fetch_one(&self.read)
            .await
            .ctx("reading a cluster account")?;
        let connection =
            sqlx::query("SELECT * FROM endpoint_connections WHERE egress_private_endpoint_id = $1")
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .ctx("reading an endpoint connection")?
                .map(|r| connection_from_row(&r))
                .transpose()?;
        let service =
            sqlx::query("SELECT * FROM endpoint_services WHERE service_name = $1 AND region = $2")
                .bind(&endpoint.target_service_identifier)
                .bind(&endpoint.region)
                .fetch_optional(&self.read)
                .await
                .ctx("looking up an endpoint service")?
                .map(|r| service_from_row(&r))
                .transpose()?;
        Ok(Some(EndpointWork {
            endpoint,
            cluster_account_id: account,
            connection,
            service,
        }))
    }

    /// Move an endpoint from `from` to `to` if `holder` still holds its lease and it is still in
    /// `from`; optionally open its connection to `service` with `connection_status` (and the
    /// acceptance deadline), or set the status of its existing connection. Returns false when
    /// the endpoint changed under us (nothing written). Records an internal audit entry.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_endpoint(
        &self,
        holder: &str,
        ep: &EgressEndpoint,
        to: &str,
        reason: &str,
        open_connection: Option<(&EndpointService, &str, &str, Option<String>)>,
        connection_status: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.begin().await?;
        let now = crate::now();
        let mut connection_id = ep.endpoint_connection_id.clone();
        if let Some((service, account, status, expires_at)) = open_connection {
            connection_id = format!("pe-{}", &crate::new_id().replace('-', "")[..17]);
            sqlx::query(
                "INSERT INTO endpoint_connections (id, service_id, cluster_id, account_id, egress_private_endpoint_id, status, expires_at, created_at, updated_at, sort_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9)",
            )
            .bind(&connection_id)
            .bind(&service.id)
            .bind(&ep.cluster_id)
            .bind(account)
            .bind(&ep.id)
            .bind(status)
            .bind(expires_at)
            .bind(&now)
            .bind(crate::time_sort_key(&now, &connection_id))
            .execute(&mut *tx)
            .await
            .ctx("opening an endpoint connection")?;
        }
        // Entering the snapshot (accepted: `PENDING` with its connection open) or leaving it
        // (`FAILED`) changes what the gateways route: a new policy version carries it, and the
        // endpoint remembers it to observe the gateways' acknowledgements.
        let routed_version = if matches!(to, "PENDING" | "FAILED") {
            let bumped = sqlx::query(
                "UPDATE clusters SET policy_version = policy_version + 1 WHERE id = $1 AND deleted_at IS NULL",
            )
            .bind(&ep.cluster_id)
            .execute(&mut *tx)
            .await
            .ctx("publishing an endpoint's routing")?
            .rows_affected();
            let (v,): (i64,) = sqlx::query_as("SELECT policy_version FROM clusters WHERE id = $1")
                .bind(&ep.cluster_id)
                .fetch_one(&mut *tx)
                .await
                .ctx("reading a policy version")?;
            if bumped == 1 { v } else { ep.routed_version }
        } else {
            ep.routed_version
        };
        let endpoint_address =
            if ep.endpoint_address.is_empty() && to == "PENDING" && !connection_id.is_empty() {
                endpoint_address(&connection_id, &ep.region)
            } else {
                ep.endpoint_address.clone()
            };
        let moved = move_endpoint(
            &mut tx,
            &Move {
                holder,
                ep,
                to,
                reason,
                connection_id: &connection_id,
                address: &endpoint_address,
                zone_id: &ep.dns_zone_id,
                routed_version,
            },
        )
        .await?;
        if !moved {
            tx.rollback().await.ctx("abandoning a stale transition")?;
            return Ok(false);
        }
        if let Some(status) = connection_status {
            sqlx::query("UPDATE endpoint_connections SET status = $1, updated_at = $2 WHERE egress_private_endpoint_id = $3")
                .bind(status)
                .bind(&now)
                .bind(&ep.id)
                .execute(&mut *tx)
                .await
                .ctx("updating an endpoint connection")?;
        }
        tx.commit().await.ctx("committing an endpoint transition")?;
        Ok(true)
    }
}

/// Where a transition takes an egress private endpoint.
pub(crate) struct Move<'a> {
    pub holder: &'a str,
    pub ep: &'a EgressEndpoint,
    /// The new state; `GONE` removes the endpoint.
    pub to: &'a str,
    pub reason: &'a str,
    pub connection_id: &'a str,
    pub address: &'a str,
    pub zone_id: &'a str,
    pub routed_version: i64,
}

/// Write a transition if `holder` still holds the endpoint's lease and it is still in the state
/// read, and audit it. False, with nothing written, when it changed under us.
pub(crate) async fn move_endpoint(conn: &mut AnyConnection, m: &Move<'_>) -> Result<bool> {
    let ep = m.ep;
    let n = if m.to == "GONE" {
        sqlx::query(
            "DELETE FROM egress_endpoints WHERE id = $1 AND state = $2 AND lease_holder = $3",
        )
        .bind(&ep.id)
        .bind(&ep.state)
        .bind(m.holder)
        .execute(&mut *conn)
        .await
        .ctx("removing an egress private endpoint")?
        .rows_affected()
    } else {
        sqlx::query(
            "UPDATE egress_endpoints SET state = $1, state_reason = $2, endpoint_connection_id = $3, endpoint_address = $4, \
             dns_zone_id = $5, routed_version = $6, updated_at = $7 WHERE id = $8 AND state = $9 AND lease_holder = $10",
        )
        .bind(m.to)
        .bind(m.reason)
        .bind(m.connection_id)
        .bind(m.address)
        .bind(m.zone_id)
        .bind(m.routed_version)
        .bind(crate::now())
        .bind(&ep.id)
        .bind(&ep.state)
        .bind(m.holder)
        .execute(&mut *conn)
        .await
        .ctx("moving an egress private endpoint")?
        .rows_affected()
    };
    if n != 1 {
        return Ok(false);
    }
    let payload = serde_json::json!({
        "egress_private_endpoint_id": ep.id, "from": ep.state, "to": m.to, "reason": m.reason,
        "provider": ep.provider, "endpoint_connection_id": m.connection_id, "driven_by": m.holder,
    });
    let audit = AuditEntry::internal(
        "AUDIT_LOG_ACTION_UPDATE_EGRESS_PRIVATE_ENDPOINT",
        ENDPOINT_ACTOR,
        payload.to_string(),
    )
    .for_cluster(&ep.cluster_id, "");
    record(conn, &audit).await?;
    Ok(true)
}

/// Add bytes a gateway's forwarders relayed for endpoints of its cluster (`(endpoint id,
/// bytes)`); ids of endpoints that are gone are skipped, and a counter saturates at i64::MAX.
pub(crate) async fn add_endpoint_bytes(
    conn: &mut AnyConnection,
    cluster_id: &str,
    bytes: &[(String, u64)],
) -> Result<()> {
    for (id, n) in bytes {
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE egress_endpoints SET bytes_processed = CASE WHEN bytes_processed > $1 THEN $2 ELSE bytes_processed + $3 END \
             WHERE id = $4 AND cluster_id = $5",
        )
        .bind(i64::MAX - n)
        .bind(i64::MAX)
        .bind(n)
        .bind(id)
        .bind(cluster_id)
        .execute(&mut *conn)
        .await
        .ctx("metering endpoint bytes")?;
    }
    Ok(())
}

/// The DNS name of an endpoint on the `local` provider.
pub fn endpoint_address(connection_id: &str, region: &str) -> String {
    format!("{connection_id}.{region}.endpoints.perimeter.internal")
}

async fn load_endpoint(
    conn: &mut AnyConnection,
    cluster_id: &str,
    id: &str,
) -> Result<EgressEndpoint> {
    let row = sqlx::query("SELECT * FROM egress_endpoints WHERE id = $1 AND cluster_id = $2")
        .bind(id)
        .bind(cluster_id)
        .fetch_optional(conn)
        .await
        .ctx("reading an egress private endpoint")?
        .ok_or_else(|| {
            StoreError::NotFound(format!(
                "egress private endpoint {id} not found in cluster {cluster_id}"
            ))
        })?;
    endpoint_from_row(&row)
}

pub(crate) fn endpoint_from_row(r: &AnyRow) -> Result<EgressEndpoint> {
    Ok(EgressEndpoint {
        id: text(r, "id")?,
        cluster_id: text(r, "cluster_id")?,
        region: text(r, "region")?,
        target_service_identifier: text(r, "target_service_identifier")?,
        target_service_type: text(r, "target_service_type")?,
        endpoint_connection_id: text(r, "endpoint_connection_id")?,
        endpoint_address: text(r, "endpoint_address")?,
        state: text(r, "state")?,
        state_reason: text(r, "state_reason")?,
        domain_names: json(r, "domain_names")?,
        domain_names_state: text(r, "domain_names_state")?,
        created_at: text(r, "created_at")?,
        updated_at: text(r, "updated_at")?,
        routed_version: int(r, "routed_version")?,
        domain_names_version: int(r, "domain_names_version")?,
        bytes_processed: int(r, "bytes_processed")?,
        provider: text(r, "provider")?,
        dns_zone_id: text(r, "dns_zone_id")?,
        applied_domain_names: json(r, "applied_domain_names")?,
        domain_changes: json(r, "domain_changes")?,
    })
}

fn service_from_row(r: &AnyRow) -> Result<EndpointService> {
    Ok(EndpointService {
        id: text(r, "id")?,
        service_name: text(r, "service_name")?,
        region: text(r, "region")?,
        backends: json(r, "backends")?,
        proxy_protocol: flag(r, "proxy_protocol")?,
        acceptance_required: flag(r, "acceptance_required")?,
        auto_accept_accounts: json(r, "auto_accept_accounts")?,
        acceptance_timeout_seconds: int(r, "acceptance_timeout_seconds")?,
        created_at: text(r, "created_at")?,
        special_addresses: flag(r, "special_addresses")?,
    })
}

fn connection_from_row(r: &AnyRow) -> Result<EndpointConnection> {
    Ok(EndpointConnection {
        id: text(r, "id")?,
        service_id: text(r, "service_id")?,
        cluster_id: text(r, "cluster_id")?,
        account_id: text(r, "account_id")?,
        egress_private_endpoint_id: text(r, "egress_private_endpoint_id")?,
        status: text(r, "status")?,
        expires_at: opt_text(r, "expires_at")?,
        created_at: text(r, "created_at")?,
    })
}
