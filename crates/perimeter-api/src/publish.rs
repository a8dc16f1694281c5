//! The snapshot publisher: a cluster's policy document, built from the store at the version it
//! carries, and a small cache of compiled snapshots for what-if queries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use perimeter_policy::{
    AllowlistDoc, EndpointDoc, IngressDoc, POLICY_FORMAT, PolicyDocument, RuleDoc, Snapshot,
    TargetServiceType, TrafficPolicy, WorkloadDoc,
};
use perimeter_store::{PolicyInputs, Store};

use crate::error::{ApiError, ApiResult};

/// The document gateways apply for a cluster, as of its current version.
pub fn document(inputs: &PolicyInputs) -> ApiResult<PolicyDocument> {
    let c = &inputs.cluster;
    // A policy the gateways cannot read (an `ERROR` left by a failed change) fails closed.
    let traffic_policy = c
        .egress_policy
        .parse::<TrafficPolicy>()
        .unwrap_or(TrafficPolicy::DefaultDeny);
    let rules = inputs
        .rules
        .iter()
        .map(|r| {
            Ok(RuleDoc {
                id: r.id.clone(),
                name: r.name.clone(),
                rule_type: r.rule_type.parse().map_err(ApiError::internal)?,
                destination: r.destination.clone(),
                ports: r.ports.clone(),
                paths: r.paths.clone(),
                crl_managed: r.crl_managed,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
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
                ports: exposed_ports(&e.target_service_type),
                proxy_protocol: r.proxy_protocol,
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
    })
}

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
        let mut doc = document(&inputs)?;
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
