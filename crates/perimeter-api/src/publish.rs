//! The snapshot publisher: a cluster's policy document, built from the store at the version it
//! carries, and a small cache of compiled snapshots for what-if queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use perimeter_policy::{
    AllowlistDoc, EndpointDoc, IngressDoc, POLICY_FORMAT, PolicyDocument, RuleDoc, Snapshot,
    TargetServiceType, TlsInspectionDoc, TrafficPolicy, WorkloadDoc,
};
use perimeter_store::{PolicyInputs, Store};

use crate::error::{ApiError, ApiResult, Code};
use crate::secrets::SecretsKey;

/// The document gateways apply for a cluster, as of its current version. `secrets` opens the
/// inspection CA key of a cluster that has TLS inspection on: a key it cannot open is an error
/// (logged, and the request fails), never a document without inspection.
pub fn document(inputs: &PolicyInputs, secrets: Option<&SecretsKey>) -> ApiResult<PolicyDocument> {
    let c = &inputs.cluster;
    // `ERROR` (left by a change no gateway could apply) is enforced as DEFAULT_DENY: it fails
    // closed. Any other value the store holds that is not a policy is corruption: an error that
    // the gateway's request reports (it keeps its last-known-good policy), never a guess.
    let traffic_policy = match c.egress_policy.as_str() {
        "ERROR" => TrafficPolicy::DefaultDeny,
        stored => stored.parse::<TrafficPolicy>().map_err(|e| {
            tracing::error!(cluster = %c.id, egress_policy = stored, "the stored egress traffic policy is unreadable");
            ApiError::internal(format!(
                "cluster {}: the stored egress_traffic_policy {stored:?} is unreadable: {e}",
                c.id
            ))
        })?,
    };
    let rules = inputs
        .rules
        .iter()
        .map(|r| RuleDoc {
            id: r.id.clone(),
            name: r.name.clone(),
            rule_type: r.rule_type,
            destination: r.destination.to_string(),
            ports: r.ports.clone(),
            paths: r.paths.iter().map(ToString::to_string).collect(),
            crl_managed: r.crl_managed,
        })
        .collect();
    let private_endpoints = inputs
        .endpoints
        .iter()
        .map(|r| {
            let e = &r.endpoint;
            EndpointDoc {
                id: e.id.clone(),
                region: e.region.clone(),
                connection_id: e.endpoint_connection_id.clone(),
                endpoint_address: e.endpoint_address.clone(),
                domain_names: e.domain_names.clone(),
                backends: r.backends.clone(),
                ports: if r.ingress_backed {
                    // A cluster reached privately answers SQL on CockroachDB's port, whatever
                    // port its private ingress listeners have.
                    vec![SQL_PORT]
                } else {
                    exposed_ports(&e.target_service_type)
                },
                proxy_protocol: r.proxy_protocol,
                // A cluster's private endpoint service is the platform's own: its backends are
                // the gateways' private ingress listeners.
                special_addresses: r.special_addresses || r.ingress_backed,
            }
        })
        .collect();
    let ingress = IngressDoc {
        allowlist: inputs
            .allowlist
            .iter()
            .map(|e| AllowlistDoc {
                cidr: format!("{}/{}", e.cidr_ip, e.cidr_mask),
                name: e.name.clone(),
                sql: e.sql,
                ui: e.ui,
            })
            .collect(),
        workloads: inputs
            .workloads
            .iter()
            .filter(|w| !w.sql.is_empty() || !w.ui.is_empty())
            .map(|w| WorkloadDoc {
                region: w.region.clone(),
                sql: w.sql.clone(),
                ui: w.ui.clone(),
            })
            .collect(),
        public: c.network_visibility != "PRIVATE",
        private_endpoints: inputs.private_connections.clone(),
    };
    Ok(PolicyDocument {
        format: POLICY_FORMAT,
        version: c.policy_version.max(0) as u64,
        cluster_id: c.id.clone(),
        traffic_policy,
        rules,
        private_endpoints,
        ingress,
        tls_inspection: tls_inspection(inputs, secrets)?,
    })
}

/// The cluster's TLS inspection as the gateways get it: the CA with its key opened, when on.
fn tls_inspection(
    inputs: &PolicyInputs,
    secrets: Option<&SecretsKey>,
) -> ApiResult<Option<TlsInspectionDoc>> {
    let Some(t) = inputs.tls_inspection.as_ref().filter(|t| t.enabled) else {
        return Ok(None);
    };
    let id = &inputs.cluster.id;
    let unusable = |cause: String| {
        tracing::error!(cluster = %id, cause = %cause, "the cluster's TLS inspection CA key cannot be opened; its snapshot is not published");
        ApiError {
            internal: Some(cause),
            ..ApiError::new(
                Code::Internal,
                format!(
                    "cluster {id}: the TLS inspection CA key cannot be opened with this control plane's secrets key (serve --secrets-key-file; every replica must use the same one)"
                ),
            )
        }
    };
    let secrets = secrets.ok_or_else(|| unusable("no secrets key is configured".into()))?;
    let key = secrets
        .open(&t.ca_key_sealed, id)
        .map_err(|e| unusable(format!("cluster {id}: the sealed CA key {e}")))?;
    let ca_key = String::from_utf8(key)
        .map_err(|_| unusable(format!("cluster {id}: the opened CA key is not text")))?;
    Ok(Some(TlsInspectionDoc {
        ca_certificate: t.ca_certificate.clone(),
        ca_key,
        never_inspect: t.never_inspect.clone(),
    }))
}

/// The port an egress private endpoint to another cluster's private endpoint service exposes.
pub const SQL_PORT: u16 = 26257;

/// The ports an endpoint of this target type exposes in front of every backend: an MSK
/// cluster's broker port for its authentication type; none (each backend's own port) for a
/// private service.
fn exposed_ports(target_service_type: &str) -> Vec<u16> {
    match target_service_type.parse::<TargetServiceType>() {
        Ok(TargetServiceType::MskSaslScram) => vec![9096],
        Ok(TargetServiceType::MskSaslIam) => vec![9098],
        Ok(TargetServiceType::MskTls) => vec![9094],
        _ => vec![],
    }
}

/// (cluster, version, forced traffic policy).
type CacheKey = (String, u64, Option<TrafficPolicy>);

/// Compiled snapshots by (cluster, version, forced policy), for egress-check.
#[derive(Default, Clone)]
pub struct SnapshotCache {
    inner: Arc<Mutex<HashMap<CacheKey, Arc<Snapshot>>>>,
}

impl SnapshotCache {
    /// The cluster's current snapshot, compiled by the same code the gateways run; with
    /// `policy` set, as if the cluster had that traffic policy.
    pub async fn current(
        &self,
        store: &Store,
        secrets: Option<&SecretsKey>,
        cluster_id: &str,
        policy: Option<TrafficPolicy>,
    ) -> ApiResult<Arc<Snapshot>> {
        // The version alone first (one small read): a snapshot compiled at it is the answer,
        // without reading every rule again.
        let (version, _) = store
            .policy_version_of(cluster_id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("cluster {cluster_id} not found")))?;
        let key = (cluster_id.to_string(), version.max(0) as u64, policy);
        if let Some(s) = self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(s.clone());
        }
        let inputs = store.policy_inputs(cluster_id).await?;
        let mut doc = document(&inputs, secrets)?;
        // The inputs may be of a newer version than the one just read: key what was compiled.
        let key = (cluster_id.to_string(), doc.version, policy);
        if let Some(p) = policy {
            doc.traffic_policy = p;
        }
        let snap = Arc::new(perimeter_policy::compile(&doc).map_err(ApiError::internal)?);
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 64 {
            map.clear();
        }
        map.insert(key, snap.clone());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use perimeter_store::{AuditEntry, Durability, NewCluster, Store};

    use super::*;

    #[tokio::test]
    async fn an_unreadable_stored_policy_is_an_error_and_error_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
        let cluster = store
            .create_cluster(
                &NewCluster {
                    network_visibility: "PRIVATE".into(),
                    egress_policy: "ALLOW_ALL".into(),
                    ..NewCluster::example("published")
                },
                &audit,
            )
            .await
            .unwrap();
        let mut inputs = store.policy_inputs(&cluster.id).await.unwrap();
        let doc = document(&inputs, None).unwrap();
        assert_eq!(doc.traffic_policy, TrafficPolicy::AllowAll);
        assert!(!doc.ingress.public, "PRIVATE closes the public side");
        inputs.cluster.egress_policy = "ERROR".into();
        assert_eq!(
            document(&inputs, None).unwrap().traffic_policy,
            TrafficPolicy::DefaultDeny
        );
        inputs.cluster.egress_policy = "ALLOW_SOME".into();
        let e = document(&inputs, None).unwrap_err();
        assert!(
            format!("{e:?}").contains("ALLOW_SOME"),
            "the error names the value: {e:?}"
        );
    }

    #[tokio::test]
    async fn inspection_travels_with_its_key_opened_and_a_key_that_does_not_open_is_an_error() {
        use crate::secrets::SecretsKey;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(dir.path(), Durability::Normal)
            .await
            .unwrap();
        let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
        let cluster = store
            .create_cluster(&NewCluster::example("inspected"), &audit)
            .await
            .unwrap();
        let key = SecretsKey::generate().unwrap();
        let ca = crate::inspection_ca::generate(&cluster.id).unwrap();
        let new_ca = perimeter_store::NewInspectionCa {
            ca_certificate: ca.certificate_pem.clone(),
            ca_key_sealed: key.seal(ca.key_pem.as_bytes(), &cluster.id).unwrap(),
        };
        store
            .put_tls_inspection(
                &cluster.id,
                true,
                &["pinned.example.com".into()],
                Some(&new_ca),
                &audit,
            )
            .await
            .unwrap();
        let inputs = store.policy_inputs(&cluster.id).await.unwrap();
        let doc = document(&inputs, Some(&key)).unwrap();
        let t = doc.tls_inspection.as_ref().expect("inspection is on");
        assert_eq!(t.ca_certificate, ca.certificate_pem);
        assert_eq!(t.ca_key, ca.key_pem);
        assert_eq!(t.never_inspect, vec!["pinned.example.com".to_string()]);
        perimeter_policy::compile(&doc).expect("the gateways compile it");
        // Another replica's key, or none: an error that says what is wrong, never a document
        // without inspection.
        let other = SecretsKey::generate().unwrap();
        for secrets in [Some(&other), None] {
            let e = document(&inputs, secrets).unwrap_err();
            assert_eq!(e.code, crate::Code::Internal);
            assert!(e.message.contains("secrets key"), "{}", e.message);
            assert!(e.message.contains(&cluster.id), "{}", e.message);
        }
        // Off: no inspection in the document, and no key needed.
        store
            .put_tls_inspection(&cluster.id, false, &[], None, &audit)
            .await
            .unwrap();
        let inputs = store.policy_inputs(&cluster.id).await.unwrap();
        assert_eq!(document(&inputs, None).unwrap().tls_inspection, None);
    }
}
