//! The endpoint steps of the reconciler, on a real (SQLite) store, with the clock given: what
//! the gateways acknowledged decides `AVAILABLE`, and the provisioning deadline `FAILED`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use perimeter_store::{AuditEntry, Durability, NewCluster, NewEndpointService, Store};

use super::*;

const HOLDER: &str = "test-reconciler";
const SERVICE: &str = "com.amazonaws.vpce.us-east-1.vpce-svc-reconciled";

/// A DEFAULT_DENY AWS cluster of one node per region.
async fn new_cluster(store: &Store, name: &str, regions: &[&str]) -> perimeter_store::Cluster {
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    store
        .create_cluster(
            &NewCluster {
                account_id: "210987654321".into(),
                regions: regions.iter().map(|r| (r.to_string(), 1)).collect(),
                ..NewCluster::example(name)
            },
            &audit,
        )
        .await
        .unwrap()
}

struct Fixture {
    store: Store,
    cfg: ReconcilerConfig,
    cluster: String,
    endpoint: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path(), Durability::Normal)
        .await
        .unwrap();
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    let cluster = new_cluster(&store, "reconciled", &["us-east-1", "eu-west-1"]).await;
    store
        .create_endpoint_service(
            &NewEndpointService {
                service_name: SERVICE.into(),
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
    let ep = store
        .create_endpoint(&cluster.id, "us-east-1", SERVICE, "PRIVATE_SERVICE", &audit)
        .await
        .unwrap();
    let cfg = ReconcilerConfig {
        holder: HOLDER.into(),
        provision_timeout: Duration::from_secs(120),
        ..Default::default()
    };
    Fixture {
        store,
        cfg,
        cluster: cluster.id,
        endpoint: ep.id,
        _dir: dir,
    }
}

impl Fixture {
    /// One step on the endpoint as of `now` (claiming it first, as a pass does).
    async fn step(&self, now: DateTime<Utc>) -> Action {
        let until = perimeter_store::ts(now + chrono::Duration::seconds(30));
        self.store
            .claim_endpoints(HOLDER, &until, 10)
            .await
            .unwrap();
        let work = self
            .store
            .endpoint_work(&self.endpoint)
            .await
            .unwrap()
            .unwrap();
        let action = reconcile_endpoint(&self.store, &self.cfg, &work, now)
            .await
            .unwrap();
        self.store
            .release_endpoint(HOLDER, &self.endpoint)
            .await
            .unwrap();
        action
    }

    async fn endpoint(&self) -> perimeter_store::EgressEndpoint {
        self.store
            .get_endpoint(&self.cluster, &self.endpoint)
            .await
            .unwrap()
    }

    async fn gateway(&self, region: &str, name: &str) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.store
            .create_gateway(&self.cluster, region, name, &id, "", None)
            .await
            .unwrap();
        id
    }
}

#[tokio::test]
async fn available_once_every_live_gateway_of_its_region_applied() {
    let f = fixture().await;
    let east_a = f.gateway("us-east-1", "east-a").await;
    let east_b = f.gateway("us-east-1", "east-b").await;
    let west = f.gateway("eu-west-1", "west").await;
    // Accepted (no acceptance required): in the snapshot from its routed version on.
    f.step(Utc::now()).await;
    let ep = f.endpoint().await;
    assert_eq!(ep.state, "PENDING");
    let v = ep.routed_version;
    assert!(v > 0);
    assert!(!ep.endpoint_address.is_empty());
    // One gateway of the region applied it, the other an older version: still PENDING. The
    // other region's gateway does not count either way.
    f.store.ack_gateway(&east_a, v, true, "").await.unwrap();
    f.store.ack_gateway(&east_b, v - 1, true, "").await.unwrap();
    f.store.ack_gateway(&west, 0, true, "").await.unwrap();
    let action = f.step(Utc::now()).await;
    assert!(matches!(action, Action::Requeue(_)), "{action:?}");
    assert_eq!(f.endpoint().await.state, "PENDING");
    f.store.ack_gateway(&east_b, v, true, "").await.unwrap();
    f.step(Utc::now()).await;
    let ep = f.endpoint().await;
    assert_eq!(ep.state, "AVAILABLE");
    assert!(
        ep.state_reason.contains("east-a") && ep.state_reason.contains("east-b"),
        "{}",
        ep.state_reason
    );
}

#[tokio::test]
async fn no_live_gateway_fails_at_the_deadline_not_before() {
    let f = fixture().await;
    let t0 = Utc::now();
    f.step(t0).await;
    assert_eq!(f.endpoint().await.state, "PENDING");
    let action = f.step(t0 + chrono::Duration::seconds(100)).await;
    assert!(
        matches!(action, Action::Requeue(d) if d <= f.cfg.interval),
        "{action:?}"
    );
    assert_eq!(f.endpoint().await.state, "PENDING");
    f.step(t0 + chrono::Duration::seconds(125)).await;
    let ep = f.endpoint().await;
    assert_eq!(ep.state, "FAILED");
    assert!(
        ep.state_reason
            .contains("no live gateway in region us-east-1"),
        "{}",
        ep.state_reason
    );
}

#[tokio::test]
async fn a_gateway_that_cannot_apply_it_fails_it_with_its_error() {
    let f = fixture().await;
    let east = f.gateway("us-east-1", "east").await;
    f.step(Utc::now()).await;
    let v = f.endpoint().await.routed_version;
    f.store
        .ack_gateway(&east, v, false, "backends[0]: no such host")
        .await
        .unwrap();
    f.step(Utc::now()).await;
    let ep = f.endpoint().await;
    assert_eq!(ep.state, "FAILED");
    assert!(
        ep.state_reason.contains("east") && ep.state_reason.contains("no such host"),
        "{}",
        ep.state_reason
    );
}

#[tokio::test]
async fn deletion_waits_for_the_region_to_apply_it() {
    let f = fixture().await;
    let east = f.gateway("us-east-1", "east").await;
    f.step(Utc::now()).await;
    let v = f.endpoint().await.routed_version;
    f.store.ack_gateway(&east, v, true, "").await.unwrap();
    f.step(Utc::now()).await;
    assert_eq!(f.endpoint().await.state, "AVAILABLE");
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    let deleting = f
        .store
        .delete_endpoint(&f.cluster, &f.endpoint, &audit)
        .await
        .unwrap();
    assert_eq!(deleting.state, "DELETING");
    f.step(Utc::now()).await;
    assert_eq!(
        f.endpoint().await.state,
        "DELETING",
        "the gateway still serves it"
    );
    f.store
        .ack_gateway(&east, deleting.routed_version, true, "")
        .await
        .unwrap();
    f.step(Utc::now()).await;
    assert!(
        f.store.get_endpoint(&f.cluster, &f.endpoint).await.is_err(),
        "gone once the region applied the snapshot without it"
    );
}

/// Change the cluster's network visibility to PRIVATE; the cluster as it then reads.
async fn make_private(store: &Store, cluster: &str) -> perimeter_store::Cluster {
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    store
        .update_cluster(
            cluster,
            &perimeter_store::ClusterUpdate {
                network_visibility: Some("PRIVATE".into()),
                ..Default::default()
            },
            &audit,
        )
        .await
        .unwrap()
}

/// A cluster of one region with two gateways there, for the ingress states.
async fn ingress_fixture() -> (
    Store,
    ReconcilerConfig,
    String,
    [String; 2],
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path(), Durability::Normal)
        .await
        .unwrap();
    let cluster = new_cluster(&store, "ingress", &["us-east-1"]).await;
    let mut gateways = [String::new(), String::new()];
    for (i, g) in gateways.iter_mut().enumerate() {
        *g = uuid::Uuid::new_v4().to_string();
        store
            .create_gateway(&cluster.id, "us-east-1", &format!("gw-{i}"), g, "", None)
            .await
            .unwrap();
    }
    let cfg = ReconcilerConfig {
        holder: HOLDER.into(),
        ..Default::default()
    };
    (store, cfg, cluster.id, gateways, dir)
}

#[tokio::test]
async fn a_private_endpoint_service_is_available_once_every_gateway_serves_it() {
    let (store, cfg, cluster, [a, b], _dir) = ingress_fixture().await;
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    let svc = store
        .create_ingress_services(&cluster, &audit)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(svc.status, "CREATING");
    let v = svc.routed_version;
    let status = || async {
        store.list_ingress_services(&cluster).await.unwrap()[0]
            .status
            .clone()
    };
    // Both applied it, but no gateway reports a private ingress listener: not served.
    store.ack_gateway(&a, v, true, "").await.unwrap();
    store.ack_gateway(&b, v, true, "").await.unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert_eq!(status().await, "CREATING");
    // One reports its listener; the other does not yet.
    assert!(
        store
            .report_private_ingress(&a, "127.0.0.1:4001")
            .await
            .unwrap()
    );
    assert!(
        !store
            .report_private_ingress(&a, "127.0.0.1:4001")
            .await
            .unwrap()
    );
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert_eq!(status().await, "CREATING");
    store
        .report_private_ingress(&b, "127.0.0.1:4002")
        .await
        .unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert_eq!(status().await, "AVAILABLE");
    // A gateway that stopped being live no longer holds it back, nor counts: with none live,
    // nothing is observed at all.
    let later = Utc::now() + chrono::Duration::hours(1);
    settle_cluster(&store, &cluster, &cfg, later).await.unwrap();
    assert_eq!(status().await, "AVAILABLE");
}

#[tokio::test]
async fn connections_are_available_when_admitted_everywhere_and_rejected_by_owners() {
    let (store, cfg, cluster, [a, b], _dir) = ingress_fixture().await;
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    store
        .create_ingress_services(&cluster, &audit)
        .await
        .unwrap();
    let c = store
        .add_ingress_connection(&cluster, "vpce-0a1b2c3d4e5f67890", &audit)
        .await
        .unwrap();
    assert_eq!(c.status, "STATUS_PENDING");
    assert!(c.admitted_version > 0);
    let status = || async {
        store.list_ingress_connections(&cluster).await.unwrap()[0]
            .status
            .clone()
    };
    // In the snapshot from its admitted version.
    let inputs = store.policy_inputs(&cluster).await.unwrap();
    assert_eq!(inputs.private_connections, vec!["vpce-0a1b2c3d4e5f67890"]);
    store
        .ack_gateway(&a, c.admitted_version, true, "")
        .await
        .unwrap();
    store
        .ack_gateway(&b, c.admitted_version - 1, true, "")
        .await
        .unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        status().await,
        "STATUS_PENDING",
        "one gateway has not applied it"
    );
    store
        .ack_gateway(&b, c.admitted_version, true, "")
        .await
        .unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert_eq!(status().await, "STATUS_AVAILABLE");
    // Trusted owners that do not name its (unknown) owner reject it, and it leaves the snapshot.
    let owner = store
        .add_trusted_owner(&cluster, "AWS_ACCOUNT_ID", "123456789012", &audit)
        .await
        .unwrap();
    assert_eq!(status().await, "STATUS_REJECTED");
    let inputs = store.policy_inputs(&cluster).await.unwrap();
    assert!(inputs.private_connections.is_empty());
    // `*` trusts every owner again: admitted at a new version, pending until applied.
    store
        .add_trusted_owner(&cluster, "AWS_ACCOUNT_ID", "*", &audit)
        .await
        .unwrap();
    assert_eq!(status().await, "STATUS_PENDING");
    store
        .remove_trusted_owner(&cluster, &owner.id, &audit)
        .await
        .unwrap();
    assert_eq!(status().await, "STATUS_PENDING");
}

#[tokio::test]
async fn a_visibility_change_holds_the_lock_until_every_gateway_applied_it() {
    let (store, cfg, cluster, [a, b], _dir) = ingress_fixture().await;
    let audit = AuditEntry::api("AUDIT_LOG_ACTION_TEST", "test", "{}".into());
    let c = make_private(&store, &cluster).await;
    assert!(c.visibility_changing);
    assert_eq!(c.network_visibility, "PRIVATE");
    // Locked: another networking change is refused meanwhile.
    let e = store.create_ingress_services(&cluster, &audit).await;
    assert!(matches!(e, Err(StoreError::Locked(_))), "{e:?}");
    // Both gateways live; one applied it, the other an older version.
    store
        .ack_gateway(&a, c.visibility_version, true, "")
        .await
        .unwrap();
    store
        .ack_gateway(&b, c.visibility_version - 1, true, "")
        .await
        .unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert!(
        store
            .get_cluster(&cluster)
            .await
            .unwrap()
            .visibility_changing
    );
    store
        .ack_gateway(&b, c.visibility_version, true, "")
        .await
        .unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert!(
        !store
            .get_cluster(&cluster)
            .await
            .unwrap()
            .visibility_changing
    );
    // The same visibility again is no change: nothing to wait for.
    let c = make_private(&store, &cluster).await;
    assert!(!c.visibility_changing);
}

#[tokio::test]
async fn a_visibility_change_no_gateway_applies_lets_go_of_the_lock_at_the_deadline() {
    let (store, cfg, cluster, [a, _b], _dir) = ingress_fixture().await;
    let c = make_private(&store, &cluster).await;
    // One live gateway that has not applied it: locked until the deadline, not after.
    store
        .ack_gateway(&a, c.visibility_version - 1, true, "")
        .await
        .unwrap();
    settle_cluster(&store, &cluster, &cfg, Utc::now())
        .await
        .unwrap();
    assert!(
        store
            .get_cluster(&cluster)
            .await
            .unwrap()
            .visibility_changing
    );
    let late = Utc::now() + chrono::Duration::from_std(cfg.propagation_deadline).unwrap()
        - chrono::Duration::seconds(1);
    settle_cluster(&store, &cluster, &cfg, late).await.unwrap();
    assert!(
        store
            .get_cluster(&cluster)
            .await
            .unwrap()
            .visibility_changing
    );
    // Past it (the gateway no longer live either): released.
    let past = Utc::now() + chrono::Duration::hours(1);
    settle_cluster(&store, &cluster, &cfg, past).await.unwrap();
    let after = store.get_cluster(&cluster).await.unwrap();
    assert!(!after.visibility_changing);
    assert_eq!(after.network_visibility, "PRIVATE");
}

#[tokio::test]
async fn settling_asks_to_be_woken_at_the_nearest_deadline_and_not_otherwise() {
    let (store, cfg, cluster, [a, _b], _dir) = ingress_fixture().await;
    store.ack_gateway(&a, 1, true, "").await.unwrap();
    // Nothing pending: nothing for the clock to move.
    let now = Utc::now();
    assert_eq!(
        settle_cluster(&store, &cluster, &cfg, now).await.unwrap(),
        Action::Await
    );
    let c = make_private(&store, &cluster).await;
    store
        .ack_gateway(&a, c.visibility_version - 1, true, "")
        .await
        .unwrap();
    let now = Utc::now();
    match settle_cluster(&store, &cluster, &cfg, now).await.unwrap() {
        Action::Requeue(d) => assert!(
            d <= cfg.propagation_deadline && d + Duration::from_secs(5) > cfg.propagation_deadline,
            "{d:?}"
        ),
        Action::Await => panic!("a pending visibility change has a deadline"),
    }
}

/// The loop itself on a [`ManualClock`]: it sleeps until the nearest deadline (never past it),
/// wakes only when time reaches it, and releases the lock of a visibility change that a live
/// gateway never applied at the propagation deadline, not a moment before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_wakes_at_the_deadline_on_its_clock_and_not_before() {
    let (store, cfg, cluster, [a, _b], _dir) = ingress_fixture().await;
    let cfg = ReconcilerConfig {
        // Long enough that the gateway stays live however far the clock moves here, and an
        // interval longer than the deadline: only the deadline can wake the loop.
        gateway_liveness: Duration::from_secs(24 * 3600),
        interval: Duration::from_secs(3600),
        ..cfg
    };
    let c = make_private(&store, &cluster).await;
    store
        .ack_gateway(&a, c.visibility_version - 1, true, "")
        .await
        .unwrap();
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let reconciler = Reconciler::new(store.clone(), Arc::new(Notify::new()), cfg.clone())
        .with_clock(Arc::new(clock.clone()));
    let task = tokio::spawn(reconciler.run(async {
        let _ = stopped.await;
    }));
    let wait_pass = |n: u64| {
        let clock = clock.clone();
        async move {
            for _ in 0..500 {
                if clock.sleeps() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("the loop did not finish pass {n} in 5 s");
        }
    };
    wait_pass(1).await;
    let deadline = clock.next_wake().expect("a planned wake");
    let budget = chrono::Duration::from_std(cfg.propagation_deadline).unwrap();
    assert!(
        deadline <= start + budget && deadline > start + budget - chrono::Duration::seconds(5),
        "the loop sleeps until the propagation deadline: {deadline} (start {start})"
    );
    let locked = || async {
        store
            .get_cluster(&cluster)
            .await
            .unwrap()
            .visibility_changing
    };
    assert!(locked().await);

    // Just short of the deadline nothing wakes the loop: no pass, still locked.
    clock.advance((deadline - start).to_std().unwrap() - Duration::from_millis(1));
    tokio::task::yield_now().await;
    assert_eq!(clock.sleeps(), 1, "the loop woke before its deadline");
    assert!(locked().await);

    // At the deadline it wakes, passes once, and lets go of the lock.
    clock.advance(Duration::from_millis(1));
    wait_pass(2).await;
    assert!(!locked().await, "released at the deadline");
    assert_eq!(
        store
            .get_cluster(&cluster)
            .await
            .unwrap()
            .network_visibility,
        "PRIVATE"
    );
    // Nothing left to wait for: the next sleep is the plain interval.
    assert_eq!(
        clock.next_wake(),
        Some(clock.now() + chrono::Duration::from_std(cfg.interval).unwrap())
    );
    let _ = stop.send(());
    task.await.unwrap();
}
