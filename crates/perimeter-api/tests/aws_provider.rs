//! The `aws` provider against moto with PrivateLink's behaviour (`moto_privatelink.py`), on
//! SQLite and on PostgreSQL: every AWS endpoint state mapped, the seed docs' own examples,
//! domain names as Route 53 records, deletions followed to the end, a crash between an AWS
//! call and the store write, throttling answered with backoff, and the ingress side's endpoint
//! service with acceptance driven by registrations.

mod common;

use std::time::Duration;

use common::{Backend, Provider, TestServer, register, sync_with};
use perimeter_aws::egress::NewEndpoint;
use reqwest::Method;
use serde_json::{Value, json};

/// The cluster's audit entries that mention `id`, oldest first.
async fn audit_of(s: &TestServer, id: &str) -> Vec<Value> {
    let v = s
        .ok(Method::GET, "/api/v1/auditlogevents?limit=1000", None)
        .await;
    let mut entries: Vec<Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains(id))
        .cloned()
        .collect();
    entries.sort_by_key(|e| e["created_at"].as_str().unwrap_or_default().to_string());
    entries
}

/// The states an endpoint's audit trail moved it through.
async fn trail(s: &TestServer, id: &str) -> Vec<String> {
    audit_of(s, id)
        .await
        .iter()
        .filter_map(|e| {
            let p: Value = serde_json::from_str(e["payload"].as_str()?).ok()?;
            p["to"].as_str().map(str::to_string)
        })
        .collect()
}

/// The interface endpoints moto has for our endpoint `id` (its `perimeter:endpoint` tag),
/// with their states: `[[vpce, state]]`.
fn vpc_endpoints_of(s: &TestServer, id: &str) -> Value {
    s.boto3(&format!(
        r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
eps = ec2.describe_vpc_endpoints(Filters=[{{"Name": "tag:perimeter:endpoint", "Values": ["{id}"]}}])["VpcEndpoints"]
print(json.dumps([[e["VpcEndpointId"], e["State"]] for e in eps]))
"#
    ))
}

async fn create_endpoint(s: &TestServer, c: &str, target: &str, kind: &str) -> String {
    let v = s
        .ok(
            Method::POST,
            &format!("/api/v1/clusters/{c}/networking/egress-private-endpoints"),
            Some(json!({"region": "us-east-1", "target_service_identifier": target, "target_service_type": kind})),
        )
        .await;
    format!(
        "/api/v1/clusters/{c}/networking/egress-private-endpoints/{}",
        v["id"].as_str().unwrap()
    )
}

fn id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

/// The seed docs' examples: CloudWatch logs and a VPC endpoint service go AVAILABLE, an MSK
/// ARN FAILED with the documented reason; AWS's own error for a service that does not exist.
async fn seed_examples(s: &TestServer) {
    let c = s
        .create_cluster("seed-examples", json!({"us-east-1": 3}))
        .await;
    // One at a time: a PENDING endpoint holds the cluster lock.
    let svc = s.offer("seed", false, None, false).await;
    for target in ["com.amazonaws.us-east-1.logs", svc.name.as_str()] {
        let p = create_endpoint(s, &c, target, "PRIVATE_SERVICE").await;
        let v = s
            .wait_for(&p, 20, "AVAILABLE", |v| v["state"] == "AVAILABLE")
            .await;
        let vpce = v["endpoint_connection_id"].as_str().unwrap();
        assert!(vpce.starts_with("vpce-"), "{v}");
        let eps = vpc_endpoints_of(s, id_of(&p));
        assert_eq!(eps, json!([[vpce, "available"]]), "exactly one, and ours");
        let address = v["endpoint_address"].as_str().unwrap();
        assert!(address.starts_with(vpce), "its first DNS name: {v}");
    }
    let msk = create_endpoint(
        s,
        &c,
        "arn:aws:kafka:us-east-1:123456789012:cluster/example/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d-1",
        "MSK_SASL_IAM",
    )
    .await;
    let v = s
        .wait_for(&msk, 20, "FAILED", |v| v["state"] == "FAILED")
        .await;
    assert_eq!(v["endpoint_connection_id"], "");
    let reason = audit_of(s, id_of(&msk)).await;
    assert!(
        reason
            .iter()
            .any(|e| e.to_string().contains("CreateVpcConnection")),
        "the documented reason is in the audit log: {reason:?}"
    );
    // A region the provider is not configured for: FAILED with the reason, and deleting it
    // does not hold the cluster's lock.
    let c2 = s
        .create_cluster("seed-unconfigured", json!({"us-west-2": 1}))
        .await;
    let p = format!("/api/v1/clusters/{c2}/networking/egress-private-endpoints");
    let v = s
        .ok(Method::POST, &p, Some(json!({"region": "us-west-2", "target_service_identifier": "com.amazonaws.us-west-2.logs", "target_service_type": "PRIVATE_SERVICE"})))
        .await;
    let p = format!("{p}/{}", v["id"].as_str().unwrap());
    s.wait_for(&p, 20, "FAILED", |v| v["state"] == "FAILED")
        .await;
    assert!(
        audit_of(s, id_of(&p))
            .await
            .iter()
            .any(|e| e.to_string().contains("not in the provider configuration")),
        "the reason names the configuration"
    );
    s.ok(Method::DELETE, &p, None).await;
    let (st, v) = loop_until_gone(s, &p).await;
    assert_eq!(st, 404, "{v}");
    // A name AWS does not know: AWS's code and message, in the state and the audit log.
    let unknown = create_endpoint(
        s,
        &c,
        "com.amazonaws.vpce.us-east-1.vpce-svc-0000000000000000f",
        "PRIVATE_SERVICE",
    )
    .await;
    s.wait_for(&unknown, 20, "FAILED", |v| v["state"] == "FAILED")
        .await;
    let entries = audit_of(s, id_of(&unknown)).await;
    assert!(
        entries.iter().any(|e| {
            let t = e.to_string();
            t.contains("InvalidServiceName") && t.contains("CreateVpcEndpoint")
        }),
        "{entries:?}"
    );
}

/// Every AWS state onto ours: pendingAcceptance, pending, available, rejected, expired, failed,
/// deleting, deleted (gone); acceptance driven through the service side.
async fn every_state(s: &TestServer) {
    let svc = s.offer("states", true, None, false).await;
    let mut eps = Vec::new();
    for i in 0..5 {
        let c = s
            .create_cluster(&format!("aws-states-{i}"), json!({"us-east-1": 1}))
            .await;
        eps.push(create_endpoint(s, &c, &svc.name, "PRIVATE_SERVICE").await);
    }
    let mut vpce = Vec::new();
    for p in &eps {
        let v = s
            .wait_for(p, 20, "PENDING_ACCEPTANCE", |v| {
                v["state"] == "PENDING_ACCEPTANCE"
            })
            .await;
        vpce.push(v["endpoint_connection_id"].as_str().unwrap().to_string());
    }
    let moto = &s.aws.as_ref().unwrap().moto;
    // pending (accepted, provisioning) -> PENDING, then available -> AVAILABLE.
    moto.control(
        "vpc-endpoint-state",
        &json!({"VpcEndpointId": vpce[0], "State": "pending"}),
    );
    s.wait_for(&eps[0], 20, "AVAILABLE", |v| v["state"] == "AVAILABLE")
        .await;
    let t = trail(s, id_of(&eps[0])).await;
    assert!(
        t.ends_with(&[
            "PENDING_ACCEPTANCE".into(),
            "PENDING".into(),
            "AVAILABLE".into()
        ]),
        "{t:?}"
    );
    // Rejected by the owner.
    assert_eq!(s.decide(&svc, &vpce[1], false).await, "REJECTED");
    s.wait_for(&eps[1], 20, "REJECTED", |v| v["state"] == "REJECTED")
        .await;
    // Expired and failed, on AWS's clock.
    moto.control(
        "vpc-endpoint-state",
        &json!({"VpcEndpointId": vpce[2], "State": "expired"}),
    );
    s.wait_for(&eps[2], 20, "EXPIRED", |v| v["state"] == "EXPIRED")
        .await;
    moto.control(
        "vpc-endpoint-state",
        &json!({"VpcEndpointId": vpce[3], "State": "failed", "FailureReason": "subnet out of addresses"}),
    );
    s.wait_for(&eps[3], 20, "FAILED", |v| v["state"] == "FAILED")
        .await;
    assert!(
        audit_of(s, id_of(&eps[3]))
            .await
            .iter()
            .any(|e| e.to_string().contains("subnet out of addresses")),
        "AWS's reason is in the audit log"
    );
    // deleting (at AWS) -> DELETING, deleted -> gone.
    moto.control(
        "vpc-endpoint-state",
        &json!({"VpcEndpointId": vpce[4], "State": "deleting"}),
    );
    let (st, _) = loop_until_gone(s, &eps[4]).await;
    assert_eq!(st, 404);
    assert!(
        trail(s, id_of(&eps[4]))
            .await
            .ends_with(&["DELETING".into(), "GONE".into()]),
        "{:?}",
        trail(s, id_of(&eps[4])).await
    );
    // The owner rejects the available connection later: described again, it shows.
    assert_eq!(s.decide(&svc, &vpce[0], false).await, "REJECTED");
    s.wait_for(&eps[0], 20, "REJECTED after AVAILABLE", |v| {
        v["state"] == "REJECTED"
    })
    .await;
    // A user's delete, followed to the end at AWS.
    assert_eq!(s.ok(Method::DELETE, &eps[0], None).await, json!({}));
    let (st, _) = loop_until_gone(s, &eps[0]).await;
    assert_eq!(st, 404);
    assert_eq!(
        vpc_endpoints_of(s, id_of(&eps[0])),
        json!([]),
        "gone at AWS"
    );
    let deletes = moto
        .requests()
        .iter()
        .filter(|r| r["action"] == "DeleteVpcEndpoints")
        .count();
    assert!(deletes >= 1, "DeleteVpcEndpoints was called");
}

/// Poll what AWS shows until `cond` holds, or fail after 20 s naming `what`.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 20 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GET `path` until it answers 404 (bounded).
async fn loop_until_gone(s: &TestServer, path: &str) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (st, v) = s.admin(Method::GET, path, None).await;
        if st == 404 || tokio::time::Instant::now() > deadline {
            return (st, v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// PATCH an endpoint's domain names and wait until they are AVAILABLE.
async fn set_names(s: &TestServer, ep: &str, names: Value) {
    s.ok(Method::PATCH, ep, Some(json!({"domain_names": names})))
        .await;
    s.wait_for(ep, 20, "domain names AVAILABLE", |v| {
        v["domain_names_state"] == "AVAILABLE"
    })
    .await;
}

/// Domain names as Route 53 records in private hosted zones of the platform VPC: added,
/// removed (with the zone once empty), refused for a second cluster, gone with the endpoint.
async fn domain_names(s: &TestServer) {
    let aws = s.aws.as_ref().unwrap();
    let c = s.create_cluster("dns-names", json!({"us-east-1": 1})).await;
    let svc = s.offer("dns", false, None, false).await;
    let ep = create_endpoint(s, &c, &svc.name, "PRIVATE_SERVICE").await;
    let v = s
        .wait_for(&ep, 20, "AVAILABLE", |v| v["state"] == "AVAILABLE")
        .await;
    let address = v["endpoint_address"].as_str().unwrap().to_string();
    set_names(
        s,
        &ep,
        json!(["*.us-east-1.aws.confluent.cloud", "kafka.example.com"]),
    )
    .await;
    let wild = aws
        .provider
        .zone_records("us-east-1", &c, "us-east-1.aws.confluent.cloud")
        .await
        .unwrap()
        .expect("the wildcard's zone");
    assert!(
        wild.contains(&(
            "*.us-east-1.aws.confluent.cloud.".into(),
            "CNAME".into(),
            address.clone()
        )),
        "{wild:?}"
    );
    let apex = aws
        .provider
        .zone_records("us-east-1", &c, "kafka.example.com")
        .await
        .unwrap()
        .expect("the apex name's zone");
    assert!(
        apex.contains(&("kafka.example.com.".into(), "A".into(), address.clone())),
        "an alias A record at the apex: {apex:?}"
    );
    // Another cluster cannot claim a zone of this one in the same VPC.
    let c2 = s
        .create_cluster("dns-names-2", json!({"us-east-1": 1}))
        .await;
    let ep2 = create_endpoint(s, &c2, &svc.name, "PRIVATE_SERVICE").await;
    s.wait_for(&ep2, 20, "AVAILABLE", |v| v["state"] == "AVAILABLE")
        .await;
    s.ok(
        Method::PATCH,
        &ep2,
        Some(json!({"domain_names": ["kafka.example.com"]})),
    )
    .await;
    s.wait_for(&ep2, 20, "FAILED", |v| v["domain_names_state"] == "FAILED")
        .await;
    let entries = audit_of(s, id_of(&ep2)).await;
    assert!(
        entries
            .iter()
            .any(|e| e.to_string().contains(&format!("belongs to cluster {c}"))),
        "the reason names the owner: {entries:?}"
    );
    // Removing a name removes its record, and its zone once empty.
    set_names(s, &ep, json!(["kafka.example.com"])).await;
    assert!(
        aws.provider
            .zone_records("us-east-1", &c, "us-east-1.aws.confluent.cloud")
            .await
            .unwrap()
            .is_none(),
        "the empty zone is deleted"
    );
    // No names at all: the last records and zone go, and the state reads EMPTY once they have.
    let cleared = s
        .ok(Method::PATCH, &ep, Some(json!({"domain_names": []})))
        .await;
    assert_eq!(cleared["domain_names_state"], "PENDING", "{cleared}");
    s.wait_for(&ep, 20, "EMPTY", |v| v["domain_names_state"] == "EMPTY")
        .await;
    assert!(
        aws.provider
            .zone_records("us-east-1", &c, "kafka.example.com")
            .await
            .unwrap()
            .is_none(),
        "the last zone is deleted"
    );
    // The same name again: a new zone (Route 53 wants a new caller reference per create).
    set_names(s, &ep, json!(["kafka.example.com"])).await;
    // Deleting the cluster deletes its endpoints at AWS, records and zones first.
    s.ok(Method::DELETE, &format!("/api/v1/clusters/{c}"), None)
        .await;
    eventually("the cluster's endpoint deleted at AWS", || {
        vpc_endpoints_of(s, id_of(&ep)) == json!([])
    })
    .await;
    assert!(
        aws.provider
            .zone_records("us-east-1", &c, "kafka.example.com")
            .await
            .unwrap()
            .is_none(),
        "the deleted cluster's zone is gone"
    );
}

/// A reconciler that called CreateVpcEndpoint and died before the store write: the next one
/// finds the endpoint by its tag and records it; no second endpoint is ever created. Likewise
/// for a private endpoint service.
async fn crash_between_call_and_write(s: &TestServer) {
    let aws = s.aws.as_ref().unwrap();
    let c = s
        .create_cluster("crash-test", json!({"us-east-1": 1}))
        .await;
    let ep = create_endpoint(s, &c, "com.amazonaws.us-east-1.logs", "PRIVATE_SERVICE").await;
    let id = id_of(&ep).to_string();
    // The crashed reconciler's call.
    let made = aws
        .provider
        .create_endpoint(&NewEndpoint {
            endpoint_id: &id,
            cluster_id: &c,
            region: "us-east-1",
            service_name: "com.amazonaws.us-east-1.logs",
        })
        .await
        .unwrap();
    let v = s.ok(Method::GET, &ep, None).await;
    assert_eq!(v["endpoint_connection_id"], "", "never recorded");
    let creates_before = count(aws, "CreateVpcEndpoint");
    let rec = s.reconciler("after-the-crash");
    for _ in 0..20 {
        rec.pass().await.unwrap();
        if s.ok(Method::GET, &ep, None).await["state"] == "AVAILABLE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let v = s.ok(Method::GET, &ep, None).await;
    assert_eq!(v["state"], "AVAILABLE", "{v}");
    assert_eq!(
        v["endpoint_connection_id"],
        made.id.as_str(),
        "the same endpoint"
    );
    assert_eq!(
        count(aws, "CreateVpcEndpoint"),
        creates_before,
        "no second create"
    );
    assert_eq!(vpc_endpoints_of(s, &id).as_array().unwrap().len(), 1);
    // A retried create with the same ClientToken returns the first endpoint too.
    let again = aws
        .provider
        .create_endpoint(&NewEndpoint {
            endpoint_id: &id,
            cluster_id: &c,
            region: "us-east-1",
            service_name: "com.amazonaws.us-east-1.logs",
        })
        .await
        .unwrap();
    assert_eq!(again.id, made.id);

    // The same for the cluster's private endpoint service.
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c}/networking/private-endpoint-services"),
        None,
    )
    .await;
    // The crashed reconciler's call, named as it would have named it.
    let nonce = s.store.list_ingress_services(&c).await.unwrap()[0]
        .created_at
        .clone();
    let svc = aws
        .provider
        .create_service("us-east-1", &c, &nonce)
        .await
        .unwrap();
    for _ in 0..20 {
        rec.pass().await.unwrap();
        let v = s
            .ok(
                Method::GET,
                &format!("/api/v1/clusters/{c}/networking/private-endpoint-services"),
                None,
            )
            .await;
        if v["services"][0]["endpoint_service_id"] == svc.id.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let v = s
        .ok(
            Method::GET,
            &format!("/api/v1/clusters/{c}/networking/private-endpoint-services"),
            None,
        )
        .await;
    assert_eq!(
        v["services"][0]["endpoint_service_id"],
        svc.id.as_str(),
        "{v}"
    );
    assert_eq!(v["services"][0]["aws"]["service_name"], svc.name.as_str());
    assert_eq!(
        count(aws, "CreateVpcEndpointServiceConfiguration"),
        1,
        "no second service"
    );
}

/// An endpoint AWS never creates (throttled past the provisioning deadline) reads FAILED with
/// the reason: the cluster lock is not held forever.
async fn throttled_past_the_deadline(s: &TestServer) {
    let aws = s.aws.as_ref().unwrap();
    let c = s
        .create_cluster("never-created", json!({"us-east-1": 1}))
        .await;
    aws.moto.control(
        "throttle",
        &json!({"Action": "CreateVpcEndpoint", "Count": 100000}),
    );
    let ep = create_endpoint(s, &c, "com.amazonaws.us-east-1.logs", "PRIVATE_SERVICE").await;
    let rec = s.reconciler_with(perimeter_api::reconcile::ReconcilerConfig {
        provision_timeout: Duration::from_secs(1),
        ..common::test_reconciler_config("deadline")
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while s.ok(Method::GET, &ep, None).await["state"] != "FAILED" {
        assert!(tokio::time::Instant::now() < deadline, "never FAILED");
        rec.pass().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let entries = audit_of(s, id_of(&ep)).await;
    assert!(
        entries
            .iter()
            .any(|e| e.to_string().contains("not created at AWS within 1 s")
                && e.to_string().contains("RequestLimitExceeded")),
        "{entries:?}"
    );
    // The lock is free: another endpoint can be created.
    aws.moto.control(
        "throttle",
        &json!({"Action": "CreateVpcEndpoint", "Count": 0}),
    );
    create_endpoint(s, &c, "com.amazonaws.us-east-1.logs", "PRIVATE_SERVICE").await;
}

fn count(aws: &common::AwsSide, action: &str) -> usize {
    aws.moto
        .requests()
        .iter()
        .filter(|r| r["action"] == action && r["throttled"] == false)
        .count()
}

/// Throttling: the SDK retries, then the reconciler backs off and tries again; one endpoint
/// is created, the API never answers 5xx, and Route 53 throttling is ridden out the same way.
async fn throttling_backoff(s: &TestServer) {
    let aws = s.aws.as_ref().unwrap();
    let c = s.create_cluster("throttled", json!({"us-east-1": 1})).await;
    // More than the SDK's attempts (3 on the test servers): the reconciler's backoff has to
    // carry it.
    aws.moto.control(
        "throttle",
        &json!({"Action": "CreateVpcEndpoint", "Count": 5}),
    );
    let ep = create_endpoint(s, &c, "com.amazonaws.us-east-1.logs", "PRIVATE_SERVICE").await;
    let v = s
        .wait_for(&ep, 30, "AVAILABLE despite throttling", |v| {
            v["state"] == "AVAILABLE"
        })
        .await;
    let creates: Vec<Value> = aws
        .moto
        .requests()
        .into_iter()
        .filter(|r| r["action"] == "CreateVpcEndpoint")
        .collect();
    assert_eq!(
        creates.len(),
        6,
        "5 throttled, then one that landed: {creates:?}"
    );
    assert_eq!(creates.iter().filter(|r| r["throttled"] == true).count(), 5);
    let t: Vec<f64> = creates.iter().map(|r| r["t"].as_f64().unwrap()).collect();
    // The SDK's own three attempts come quickly; the reconciler's next pass waits out its
    // backoff (200 ms on the test servers) from the start of the failed pass, which began a
    // lookup (one describe, well under 50 ms) before its first create.
    assert!(
        t[3] - t[0] >= 0.15,
        "a backoff between the reconciler's passes: {t:?}"
    );
    assert_eq!(
        vpc_endpoints_of(s, id_of(&ep)),
        json!([[v["endpoint_connection_id"], "available"]]),
        "exactly one endpoint"
    );
    // Route 53 throttled too: the domain names still arrive.
    aws.moto.control(
        "throttle",
        &json!({"Action": "ChangeResourceRecordSets", "Count": 4}),
    );
    s.ok(
        Method::PATCH,
        &ep,
        Some(json!({"domain_names": ["logs.internal.example"]})),
    )
    .await;
    s.wait_for(&ep, 30, "domain names AVAILABLE", |v| {
        v["domain_names_state"] == "AVAILABLE"
    })
    .await;
    let changes: Vec<Value> = aws
        .moto
        .requests()
        .into_iter()
        .filter(|r| r["service"] == "route53")
        .collect();
    assert_eq!(
        changes
            .iter()
            .filter(|r| r["action"] == "ChangeResourceRecordSets" && r["throttled"] == true)
            .count(),
        4,
        "{changes:?}"
    );
}

/// The ingress side on AWS: the cluster's VPC endpoint service on the region's NLB with
/// acceptance required; principals from the trusted owners; a registered endpoint accepted, an
/// unregistered one left waiting, an untrusted owner's rejected, a deleted registration
/// rejected; states observed; the service deleted with its cluster.
async fn ingress_service(s: &TestServer) {
    let aws = s.aws.as_ref().unwrap();
    let c = s
        .create_cluster("ingress-aws", json!({"us-east-1": 1}))
        .await;
    let base = format!("/api/v1/clusters/{c}/networking");
    s.ok(
        Method::POST,
        &format!("{base}/private-endpoint-services"),
        None,
    )
    .await;
    let v = s
        .wait_for(
            &format!("{base}/private-endpoint-services"),
            20,
            "the service at AWS",
            |v| v["services"][0]["endpoint_service_id"] != "",
        )
        .await;
    let svc_id = v["services"][0]["endpoint_service_id"]
        .as_str()
        .unwrap()
        .to_string();
    let svc_name = v["services"][0]["aws"]["service_name"]
        .as_str()
        .unwrap()
        .to_string();
    let described = s.boto3(&format!(
        r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
c = ec2.describe_vpc_endpoint_service_configurations(ServiceIds=["{svc_id}"])["ServiceConfigurations"][0]
print(json.dumps([c["AcceptanceRequired"], c["NetworkLoadBalancerArns"], {{t["Key"]: t["Value"] for t in c["Tags"]}}]))
"#
    ));
    assert_eq!(described[0], true, "acceptance required");
    assert!(
        aws.config.contains(described[1][0].as_str().unwrap()),
        "on the configured NLB: {described}"
    );
    assert_eq!(described[2]["perimeter:cluster"], c.as_str());
    // A gateway of the region serves the private ingress listener: AVAILABLE.
    let mut gw = register(s, &c, "gw-1").await;
    sync_with(s, &mut gw, Some("127.0.0.1:26257")).await;
    s.wait_for(
        &format!("{base}/private-endpoint-services"),
        20,
        "AVAILABLE",
        |v| v["services"][0]["status"] == "AVAILABLE",
    )
    .await;
    let principals = |s: &TestServer| {
        s.boto3(&format!(
            r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
print(json.dumps(sorted(p["Principal"] for p in ec2.describe_vpc_endpoint_service_permissions(ServiceId="{svc_id}")["AllowedPrincipals"])))
"#
        ))
    };
    let wait_principals = |want: Value| async move {
        eventually(&format!("allowed principals {want}"), || {
            principals(s) == want
        })
        .await
    };
    wait_principals(json!(["*"])).await;
    s.ok(
        Method::POST,
        &format!("{base}/private-endpoint-trusted-owners"),
        Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": "111122223333"})),
    )
    .await;
    wait_principals(json!(["arn:aws:iam::111122223333:root"])).await;
    // Customers' endpoints, from their own accounts.
    let customer = |account: &str| {
        s.boto3(&format!(
            r#"
import boto3, json, os
url = os.environ["MOTO_URL"]
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=url)
ec2.meta.events.register("before-sign.ec2.*", lambda request, **kw: request.headers.__setitem__("x-moto-account-id", "{account}"))
vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
sub = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
e = ec2.create_vpc_endpoint(VpcEndpointType="Interface", VpcId=vpc, ServiceName="{svc_name}", SubnetIds=[sub])["VpcEndpoint"]
print(json.dumps(e["VpcEndpointId"]))
"#
        ))
        .as_str()
        .unwrap()
        .to_string()
    };
    let trusted = customer("111122223333");
    let waiting = customer("111122223333");
    let stranger = customer("444455556666");
    let state_at_aws = |s: &TestServer, vpce: &str| {
        s.boto3(&format!(
            r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
cs = ec2.describe_vpc_endpoint_connections(Filters=[{{"Name": "vpc-endpoint-id", "Values": ["{vpce}"]}}])["VpcEndpointConnections"]
print(json.dumps(cs[0]["VpcEndpointState"] if cs else "gone"))
"#
        ))
        .as_str()
        .unwrap()
        .to_string()
    };
    for e in [&trusted, &stranger] {
        s.ok(
            Method::POST,
            &format!("{base}/private-endpoint-connections"),
            Some(json!({"endpoint_id": e})),
        )
        .await;
    }
    let conn_status = |v: &Value, e: &str| {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["endpoint_id"] == e)
            .map(|c| c["status"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let conns_path = format!("{base}/private-endpoint-connections");
    // The trusted, registered endpoint is accepted at AWS; once every gateway admits it, it
    // reads STATUS_AVAILABLE.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v = s.ok(Method::GET, &conns_path, None).await;
        if conn_status(&v, &trusted) == "STATUS_AVAILABLE" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not available: {v}");
        // The gateway applies every new snapshot.
        let (st, snap) = s
            .call(
                Method::GET,
                &format!(
                    "/api/v1/gateway/snapshot?after_version={}&wait_seconds=0",
                    gw.version
                ),
                Some(&gw.token.clone()),
                None,
            )
            .await;
        if st == 200 && snap["document"].is_object() {
            sync_with(s, &mut gw, Some("127.0.0.1:26257")).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state_at_aws(s, &trusted), "available");
    s.wait_for(&conns_path, 20, "the stranger rejected", |v| {
        conn_status(v, &stranger) == "STATUS_REJECTED"
    })
    .await;
    assert_eq!(state_at_aws(s, &stranger), "rejected");
    assert_eq!(
        state_at_aws(s, &waiting),
        "pendingAcceptance",
        "never accepted while unregistered"
    );
    // A deleted registration is rejected at AWS.
    s.ok(Method::DELETE, &format!("{conns_path}/{trusted}"), None)
        .await;
    eventually("the deregistered connection rejected at AWS", || {
        state_at_aws(s, &trusted) == "rejected"
    })
    .await;
    // The service goes with its cluster, its waiting connection rejected first.
    s.ok(Method::DELETE, &format!("/api/v1/clusters/{c}"), None)
        .await;
    let gone = |s: &TestServer| {
        s.boto3(&format!(
            r#"
import boto3, json, os
ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=os.environ["MOTO_URL"])
ids = [c["ServiceId"] for c in ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]]
print(json.dumps("{svc_id}" not in ids))
"#
        ))
    };
    eventually("the service deleted at AWS", || gone(s) == json!(true)).await;
    let calls: Vec<String> = aws
        .moto
        .requests()
        .iter()
        .filter(|r| r["throttled"] == false)
        .map(|r| r["action"].as_str().unwrap_or_default().to_string())
        .collect();
    let last_reject = calls
        .iter()
        .rposition(|a| a == "RejectVpcEndpointConnections")
        .expect("connections rejected");
    let delete = calls
        .iter()
        .rposition(|a| a == "DeleteVpcEndpointServiceConfigurations")
        .expect("the service deleted");
    assert!(
        last_reject < delete,
        "rejected before the delete: {calls:?}"
    );
}

/// Generate `sqlite::name` and `postgres::name` for each test, on a server of that backend on
/// the `aws` provider; `crash_between_call_and_write` runs without the server's reconciler.
macro_rules! on_both_backends_on_aws {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run($crate::Backend::Sqlite, stringify!($name)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run($crate::Backend::Postgres, stringify!($name)).await;
                }
            )*
        }
    };
}

async fn run(backend: Backend, name: &str) {
    let s = if matches!(
        name,
        "crash_between_call_and_write" | "throttled_past_the_deadline"
    ) {
        TestServer::start_without_reconciler(backend, Provider::Aws).await
    } else {
        TestServer::start_with(backend, Provider::Aws).await
    };
    match name {
        "seed_examples" => seed_examples(&s).await,
        "every_state" => every_state(&s).await,
        "domain_names" => domain_names(&s).await,
        "crash_between_call_and_write" => crash_between_call_and_write(&s).await,
        "throttling_backoff" => throttling_backoff(&s).await,
        "throttled_past_the_deadline" => throttled_past_the_deadline(&s).await,
        "ingress_service" => ingress_service(&s).await,
        other => panic!("no test {other}"),
    }
    s.stop().await;
}

on_both_backends_on_aws!(
    seed_examples,
    every_state,
    domain_names,
    crash_between_call_and_write,
    throttling_backoff,
    throttled_past_the_deadline,
    ingress_service,
);
