//! The ingress side's private half: a cluster's private endpoint services (registered as
//! `local` endpoint services that its private ingress listeners serve), customers' endpoint
//! connections to them, and the owners trusted to connect.

use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, record};
use crate::clusters::{lock_cluster, touch_live_cluster};
use crate::model::{Cluster, IngressConnection, IngressService, TrustedOwner, int, text};
use crate::{Ctx, Result, Store, StoreError};

impl Store {
    // ---- ingress private endpoints ------------------------------------------------------------

    pub async fn list_ingress_services(&self, cluster_id: &str) -> Result<Vec<IngressService>> {
        self.get_live_cluster(cluster_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM ingress_endpoint_services WHERE cluster_id = $1 ORDER BY region",
        )
        .bind(cluster_id)
        .fetch_all(&self.read)
        .await
        .ctx("listing private endpoint services")?;
        rows.iter().map(ingress_service_from_row).collect()
    }

    /// Create the cluster's ingress private endpoint service in every region that lacks one,
    /// each registered as a `local` endpoint service (PROXY protocol v2, backends: the region's
    /// private ingress listeners) so that another cluster's egress private endpoint reaches it.
    /// They read `CREATING` until every live gateway of the region serves them.
    pub async fn create_ingress_services(
        &self,
        cluster_id: &str,
        audit: &AuditEntry,
    ) -> Result<Vec<IngressService>> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        for r in &cluster.regions {
            let hex = &crate::new_id().replace('-', "")[..17];
            // A provider names the service when it creates it.
            let (svc_id, name) = if self.provider == crate::LOCAL_PROVIDER {
                ingress_service_name(&cluster, &r.name, hex)
            } else {
                (String::new(), String::new())
            };
            sqlx::query(
                "INSERT INTO ingress_endpoint_services (cluster_id, region, endpoint_service_id, service_name, status, created_at, routed_version, local_service_id, provider, provider_pending) \
                 VALUES ($1, $2, $3, $4, 'CREATING', $5, $6, '', $7, $8) ON CONFLICT DO NOTHING",
            )
            .bind(cluster_id)
            .bind(&r.name)
            .bind(&svc_id)
            .bind(&name)
            .bind(crate::now())
            .bind(cluster.policy_version)
            .bind(self.provider)
            .bind((self.provider != crate::LOCAL_PROVIDER) as i64)
            .execute(&mut *tx)
            .await
            .ctx("creating private endpoint services")?;
        }
        // Register every service that is not yet a `local` endpoint service.
        let unregistered = sqlx::query(
            "SELECT * FROM ingress_endpoint_services WHERE cluster_id = $1 AND local_service_id = '' AND provider = 'local' ORDER BY region",
        )
        .bind(cluster_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading private endpoint services")?;
        for row in &unregistered {
            let svc = ingress_service_from_row(row)?;
            let id = crate::new_id();
            let now = crate::now();
            sqlx::query(
                "INSERT INTO endpoint_services (id, service_name, region, backends, acceptance_required, auto_accept_accounts, acceptance_timeout_seconds, created_at, sort_key, proxy_protocol, ingress_cluster_id) \
                 VALUES ($1, $2, $3, '[]', 0, '[]', 0, $4, $5, 1, $6)",
            )
            .bind(&id)
            .bind(&svc.service_name)
            .bind(&svc.region)
            .bind(&now)
            .bind(crate::time_sort_key(&now, &id))
            .bind(cluster_id)
            .execute(&mut *tx)
            .await
            .ctx("registering a private endpoint service as a local endpoint service")?;
            sqlx::query(
                "UPDATE ingress_endpoint_services SET local_service_id = $1, routed_version = $2 WHERE cluster_id = $3 AND region = $4",
            )
            .bind(&id)
            .bind(cluster.policy_version)
            .bind(cluster_id)
            .bind(&svc.region)
            .execute(&mut *tx)
            .await
            .ctx("registering a private endpoint service")?;
        }
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit()
            .await
            .ctx("committing private endpoint services")?;
        self.list_ingress_services(cluster_id).await
    }

    pub async fn list_ingress_connections(
        &self,
        cluster_id: &str,
    ) -> Result<Vec<IngressConnection>> {
        self.get_live_cluster(cluster_id).await?;
        let rows = sqlx::query("SELECT * FROM ingress_endpoint_connections WHERE cluster_id = $1 ORDER BY created_at, endpoint_id")
            .bind(cluster_id)
            .fetch_all(&self.read)
            .await
            .ctx("listing private endpoint connections")?;
        rows.iter().map(ingress_connection_from_row).collect()
    }

    /// Register a customer's endpoint with the cluster's ingress service. An endpoint whose
    /// owner the trusted owners (when any are listed) do not name reads `STATUS_REJECTED`;
    /// any other enters the next snapshot and reads `STATUS_PENDING` until every live gateway
    /// of the cluster admits it. On the `local` provider the owner of an egress private
    /// endpoint (named by its `endpoint_connection_id`) is its cluster's account, and the
    /// connection belongs to the service in that endpoint's region.
    pub async fn add_ingress_connection(
        &self,
        cluster_id: &str,
        endpoint_id: &str,
        audit: &AuditEntry,
    ) -> Result<IngressConnection> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        let services = sqlx::query(
            "SELECT * FROM ingress_endpoint_services WHERE cluster_id = $1 ORDER BY region",
        )
        .bind(cluster_id)
        .fetch_all(&mut *tx)
        .await
        .ctx("reading private endpoint services")?
        .iter()
        .map(ingress_service_from_row)
        .collect::<Result<Vec<_>>>()?;
        if services.is_empty() {
            return Err(StoreError::Precondition {
                field: "endpoint_id".into(),
                message: format!(
                    "cluster {cluster_id} has no private endpoint service; create one with POST .../networking/private-endpoint-services first"
                ),
            });
        }
        let local: Option<(String, String)> = sqlx::query_as(
            "SELECT c.account_id, e.target_service_identifier FROM egress_endpoints e JOIN clusters c ON c.id = e.cluster_id \
             WHERE e.endpoint_connection_id = $1 AND e.state <> 'DELETING' ORDER BY e.created_at LIMIT 1",
        )
        .bind(endpoint_id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("looking up the connecting endpoint")?;
        let (owner, target) = local.unwrap_or_default();
        let svc = services
            .iter()
            .find(|s| s.service_name == target)
            .unwrap_or(&services[0])
            .clone();
        let owners = owner_ids(&mut tx, cluster_id).await?;
        // At a provider the owner is known once the provider shows the connection; it is judged
        // then.
        let (status, admitted) =
            if svc.provider != crate::LOCAL_PROVIDER || owner_trusted(&owners, &owner) {
                ("STATUS_PENDING", cluster.policy_version)
            } else {
                ("STATUS_REJECTED", 0)
            };
        // At a provider, the connection is seen (its owner, its state) once the provider shows it.
        let provider_state = if svc.provider == crate::LOCAL_PROVIDER {
            ""
        } else {
            "unseen"
        };
        let n = sqlx::query(
            "INSERT INTO ingress_endpoint_connections (cluster_id, endpoint_id, region, endpoint_service_id, service_name, status, created_at, owner_account, admitted_version, provider_state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
        )
        .bind(cluster_id)
        .bind(endpoint_id)
        .bind(&svc.region)
        .bind(&svc.endpoint_service_id)
        .bind(&svc.service_name)
        .bind(status)
        .bind(crate::now())
        .bind(&owner)
        .bind(admitted)
        .bind(provider_state)
        .execute(&mut *tx)
        .await
        .ctx("adding a private endpoint connection")?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict {
                field: "endpoint_id".into(),
                message: format!(
                    "endpoint {endpoint_id} is already connected to cluster {cluster_id}"
                ),
            });
        }
        crate::provider::provider_work(&mut tx, cluster_id).await?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit()
            .await
            .ctx("committing a private endpoint connection")?;
        Ok(IngressConnection {
            endpoint_id: endpoint_id.to_string(),
            region: svc.region,
            endpoint_service_id: svc.endpoint_service_id,
            service_name: svc.service_name,
            status: status.into(),
            owner_account: owner,
            admitted_version: admitted,
            provider_state: provider_state.into(),
        })
    }

    /// Private endpoint services still `CREATING` (any cluster region).
    pub async fn creating_ingress_services(&self, cluster_id: &str) -> Result<Vec<IngressService>> {
        sqlx::query("SELECT * FROM ingress_endpoint_services WHERE cluster_id = $1 AND status = 'CREATING' ORDER BY region")
            .bind(cluster_id)
            .fetch_all(&self.read)
            .await
            .ctx("reading private endpoint services")?
            .iter()
            .map(ingress_service_from_row)
            .collect()
    }

    /// Connections admitted into a snapshot that gateways have not all applied yet.
    pub async fn admitting_ingress_connections(
        &self,
        cluster_id: &str,
    ) -> Result<Vec<IngressConnection>> {
        sqlx::query("SELECT * FROM ingress_endpoint_connections WHERE cluster_id = $1 AND status = 'STATUS_PENDING' AND admitted_version > 0")
            .bind(cluster_id)
            .fetch_all(&self.read)
            .await
            .ctx("reading private endpoint connections")?
            .iter()
            .map(ingress_connection_from_row)
            .collect()
    }

    /// `CREATING` -> `AVAILABLE` for the service of `region`, if it is still the one routed
    /// at `version`.
    pub async fn settle_ingress_service(
        &self,
        cluster_id: &str,
        region: &str,
        version: i64,
    ) -> Result<bool> {
        let n = sqlx::query("UPDATE ingress_endpoint_services SET status = 'AVAILABLE' WHERE cluster_id = $1 AND region = $2 AND routed_version = $3 AND status = 'CREATING' \
            AND provider_state IN ('', 'Available')")
            .bind(cluster_id)
            .bind(region)
            .bind(version)
            .execute(&self.write)
            .await
            .ctx("settling a private endpoint service")?
            .rows_affected();
        Ok(n == 1)
    }

    /// `STATUS_PENDING` -> `STATUS_AVAILABLE` for a connection still admitted at `version`.
    pub async fn settle_ingress_connection(
        &self,
        cluster_id: &str,
        endpoint_id: &str,
        version: i64,
    ) -> Result<bool> {
        let n = sqlx::query("UPDATE ingress_endpoint_connections SET status = 'STATUS_AVAILABLE' WHERE cluster_id = $1 AND endpoint_id = $2 AND admitted_version = $3 AND status = 'STATUS_PENDING' \
            AND provider_state IN ('', 'available')")
            .bind(cluster_id)
            .bind(endpoint_id)
            .bind(version)
            .execute(&self.write)
            .await
            .ctx("settling a private endpoint connection")?
            .rows_affected();
        Ok(n == 1)
    }

    /// Record where gateway `gateway_id`'s private ingress listener is reached (`""`: it has
    /// none). When that changed, every cluster whose egress private endpoints reach this
    /// gateway's cluster through its private endpoint services gets a new snapshot version
    /// (their forwarders' backends changed). Returns whether anything changed.
    pub async fn report_private_ingress(&self, gateway_id: &str, address: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("UPDATE gateways SET private_ingress_address = $1 WHERE id = $2 AND private_ingress_address <> $1")
            .bind(address)
            .bind(gateway_id)
            .execute(&mut *tx)
            .await
            .ctx("recording a private ingress address")?
            .rows_affected();
        if n == 0 {
            tx.rollback().await.ctx("ending a read")?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE clusters SET policy_version = policy_version + 1 WHERE deleted_at IS NULL AND id IN (\
             SELECT e.cluster_id FROM egress_endpoints e JOIN endpoint_connections c ON c.egress_private_endpoint_id = e.id \
             JOIN endpoint_services s ON s.id = c.service_id \
             WHERE s.ingress_cluster_id = (SELECT cluster_id FROM gateways WHERE id = $1) AND e.state IN ('PENDING', 'AVAILABLE'))",
        )
        .bind(gateway_id)
        .execute(&mut *tx)
        .await
        .ctx("publishing a private ingress address")?;
        tx.commit()
            .await
            .ctx("committing a private ingress address")?;
        Ok(true)
    }

    pub async fn delete_ingress_connection(
        &self,
        cluster_id: &str,
        endpoint_id: &str,
        audit: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        let n = sqlx::query(
            "DELETE FROM ingress_endpoint_connections WHERE cluster_id = $1 AND endpoint_id = $2",
        )
        .bind(cluster_id)
        .bind(endpoint_id)
        .execute(&mut *tx)
        .await
        .ctx("deleting a private endpoint connection")?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "private endpoint connection {endpoint_id} not found in cluster {cluster_id}"
            )));
        }
        // At a provider, the connection is rejected there.
        crate::provider::provider_work(&mut tx, cluster_id).await?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit()
            .await
            .ctx("committing a private endpoint connection deletion")
    }

    pub async fn list_trusted_owners(&self, cluster_id: &str) -> Result<Vec<TrustedOwner>> {
        self.get_live_cluster(cluster_id).await?;
        let rows = sqlx::query(
            "SELECT * FROM trusted_owners WHERE cluster_id = $1 ORDER BY created_at, id",
        )
        .bind(cluster_id)
        .fetch_all(&self.read)
        .await
        .ctx("listing trusted owners")?;
        rows.iter().map(owner_from_row).collect()
    }

    pub async fn get_trusted_owner(&self, cluster_id: &str, id: &str) -> Result<TrustedOwner> {
        self.get_live_cluster(cluster_id).await?;
        let row = sqlx::query("SELECT * FROM trusted_owners WHERE cluster_id = $1 AND id = $2")
            .bind(cluster_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .ctx("reading a trusted owner")?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "trusted owner {id} not found in cluster {cluster_id}"
                ))
            })?;
        owner_from_row(&row)
    }

    pub async fn add_trusted_owner(
        &self,
        cluster_id: &str,
        owner_type: &str,
        external: &str,
        audit: &AuditEntry,
    ) -> Result<TrustedOwner> {
        let mut tx = self.begin().await?;
        let cluster = lock_cluster(&mut tx, cluster_id).await?;
        let id = crate::new_id();
        let n = sqlx::query(
            "INSERT INTO trusted_owners (id, cluster_id, owner_type, external_owner_id, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(cluster_id)
        .bind(owner_type)
        .bind(external)
        .bind(crate::now())
        .execute(&mut *tx)
        .await
        .ctx("adding a trusted owner")?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Conflict {
                field: "external_owner_id".into(),
                message: format!(
                    "{owner_type} {external} is already a trusted owner of cluster {cluster_id}"
                ),
            });
        }
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        let row = sqlx::query("SELECT * FROM trusted_owners WHERE id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading a trusted owner")?;
        reassess_connections(&mut tx, &cluster).await?;
        crate::provider::provider_work(&mut tx, &cluster.id).await?;
        tx.commit().await.ctx("committing a trusted owner")?;
        owner_from_row(&row)
    }

    pub async fn remove_trusted_owner(
        &self,
        cluster_id: &str,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<TrustedOwner> {
        let mut tx = self.begin().await?;
        let cluster = touch_live_cluster(&mut tx, cluster_id).await?;
        let row = sqlx::query("SELECT * FROM trusted_owners WHERE cluster_id = $1 AND id = $2")
            .bind(cluster_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a trusted owner")?
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "trusted owner {id} not found in cluster {cluster_id}"
                ))
            })?;
        let owner = owner_from_row(&row)?;
        sqlx::query("DELETE FROM trusted_owners WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("removing a trusted owner")?;
        reassess_connections(&mut tx, &cluster).await?;
        crate::provider::provider_work(&mut tx, &cluster.id).await?;
        record(
            &mut tx,
            &audit.clone().for_cluster(cluster_id, &cluster.name),
        )
        .await?;
        tx.commit()
            .await
            .ctx("committing a trusted owner removal")?;
        Ok(owner)
    }
}

/// The provider-shaped id and name of a cluster region's private endpoint service, from 17
/// random hex digits: `vpce-svc-<hex>` and `com.amazonaws.vpce.<region>.vpce-svc-<hex>` on AWS.
fn ingress_service_name(cluster: &Cluster, region: &str, hex: &str) -> (String, String) {
    match cluster.provider.as_str() {
        "GCP" => {
            let id = format!("perimeter-{hex}");
            let name = format!(
                "projects/{}/regions/{region}/serviceAttachments/{id}",
                cluster.account_id
            );
            (id, name)
        }
        "AZURE" => {
            let id = format!("perimeter-{hex}");
            let name = format!("{id}.{}.{region}.azure.privatelinkservice", cluster.id);
            (id, name)
        }
        _ => {
            let id = format!("vpce-svc-{hex}");
            let name = format!("com.amazonaws.vpce.{region}.{id}");
            (id, name)
        }
    }
}

/// Withdraw the `local` endpoint service registrations of a cluster's private endpoint services
/// (of one region, or all): egress private endpoints that reached them fail with the reason,
/// leave their clusters' next snapshots, and the registrations go.
pub(crate) async fn retire_ingress_registrations(
    conn: &mut sqlx::AnyConnection,
    cluster_id: &str,
    region: Option<&str>,
) -> Result<()> {
    let services = "SELECT id FROM endpoint_services WHERE ingress_cluster_id = $1 AND ($2 = '' OR region = $2)";
    let region = region.unwrap_or("");
    let now = crate::now();
    sqlx::query(&format!(
        "UPDATE clusters SET policy_version = policy_version + 1 WHERE deleted_at IS NULL AND id IN (\
         SELECT e.cluster_id FROM egress_endpoints e JOIN endpoint_connections c ON c.egress_private_endpoint_id = e.id \
         WHERE c.service_id IN ({services}) AND e.state NOT IN ('FAILED', 'REJECTED', 'EXPIRED'))"
    ))
    .bind(cluster_id)
    .bind(region)
    .execute(&mut *conn)
    .await
    .ctx("publishing a private endpoint service's removal")?;
    sqlx::query(&format!(
        "UPDATE egress_endpoints SET state = 'FAILED', state_reason = 'the private endpoint service was removed by its cluster', \
         updated_at = $3, routed_version = (SELECT policy_version FROM clusters WHERE clusters.id = egress_endpoints.cluster_id) \
         WHERE state NOT IN ('FAILED', 'REJECTED', 'EXPIRED', 'DELETING') AND id IN \
         (SELECT egress_private_endpoint_id FROM endpoint_connections WHERE service_id IN ({services}))"
    ))
    .bind(cluster_id)
    .bind(region)
    .bind(&now)
    .execute(&mut *conn)
    .await
    .ctx("failing endpoints of a removed private endpoint service")?;
    sqlx::query(&format!(
        "UPDATE endpoint_connections SET status = 'DELETED', updated_at = $3 WHERE service_id IN ({services})"
    ))
    .bind(cluster_id)
    .bind(region)
    .bind(&now)
    .execute(&mut *conn)
    .await
    .ctx("closing connections of a removed private endpoint service")?;
    sqlx::query(&format!(
        "UPDATE endpoint_services SET ingress_cluster_id = '', backends = '[]', service_name = service_name || '#removed-' || id \
         WHERE id IN ({services})"
    ))
    .bind(cluster_id)
    .bind(region)
    .execute(&mut *conn)
    .await
    .ctx("retiring private endpoint service registrations")?;
    Ok(())
}

/// The external ids of a cluster's trusted owners.
pub(crate) async fn owner_ids(
    conn: &mut sqlx::AnyConnection,
    cluster_id: &str,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT external_owner_id FROM trusted_owners WHERE cluster_id = $1")
            .bind(cluster_id)
            .fetch_all(conn)
            .await
            .ctx("reading trusted owners")?;
    Ok(rows.into_iter().map(|(o,)| o).collect())
}

/// Whether an endpoint owned by `owner` (`""`: unknown) may connect: no trusted owners listed,
/// `*` listed, or the owner listed. An unknown owner is trusted only where every owner is.
pub(crate) fn owner_trusted(owners: &[String], owner: &str) -> bool {
    owners.is_empty()
        || owners
            .iter()
            .any(|o| o == "*" || (!owner.is_empty() && o == owner))
}

/// Judge every connection of the cluster again after its trusted owners changed (the cluster
/// row is touched: `cluster.policy_version` is the version of the change). A connection newly
/// trusted enters this snapshot (`STATUS_PENDING`); one no longer trusted reads
/// `STATUS_REJECTED` and leaves it.
async fn reassess_connections(conn: &mut sqlx::AnyConnection, cluster: &Cluster) -> Result<()> {
    let owners = owner_ids(conn, &cluster.id).await?;
    let rows = sqlx::query("SELECT * FROM ingress_endpoint_connections WHERE cluster_id = $1")
        .bind(&cluster.id)
        .fetch_all(&mut *conn)
        .await
        .ctx("reading private endpoint connections")?;
    for row in &rows {
        let c = ingress_connection_from_row(row)?;
        if c.provider_state == "unseen" {
            continue;
        }
        let trusted = owner_trusted(&owners, &c.owner_account);
        let (status, admitted) = match (trusted, c.status == "STATUS_REJECTED") {
            (true, true) => ("STATUS_PENDING", cluster.policy_version),
            (false, false) => ("STATUS_REJECTED", 0),
            _ => continue,
        };
        sqlx::query("UPDATE ingress_endpoint_connections SET status = $1, admitted_version = $2 WHERE cluster_id = $3 AND endpoint_id = $4")
            .bind(status)
            .bind(admitted)
            .bind(&cluster.id)
            .bind(&c.endpoint_id)
            .execute(&mut *conn)
            .await
            .ctx("judging a private endpoint connection")?;
    }
    Ok(())
}

pub(crate) fn ingress_service_from_row(r: &AnyRow) -> Result<IngressService> {
    Ok(IngressService {
        region: text(r, "region")?,
        endpoint_service_id: text(r, "endpoint_service_id")?,
        service_name: text(r, "service_name")?,
        status: text(r, "status")?,
        routed_version: int(r, "routed_version")?,
        provider: text(r, "provider")?,
        provider_state: text(r, "provider_state")?,
        provider_reason: text(r, "provider_reason")?,
        created_at: text(r, "created_at")?,
    })
}

pub(crate) fn ingress_connection_from_row(r: &AnyRow) -> Result<IngressConnection> {
    Ok(IngressConnection {
        endpoint_id: text(r, "endpoint_id")?,
        region: text(r, "region")?,
        endpoint_service_id: text(r, "endpoint_service_id")?,
        service_name: text(r, "service_name")?,
        status: text(r, "status")?,
        owner_account: text(r, "owner_account")?,
        admitted_version: int(r, "admitted_version")?,
        provider_state: text(r, "provider_state")?,
    })
}

fn owner_from_row(r: &AnyRow) -> Result<TrustedOwner> {
    Ok(TrustedOwner {
        id: text(r, "id")?,
        cluster_id: text(r, "cluster_id")?,
        owner_type: text(r, "owner_type")?,
        external_owner_id: text(r, "external_owner_id")?,
        created_at: text(r, "created_at")?,
    })
}
