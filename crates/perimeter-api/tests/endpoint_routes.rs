//! The private endpoint routes through a real socket, written once and run by a table on every
//! store backend (SQLite, PostgreSQL) and every provider (`local`, and `aws` against moto with
//! PrivateLink's behaviour): the service side is the provider's own ([`common::side`]).

mod common;

use common::{TestServer, expect_invalid};
use reqwest::Method;
use serde_json::{Value, json};

/// Create, read, list, lock, domain names, delete, and the service side's view of it all.
async fn endpoints_and_services(s: &TestServer) {
    let c = s
        .create_cluster("ep-cluster", json!({"us-east-1": 3}))
        .await;
    let cluster = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}"), None)
        .await;
    let account = cluster["account_id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/clusters/{c}/networking/egress-private-endpoints");
    // Connections from the cluster's account are accepted at once.
    let svc = s.offer("example", true, Some(&account), false).await;
    let ep = s
        .ok(Method::POST, &base, Some(json!({"cluster_id": c, "region": "us-east-1", "target_service_identifier": svc.name, "target_service_type": "PRIVATE_SERVICE"})))
        .await;
    assert_eq!(ep["state"], "PENDING");
    assert_eq!(ep["endpoint_connection_id"], "");
    assert_eq!(ep["endpoint_address"], "");
    assert_eq!(ep["domain_names"], json!([]));
    assert_eq!(ep["domain_names_state"], "EMPTY");
    let id = ep["id"].as_str().unwrap().to_string();
    let path = format!("{base}/{id}");
    let got = s
        .wait_for(&path, 20, "the accepted endpoint", |v| {
            v["state"] == s.accepted_state() && v["endpoint_connection_id"] != ""
        })
        .await;
    let conn = got["endpoint_connection_id"].as_str().unwrap().to_string();
    assert!(conn.starts_with(s.connection_prefix()), "{got}");
    assert_ne!(got["endpoint_address"], "", "{got}");
    let conns = s.connections_of(&svc).await;
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0].endpoint_connection_id, conn);
    assert_eq!(conns[0].status, "AVAILABLE");
    let list = s.ok(Method::GET, &base, None).await;
    assert_eq!(
        list["egress_private_endpoints"].as_array().unwrap().len(),
        1
    );
    expect_invalid(
        s,
        Method::PATCH,
        &path,
        json!({"domain_names": ["*.com"]}),
        "domain_names[0]",
        "com",
    )
    .await;
    if s.accepted_state() == "PENDING" {
        // Held in PENDING (no forwarder), the endpoint holds the cluster lock; deleting it is
        // still allowed.
        let (st, v) = s
            .admin(
                Method::POST,
                &format!("/api/v1/clusters/{c}/networking/allowlist"),
                Some(json!({"cidr_ip": "10.0.0.0", "cidr_mask": 8, "sql": true, "ui": true})),
            )
            .await;
        assert_eq!(st, 409, "{v}");
        assert!(
            v["message"].as_str().unwrap().contains(&id),
            "the lock names the operation: {v}"
        );
    } else {
        // AVAILABLE: domain names are set, PENDING until the provider serves them.
        let names = json!(["*.us-east-1.aws.confluent.cloud", "kafka.example.com"]);
        let patched = s
            .ok(
                Method::PATCH,
                &path,
                Some(json!({"domain_names": names.clone()})),
            )
            .await;
        assert_eq!(patched["domain_names"], names);
        assert_eq!(patched["domain_names_state"], "PENDING");
        s.wait_for(&path, 20, "domain names served", |v| {
            v["domain_names_state"] == "AVAILABLE"
        })
        .await;
        // The twin route, deprecated, answers {}.
        assert_eq!(
            s.ok(
                Method::PATCH,
                &format!("{path}/domain-names"),
                Some(json!({"cluster_id": c, "endpoint_id": id, "domain_names": ["kafka.example.com"]})),
            )
            .await,
            json!({})
        );
        s.wait_for(&path, 20, "one name left", |v| {
            v["domain_names_state"] == "AVAILABLE"
                && v["domain_names"] == json!(["kafka.example.com"])
        })
        .await;
    }
    assert_eq!(
        s.withdraw(&svc).await,
        400,
        "a service in use is not withdrawn"
    );
    assert_eq!(s.ok(Method::DELETE, &path, None).await, json!({}));
    s.wait_for(&base, 20, "the endpoint to be gone", |v| {
        v["egress_private_endpoints"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    })
    .await;
    let conns = s.connections_of(&svc).await;
    assert!(
        conns.iter().all(|c| c.status == "DELETED"),
        "the connection ends with the endpoint: {conns:?}"
    );
    assert_eq!(s.withdraw(&svc).await, 200, "withdrawn once unused");
}

/// PENDING -> PENDING_ACCEPTANCE -> (accept) accepted; (reject) REJECTED; (time passes)
/// EXPIRED; an unknown service -> FAILED.
async fn endpoint_state_transitions(s: &TestServer) {
    let guarded = s.offer("guarded", true, None, false).await;
    let short = s.offer("short", true, None, true).await;
    let mut eps = Vec::new();
    for (i, target) in [
        guarded.name.clone(),
        guarded.name.clone(),
        short.name.clone(),
        "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let c = s
            .create_cluster(&format!("states-{i}x"), json!({"us-east-1": 1}))
            .await;
        let ep = s
            .ok(
                Method::POST,
                &format!("/api/v1/clusters/{c}/networking/egress-private-endpoints"),
                Some(json!({"region": "us-east-1", "target_service_identifier": target, "target_service_type": "PRIVATE_SERVICE"})),
            )
            .await;
        eps.push(format!(
            "/api/v1/clusters/{c}/networking/egress-private-endpoints/{}",
            ep["id"].as_str().unwrap()
        ));
    }
    let mut conn_ids = Vec::new();
    for p in &eps[..3] {
        let v = s
            .wait_for(p, 20, "PENDING_ACCEPTANCE", |v| {
                v["state"] == "PENDING_ACCEPTANCE"
            })
            .await;
        conn_ids.push(v["endpoint_connection_id"].as_str().unwrap().to_string());
    }
    let failed = s
        .wait_for(&eps[3], 20, "FAILED for an unknown service", |v| {
            v["state"] == "FAILED"
        })
        .await;
    assert_eq!(failed["endpoint_connection_id"], "", "{failed}");
    // PENDING_ACCEPTANCE does not hold the cluster lock.
    let c0 = eps[0].split('/').nth(4).unwrap();
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c0}/networking/allowlist"),
        Some(json!({"cidr_ip": "10.0.0.0", "cidr_mask": 8, "sql": true, "ui": true})),
    )
    .await;
    // Domain names wait for AVAILABLE.
    expect_invalid(
        s,
        Method::PATCH,
        &eps[0],
        json!({"domain_names": ["*.us-east-1.aws.confluent.cloud"]}),
        "domain_names",
        "AVAILABLE",
    )
    .await;
    let conns = s.connections_of(&guarded).await;
    assert_eq!(conns.len(), 2, "{conns:?}");
    let conn_of = |i: usize| {
        conns
            .iter()
            .find(|c| c.endpoint_connection_id == conn_ids[i])
            .unwrap_or_else(|| panic!("no connection {} in {conns:?}", conn_ids[i]))
            .id
            .clone()
    };
    let (a, r) = (conn_of(0), conn_of(1));
    assert!(conns.iter().all(|c| c.status == "PENDING_ACCEPTANCE"));
    assert_eq!(s.decide(&guarded, &a, true).await, "AVAILABLE");
    assert_eq!(s.decide(&guarded, &r, false).await, "REJECTED");
    assert!(
        s.decide_again_refused(&guarded, &r).await,
        "a decided connection cannot be decided again"
    );
    s.wait_for(&eps[0], 20, "accepted", |v| {
        v["state"] == s.accepted_state()
    })
    .await;
    s.wait_for(&eps[1], 20, "REJECTED", |v| v["state"] == "REJECTED")
        .await;
    s.expire(&conn_ids[2]).await;
    s.wait_for(&eps[2], 20, "EXPIRED", |v| v["state"] == "EXPIRED")
        .await;
    let sc = s.connections_of(&short).await;
    assert_eq!(sc[0].status, "EXPIRED", "{sc:?}");
}

/// The ingress side's private endpoint services, connections and trusted owners.
async fn ingress_private_endpoints(s: &TestServer) {
    let c = s
        .create_cluster("ingress-cl", json!({"us-east-1": 1, "eu-west-1": 1}))
        .await;
    let base = format!("/api/v1/clusters/{c}/networking");
    let (st, v) = s
        .admin(
            Method::POST,
            &format!("{base}/private-endpoint-connections"),
            Some(json!({"endpoint_id": "vpce-0a1b2c"})),
        )
        .await;
    assert_eq!(st, 400, "no service yet: {v}");
    let svcs = s
        .ok(
            Method::POST,
            &format!("{base}/private-endpoint-services"),
            None,
        )
        .await;
    assert_eq!(svcs["services"].as_array().unwrap().len(), 2);
    assert_eq!(svcs["services"][0]["status"], "CREATING");
    assert_eq!(svcs["services"][0]["cloud_provider"], "AWS");
    // Named in the provider's form: at once on local, once AWS created it on aws.
    let listed = s
        .wait_for(
            &format!("{base}/private-endpoint-services"),
            20,
            "the services' names",
            |v| {
                v["services"].as_array().is_some_and(|a| {
                    a.len() == 2
                        && a.iter().all(|svc| {
                            let region = svc["region_name"].as_str().unwrap_or_default();
                            svc["aws"]["service_name"]
                                .as_str()
                                .unwrap_or_default()
                                .starts_with(&format!("com.amazonaws.vpce.{region}.vpce-svc-"))
                        })
                })
            },
        )
        .await;
    assert!(
        listed["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|svc| svc["status"] == "CREATING"),
        "CREATING until a gateway serves it: {listed}"
    );
    let conn = s
        .ok(
            Method::POST,
            &format!("{base}/private-endpoint-connections"),
            Some(json!({"cluster_id": c, "endpoint_id": "vpce-0a1b2c"})),
        )
        .await;
    assert_eq!(conn["endpoint_id"], "vpce-0a1b2c");
    let conns = s
        .ok(
            Method::GET,
            &format!("{base}/private-endpoint-connections"),
            None,
        )
        .await;
    assert_eq!(conns["connections"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.ok(
            Method::DELETE,
            &format!("{base}/private-endpoint-connections/vpce-0a1b2c"),
            None
        )
        .await,
        json!({})
    );
    let o = s
        .ok(
            Method::POST,
            &format!("{base}/private-endpoint-trusted-owners"),
            Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": "123456789012"})),
        )
        .await;
    let oid = o["trusted_owner"]["id"].as_str().unwrap().to_string();
    assert_eq!(o["trusted_owner"]["cluster_id"], c.as_str());
    let (st, _) = s
        .admin(
            Method::POST,
            &format!("{base}/private-endpoint-trusted-owners"),
            Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": "123456789012"})),
        )
        .await;
    assert_eq!(st, 409);
    expect_invalid(
        s,
        Method::POST,
        &format!("{base}/private-endpoint-trusted-owners"),
        json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": "12"}),
        "external_owner_id",
        "12-digit",
    )
    .await;
    let all = s
        .ok(
            Method::GET,
            &format!("{base}/private-endpoint-trusted-owners"),
            None,
        )
        .await;
    assert_eq!(all["trusted_owners"].as_array().unwrap().len(), 1);
    let one = s
        .ok(
            Method::GET,
            &format!("{base}/private-endpoint-trusted-owners/{oid}"),
            None,
        )
        .await;
    assert_eq!(one["trusted_owner"]["external_owner_id"], "123456789012");
    let gone = s
        .ok(
            Method::DELETE,
            &format!("{base}/private-endpoint-trusted-owners/{oid}"),
            None,
        )
        .await;
    assert_eq!(gone["trusted_owner"]["id"], oid.as_str());
}

/// Endpoint targets are checked before any provider sees them: the region inside the
/// identifier must be `region`, and `region` the cluster's. A region that holds an endpoint
/// cannot be removed.
async fn endpoint_validation(s: &TestServer) {
    let c = s
        .create_cluster("valid-cluster", json!({"us-east-1": 3, "us-west-2": 1}))
        .await;
    let eps = format!("/api/v1/clusters/{c}/networking/egress-private-endpoints");
    expect_invalid(s, Method::POST, &eps, json!({"region": "us-east-1", "target_service_identifier": "com.amazonaws.vpce.us-west-2.vpce-svc-example", "target_service_type": "PRIVATE_SERVICE"}), "region", "us-west-2").await;
    expect_invalid(s, Method::POST, &eps, json!({"region": "us-east-1", "target_service_identifier": "projects/p/regions/us-east1/serviceAttachments/s", "target_service_type": "PRIVATE_SERVICE"}), "target_service_identifier", "").await;
    expect_invalid(s, Method::POST, &eps, json!({"region": "us-east-1", "target_service_identifier": "com.amazonaws.vpce.us-east-1.vpce-svc-x", "target_service_type": "TELEPATHY"}), "target_service_type", "PRIVATE_SERVICE").await;
    expect_invalid(s, Method::POST, &eps, json!({"region": "eu-west-1", "target_service_identifier": "com.amazonaws.vpce.eu-west-1.vpce-svc-x", "target_service_type": "PRIVATE_SERVICE"}), "region", "has no region").await;
    // Removing a region that holds an endpoint.
    let ep = s.ok(Method::POST, &eps, Some(json!({"region": "us-west-2", "target_service_identifier": "com.amazonaws.us-west-2.logs", "target_service_type": "PRIVATE_SERVICE"}))).await;
    let ep_id = ep["id"].as_str().unwrap().to_string();
    s.wait_for(
        &format!("{eps}/{ep_id}"),
        10,
        "FAILED (no such service)",
        |v| v["state"] == "FAILED",
    )
    .await;
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("/api/v1/clusters/{c}"),
            Some(json!({"dedicated": {"region_nodes": {"us-east-1": 3}}})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains(&ep_id),
        "names the endpoint: {v}"
    );
}

/// Concurrent changes of one cluster: exactly one takes the lock; the others get 409 "lock".
async fn lock_conflict(s: &TestServer) {
    let c = s
        .create_cluster("lock-cluster", json!({"us-east-1": 1}))
        .await;
    let path = format!("/api/v1/clusters/{c}/networking/egress-private-endpoints");
    // The winning endpoint stays PENDING, holding the lock for the whole race.
    let target = s.hold_pending().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = s.http.clone();
        let url = s.url(&path);
        let key = s.admin.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"region": "us-east-1", "target_service_identifier": target, "target_service_type": "PRIVATE_SERVICE"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let (st, v) = t.await.unwrap();
        match st {
            200 => ok += 1,
            409 => {
                assert_eq!(v["code"], 10, "{v}");
                assert!(v["message"].as_str().unwrap().contains("lock"), "{v}");
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(ok, 1, "exactly one concurrent create wins the lock");
    s.release_pending();
    // Deleting it ends the operation and frees the cluster.
    let list = s.ok(Method::GET, &path, None).await;
    let ep = list["egress_private_endpoints"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(Method::DELETE, &format!("{path}/{ep}"), None).await;
    s.wait_for(&path, 10, "the endpoint to be gone", |v| {
        v["egress_private_endpoints"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    })
    .await;
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c}/networking/allowlist"),
        Some(json!({"cidr_ip": "10.0.0.0", "cidr_mask": 8, "sql": true, "ui": true})),
    )
    .await;
    // Concurrent traffic-policy changes: one wins.
    let p = format!("/api/v1/clusters/{c}/networking/egress-rules/egress-traffic-policy");
    let (a, b) = tokio::join!(
        s.admin(Method::POST, &p, Some(json!({"allow_all": false}))),
        s.admin(
            Method::POST,
            &p,
            Some(json!({"allow_all": false, "report_only": true}))
        )
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
}

on_every_backend_and_provider!(
    endpoints_and_services,
    endpoint_state_transitions,
    ingress_private_endpoints,
    endpoint_validation,
    lock_conflict,
);
