//! Two control plane replicas on one PostgreSQL database: their reconcilers share the work
//! through leases and never drive one operation twice.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use perimeter_api::reconcile::{Reconciler, ReconcilerConfig};
use perimeter_store::{AuditEntry, AuditQuery, NewCluster, NewEndpointService, Store};
use tokio::sync::Notify;

/// A one-region AWS cluster to hang endpoints on.
fn new_cluster(name: impl Into<String>, account_id: impl Into<String>) -> NewCluster {
    NewCluster {
        account_id: account_id.into(),
        egress_policy: "ALLOW_ALL".into(),
        ..NewCluster::example(&name.into())
    }
}

fn reconciler(store: &Store, holder: &str) -> Reconciler {
    Reconciler::new(
        store.clone(),
        Arc::new(Notify::new()),
        ReconcilerConfig {
            holder: holder.into(),
            lease: Duration::from_secs(30),
            interval: Duration::from_millis(10),
            batch: 3,
            ..Default::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_drive_one_operation_twice() {
    let (url, db) = common::fresh_pg_database().await;
    let a = Store::open_postgres(&url).await.unwrap();
    let b = Store::open_postgres(&url).await.unwrap();
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    a.create_endpoint_service(
        &NewEndpointService {
            service_name: "com.amazonaws.vpce.us-east-1.vpce-svc-shared".into(),
            region: "us-east-1".into(),
            backends: vec![perimeter_policy::BackendDoc::plain("127.0.0.1:9092")],
            proxy_protocol: false,
            special_addresses: false,
            acceptance_required: false,
            auto_accept_accounts: vec![],
            acceptance_timeout_seconds: 60,
        },
        &audit,
    )
    .await
    .unwrap();
    const N: usize = 40;
    let mut endpoints = Vec::new();
    for i in 0..N {
        let c = a
            .create_cluster(
                &new_cluster(format!("replica-{i:03}"), format!("{:012}", i)),
                &audit,
            )
            .await
            .unwrap();
        // Half accepted by the shared service, half aimed at a service nobody registered.
        let target = if i % 2 == 0 {
            "com.amazonaws.vpce.us-east-1.vpce-svc-shared"
        } else {
            "com.amazonaws.vpce.us-east-1.vpce-svc-absent"
        };
        let ep = a
            .create_endpoint(&c.id, "us-east-1", target, "PRIVATE_SERVICE", &audit)
            .await
            .unwrap();
        endpoints.push((c.id, ep.id, i % 2 == 0));
    }
    let (ra, rb) = (reconciler(&a, "replica-a"), reconciler(&b, "replica-b"));
    let settled = async {
        loop {
            let (x, y) = tokio::join!(ra.pass(), rb.pass());
            x.unwrap();
            y.unwrap();
            let mut done = 0;
            for (c, e, _) in &endpoints {
                let w = a.endpoint_work(e).await.unwrap().unwrap();
                assert_eq!(&w.endpoint.cluster_id, c);
                if w.endpoint.state == "FAILED" || w.connection.is_some() {
                    done += 1;
                }
            }
            if done == endpoints.len() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), settled)
        .await
        .expect("the replicas did not settle every endpoint within 60 s");
    // Let both replicas make more passes over settled work: nothing more may happen.
    for _ in 0..5 {
        let (x, y) = tokio::join!(ra.pass(), rb.pass());
        x.unwrap();
        y.unwrap();
    }
    let (entries, _) = a
        .list_audit(&AuditQuery {
            starting_from: None,
            descending: false,
            limit: 1000,
        })
        .await
        .unwrap();
    let mut steps: HashMap<String, Vec<String>> = HashMap::new();
    for e in entries
        .iter()
        .filter(|e| e.action == "AUDIT_LOG_ACTION_UPDATE_EGRESS_PRIVATE_ENDPOINT")
    {
        let p: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        steps
            .entry(
                p["egress_private_endpoint_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
            .or_default()
            .push(p["driven_by"].as_str().unwrap().to_string());
    }
    let mut by_holder: HashMap<String, usize> = HashMap::new();
    for (_, e, accepted) in &endpoints {
        let s = steps
            .get(e)
            .unwrap_or_else(|| panic!("endpoint {e} was never driven"));
        assert_eq!(
            s.len(),
            1,
            "endpoint {e} was driven {} times: {s:?}",
            s.len()
        );
        *by_holder.entry(s[0].clone()).or_default() += 1;
        let w = a.endpoint_work(e).await.unwrap().unwrap();
        if *accepted {
            assert_eq!(
                w.endpoint.state, "PENDING",
                "accepted, waiting for a forwarder"
            );
            assert_eq!(w.connection.unwrap().status, "AVAILABLE");
        } else {
            assert_eq!(w.endpoint.state, "FAILED");
            assert!(
                w.endpoint.state_reason.contains("vpce-svc-absent"),
                "{}",
                w.endpoint.state_reason
            );
        }
    }
    eprintln!("steps per replica: {by_holder:?}");
    assert_eq!(by_holder.values().sum::<usize>(), N);
    a.close().await;
    b.close().await;
    common::drop_pg_database(&db).await;
}

/// A replica that dies holding a lease: another takes the work over once the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_taken_over() {
    let (url, db) = common::fresh_pg_database().await;
    let a = Store::open_postgres(&url).await.unwrap();
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    let c = a
        .create_cluster(&new_cluster("lease-take", "000000000001"), &audit)
        .await
        .unwrap();
    let ep = a
        .create_endpoint(
            &c.id,
            "us-east-1",
            "com.amazonaws.us-east-1.logs",
            "PRIVATE_SERVICE",
            &audit,
        )
        .await
        .unwrap();
    let short = perimeter_store::ts(chrono::Utc::now() + chrono::Duration::milliseconds(300));
    assert_eq!(
        a.claim_endpoints("dead-replica", &short, 10).await.unwrap(),
        vec![ep.id.clone()]
    );
    let live = reconciler(&a, "live-replica");
    live.pass().await.unwrap();
    assert_eq!(
        a.endpoint_work(&ep.id)
            .await
            .unwrap()
            .unwrap()
            .endpoint
            .state,
        "PENDING",
        "the lease still holds"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    live.pass().await.unwrap();
    assert_eq!(
        a.endpoint_work(&ep.id)
            .await
            .unwrap()
            .unwrap()
            .endpoint
            .state,
        "FAILED",
        "taken over after expiry"
    );
    a.close().await;
    common::drop_pg_database(&db).await;
}

/// Replicas starting together on an empty database: exactly one applies each migration, all
/// of them start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_migrate_once() {
    let (url, db) = common::fresh_pg_database().await;
    let (a, b, c) = tokio::join!(
        Store::open_postgres(&url),
        Store::open_postgres(&url),
        Store::open_postgres(&url)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert!(
        a.is_empty().await.unwrap() && b.is_empty().await.unwrap() && c.is_empty().await.unwrap()
    );
    for s in [a, b, c] {
        s.close().await;
    }
    common::drop_pg_database(&db).await;
}
