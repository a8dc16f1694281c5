//! The control plane API through a real socket, on SQLite and on PostgreSQL.

mod common;

use common::{TestServer, expect_invalid, field_of};
use reqwest::Method;
use serde_json::{Value, json};

fn rule(name: &str, dest: &str) -> Value {
    json!({"name": name, "type": "FQDN", "destination": dest, "ports": [443], "description": "test"})
}

async fn clusters_happy_path(s: &TestServer) {
    let v = s
        .ok(
            Method::POST,
            "/api/v1/clusters",
            Some(json!({"name": "orders-db", "provider": "AWS", "plan": "ADVANCED",
                "spec": {"dedicated": {"region_nodes": {"us-east-1": 3, "us-west-2": 3}, "hardware": {"machine_spec": {"num_virtual_cpus": 8}, "storage_gib": 300},
                "restrict_egress_traffic": true, "network_visibility": "PRIVATE"}, "labels": {"team": "payments"}}})),
        )
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["state"], "CREATED");
    assert_eq!(
        v["egress_traffic_policy"], "DEFAULT_DENY",
        "restrict_egress_traffic starts default-deny"
    );
    assert_eq!(v["network_visibility"], "PRIVATE");
    assert_eq!(v["cloud_provider"], "AWS");
    assert_eq!(v["regions"].as_array().unwrap().len(), 2);
    assert_eq!(v["config"]["dedicated"]["num_virtual_cpus"], 8);
    assert!(v["account_id"].as_str().unwrap().len() >= 12);
    assert_eq!(v["deleted_at"], Value::Null);
    for key in [
        "upgrade_status",
        "operation_status",
        "cidr_range",
        "is_customer_cloud_account",
        "creator_id",
        "created_at",
    ] {
        assert!(v.get(key).is_some(), "cluster lacks {key}: {v}");
    }
    let got = s
        .ok(Method::GET, &format!("/api/v1/clusters/{id}"), None)
        .await;
    assert_eq!(got["name"], "orders-db");
    let list = s.ok(Method::GET, "/api/v1/clusters", None).await;
    assert_eq!(list["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(list["pagination"], Value::Null);
    let patched = s
        .ok(Method::PATCH, &format!("/api/v1/clusters/{id}"), Some(json!({"dedicated": {"region_nodes": {"us-east-1": 5}}, "labels": {"team": "risk"}})))
        .await;
    assert_eq!(patched["regions"].as_array().unwrap().len(), 1);
    assert_eq!(patched["regions"][0]["node_count"], 5);
    assert_eq!(patched["labels"]["team"], "risk");
    let del = s
        .ok(Method::DELETE, &format!("/api/v1/clusters/{id}"), None)
        .await;
    assert_eq!(del["state"], "DELETED");
    let got = s
        .ok(Method::GET, &format!("/api/v1/clusters/{id}"), None)
        .await;
    assert_eq!(got["state"], "DELETED");
    assert!(got["deleted_at"].is_string());
    let list = s.ok(Method::GET, "/api/v1/clusters", None).await;
    assert_eq!(
        list["clusters"].as_array().unwrap().len(),
        0,
        "deleted clusters are hidden"
    );
    let list = s
        .ok(Method::GET, "/api/v1/clusters?show_inactive=true", None)
        .await;
    assert_eq!(list["clusters"].as_array().unwrap().len(), 1);
    let (st, v) = s
        .admin(
            Method::GET,
            &format!("/api/v1/clusters/{id}/networking/egress-rules"),
            None,
        )
        .await;
    assert_eq!(st, 404);
    assert!(v["message"].as_str().unwrap().contains("is deleted"), "{v}");
}

async fn egress_rules_happy_path(s: &TestServer) {
    let c = s
        .create_cluster("rules-cluster", json!({"us-east-1": 3}))
        .await;
    let base = format!("/api/v1/clusters/{c}/networking/egress-rules");
    // The docs' request, with the body's extra cluster_id.
    let v = s
        .ok(
            Method::POST,
            &base,
            Some(json!({"cluster_id": c, "name": "roach-buckets", "type": "FQDN", "destination": "Storage.GoogleAPIs.com.", "ports": [443, 80], "description": "egress for GCP storage buckets"})),
        )
        .await;
    let r = &v["Rule"];
    assert_eq!(r["state"], "PENDING_CREATION");
    assert_eq!(
        r["destination"], "storage.googleapis.com",
        "destinations are stored normalised"
    );
    assert_eq!(
        r["ports"],
        json!([443, 80]),
        "ports keep the client's order"
    );
    assert_eq!(r["crl_managed"], false);
    assert!(
        v["warnings"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .contains("*.storage.googleapis.com")
    );
    let id = r["id"].as_str().unwrap().to_string();
    let all_ports = s.ok(Method::POST, &base, Some(json!({"name": "kafka", "type": "CIDR", "destination": "198.51.100.0/24", "description": "brokers"}))).await;
    assert_eq!(all_ports["Rule"]["ports"], json!([]));
    assert!(
        all_ports["warnings"][0]
            .as_str()
            .unwrap()
            .contains("every port"),
        "{all_ports}"
    );
    let got = s.ok(Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(
        got["rule"]["name"], "roach-buckets",
        "GET answers with lower-case rule"
    );
    let list = s.ok(Method::GET, &base, None).await;
    let names: Vec<&str> = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kafka", "roach-buckets"], "sorted by name");
    assert_eq!(list["pagination"], Value::Null);
    let edited = s
        .ok(
            Method::PATCH,
            &format!("{base}/{id}"),
            Some(json!({"cluster_id": c, "rule_id": id, "ports": [443], "paths": ["/bucket/*"]})),
        )
        .await;
    assert_eq!(edited["Rule"]["ports"], json!([443]));
    assert_eq!(edited["Rule"]["paths"], json!(["/bucket/*"]));
    assert_eq!(
        edited["Rule"]["state"], "PENDING_CREATION",
        "never applied, so still pending creation"
    );
    let del = s
        .ok(
            Method::DELETE,
            &format!("{base}/{id}?idempotency_key=del-1"),
            None,
        )
        .await;
    assert_eq!(del["Rule"]["state"], "PENDING_DELETION");
    let again = s
        .ok(
            Method::DELETE,
            &format!("{base}/{id}?idempotency_key=del-1"),
            None,
        )
        .await;
    assert_eq!(
        again["Rule"]["id"], id,
        "a repeated idempotency key answers again"
    );
    let (st, _) = s.admin(Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(st, 404, "a rule no gateway applied is gone at once");
    // Idempotent create.
    let body = json!({"name": "idem", "type": "FQDN", "destination": "idem.example.com", "ports": [443], "description": "", "idempotency_key": "k1"});
    let a = s.ok(Method::POST, &base, Some(body.clone())).await;
    let b = s.ok(Method::POST, &base, Some(body)).await;
    assert_eq!(a["Rule"]["id"], b["Rule"]["id"]);
    let (st, v) = s
        .admin(Method::POST, &base, Some(json!({"name": "idem2", "type": "FQDN", "destination": "x.example.com", "ports": [443], "description": "", "idempotency_key": "k1"})))
        .await;
    assert_eq!(st, 409, "{v}");
}

async fn traffic_policy(s: &TestServer) {
    let c = s
        .create_cluster("policy-cluster", json!({"us-east-1": 3}))
        .await;
    let p = format!("/api/v1/clusters/{c}/networking/egress-rules/egress-traffic-policy");
    let v = s
        .ok(Method::POST, &p, Some(json!({"allow_all": false})))
        .await;
    assert_eq!(v, json!({}));
    let cl = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}"), None)
        .await;
    assert_eq!(
        cl["egress_traffic_policy"], "UPDATING",
        "no gateway has applied it: UPDATING is the truth"
    );
    expect_invalid(
        s,
        Method::POST,
        &p,
        json!({"allow_all": true, "report_only": true}),
        "report_only",
        "allow_all: false",
    )
    .await;
    expect_invalid(s, Method::POST, &p, json!({}), "allow_all", "missing field").await;
    // A locked cluster refuses another change with 409 / code 10 / "lock".
    let (st, v) = s
        .admin(Method::POST, &p, Some(json!({"allow_all": true})))
        .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["code"], 10);
    assert!(v["message"].as_str().unwrap().contains("lock"), "{v}");
    // ...but an invalid request is a 400 even then.
    expect_invalid(
        s,
        Method::POST,
        &p,
        json!({"allow_all": "yes"}),
        "allow_all",
        "invalid type",
    )
    .await;
    // Rules are independent of the lock.
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c}/networking/egress-rules"),
        Some(rule("while-locked", "a.example.com")),
    )
    .await;
    // Report-only on another cluster.
    let c2 = s
        .create_cluster("policy-two", json!({"us-east-1": 1}))
        .await;
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c2}/networking/egress-rules/egress-traffic-policy"),
        Some(json!({"allow_all": false, "report_only": true})),
    )
    .await;
}

async fn allowlist_happy_path(s: &TestServer) {
    let c = s
        .create_cluster("allow-cluster", json!({"us-east-1": 3}))
        .await;
    let base = format!("/api/v1/clusters/{c}/networking/allowlist");
    let e = s.ok(Method::POST, &base, Some(json!({"cidr_ip": "192.168.1.0", "cidr_mask": 24, "name": "office", "sql": true, "ui": false}))).await;
    assert_eq!(
        e,
        json!({"cidr_ip": "192.168.1.0", "cidr_mask": 24, "name": "office", "sql": true, "ui": false})
    );
    let (st, v) = s
        .admin(
            Method::POST,
            &base,
            Some(json!({"cidr_ip": "192.168.1.0", "cidr_mask": 24, "sql": true, "ui": false})),
        )
        .await;
    assert_eq!(st, 409, "duplicate entry: {v}");
    s.ok(
        Method::PUT,
        &format!("{base}/10.0.0.0/8"),
        Some(json!({"name": "vpn", "sql": true, "ui": true})),
    )
    .await;
    let patched = s
        .ok(
            Method::PATCH,
            &format!("{base}/10.0.0.0/8"),
            Some(json!({"ui": false})),
        )
        .await;
    assert_eq!(patched["name"], "vpn", "PATCH keeps what it does not name");
    assert_eq!(patched["ui"], false);
    let (st, _) = s
        .admin(
            Method::PATCH,
            &format!("{base}/172.16.0.0/12"),
            Some(json!({"sql": true, "ui": true})),
        )
        .await;
    assert_eq!(st, 404, "PATCH of a missing entry");
    let list = s.ok(Method::GET, &base, None).await;
    assert_eq!(list["allowlist"].as_array().unwrap().len(), 2);
    assert_eq!(
        list["propagating"], true,
        "no gateway applied the change yet"
    );
    assert_eq!(list["allowlist"][0]["cidr_ip"], "10.0.0.0", "numeric order");
    let del = s
        .ok(Method::DELETE, &format!("{base}/192.168.1.0/24"), None)
        .await;
    assert_eq!(del["name"], "office");
    expect_invalid(
        s,
        Method::POST,
        &base,
        json!({"cidr_ip": "192.168.1.1", "cidr_mask": 24, "sql": true, "ui": false}),
        "cidr_ip",
        "192.168.1.0/24",
    )
    .await;
}

/// How many audit entries have `action`, and the whole audit log (for the failure message).
async fn audit_entries(s: &TestServer, action: &str) -> (usize, Value) {
    let audit = s
        .ok(Method::GET, "/api/v1/auditlogevents?limit=1000", None)
        .await;
    let n = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .count();
    (n, audit)
}

async fn identity_and_audit(s: &TestServer) {
    let (sa, key) = s
        .key_with(
            "ci-bot",
            json!([{"name": "CLUSTER_DEVELOPER", "resource": {"type": "ORGANIZATION"}}]),
        )
        .await;
    let got = s
        .ok(Method::GET, &format!("/api/v1/service-accounts/{sa}"), None)
        .await;
    assert_eq!(
        got["roles"],
        json!([{"name": "CLUSTER_DEVELOPER", "resource": {"type": "ORGANIZATION"}}])
    );
    assert_eq!(got["creator_name"], "admin");
    let list = s.ok(Method::GET, "/api/v1/service-accounts", None).await;
    assert_eq!(list["service_accounts"].as_array().unwrap().len(), 2);
    s.ok(
        Method::PATCH,
        &format!("/api/v1/service-accounts/{sa}"),
        Some(json!({"description": "deploys"})),
    )
    .await;
    let roles = s
        .ok(
            Method::PUT,
            &format!("/api/v1/roles/{sa}"),
            Some(
                json!({"roles": [{"name": "CLUSTER_ADMIN", "resource": {"type": "ORGANIZATION"}}]}),
            ),
        )
        .await;
    assert_eq!(roles["roles"][0]["name"], "CLUSTER_ADMIN");
    let roles = s
        .ok(Method::GET, &format!("/api/v1/roles/{sa}"), None)
        .await;
    assert_eq!(roles["roles"].as_array().unwrap().len(), 1);
    // The official SDK sends `null` for an array it has nothing for: read as empty.
    let created = s
        .ok(
            Method::POST,
            "/api/v1/service-accounts",
            Some(json!({"name": "sdk-null-roles", "description": "", "roles": null})),
        )
        .await;
    assert_eq!(created["roles"], json!([]), "{created}");
    let none = s
        .ok(
            Method::PUT,
            &format!("/api/v1/roles/{}", created["id"].as_str().unwrap()),
            Some(json!({"roles": null})),
        )
        .await;
    assert_eq!(none["roles"], json!([]), "{none}");
    expect_invalid(
        s,
        Method::PUT,
        &format!("/api/v1/roles/{sa}"),
        json!({"roles": [{"name": "GOD", "resource": {"type": "ORGANIZATION"}}]}),
        "roles[0].name",
        "not a role",
    )
    .await;
    let keys = s
        .ok(
            Method::GET,
            &format!("/api/v1/api-keys?service_account_id={sa}"),
            None,
        )
        .await;
    let key_id = keys["api_keys"][0]["id"].as_str().unwrap().to_string();
    assert!(
        key.starts_with(&key_id),
        "the secret begins with its key id"
    );
    assert!(
        keys.to_string().find(&key).is_none(),
        "secrets are never listed"
    );
    s.ok(
        Method::PATCH,
        &format!("/api/v1/api-keys/{key_id}"),
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(
        s.ok(Method::GET, &format!("/api/v1/api-keys/{key_id}"), None)
            .await["name"],
        "renamed"
    );
    let (st, _) = s
        .call(Method::GET, "/api/v1/clusters", Some(&key), None)
        .await;
    assert_eq!(st, 200);
    s.ok(Method::DELETE, &format!("/api/v1/api-keys/{key_id}"), None)
        .await;
    let (st, _) = s
        .call(Method::GET, "/api/v1/clusters", Some(&key), None)
        .await;
    assert_eq!(st, 401, "a deleted key stops working at once");
    s.ok(
        Method::DELETE,
        &format!("/api/v1/service-accounts/{sa}"),
        None,
    )
    .await;
    // Audit: every change above is there, and no secret is.
    let audit = s
        .ok(Method::GET, "/api/v1/auditlogevents?limit=1000", None)
        .await;
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "AUDIT_LOG_ACTION_CREATE_SERVICE_ACCOUNT",
        "AUDIT_LOG_ACTION_CREATE_API_KEY",
        "AUDIT_LOG_ACTION_ASSIGN_USER_ROLE",
        "AUDIT_LOG_ACTION_DELETE_API_KEY",
        "AUDIT_LOG_ACTION_DELETE_SERVICE_ACCOUNT",
        "AUDIT_LOG_ACTION_UPDATE_API_KEY",
    ] {
        assert!(actions.contains(&a), "audit lacks {a}: {actions:?}");
    }
    let text = audit.to_string();
    assert!(
        !text.contains(&key) && !text.contains(&s.admin),
        "the audit log holds no secret"
    );
    // Paging as the official SDK does it: `next_starting_from` sent back as RFC 3339 without
    // a fraction. Entries come many to a second here, so pages end on whole seconds: every
    // entry comes exactly once, in order, and the walk ends.
    let all: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &next {
            None => "/api/v1/auditlogevents?limit=2".to_string(),
            Some(n) => format!("/api/v1/auditlogevents?limit=2&starting_from={n}"),
        };
        let page = s.ok(Method::GET, &url, None).await;
        let entries = page["entries"].as_array().unwrap();
        assert!(
            entries.len() >= 2 || page["next_starting_from"].is_null(),
            "{page}"
        );
        seen.extend(
            entries
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_string()),
        );
        pages += 1;
        assert!(pages <= all.len(), "paging does not end: {page}");
        match page["next_starting_from"].as_str() {
            Some(n) => {
                assert!(!n.contains('.'), "whole seconds: {n}");
                assert!(
                    entries.iter().all(|e| e["created_at"].as_str().unwrap()
                        < &*format!("{}.999999Z", n.trim_end_matches('Z'))),
                    "the page ends with the second it names: {page}"
                );
                next = Some(n.to_string());
            }
            None => break,
        }
    }
    assert_eq!(seen, all, "every entry once, in order, over {pages} pages");
    let desc = s
        .ok(
            Method::GET,
            "/api/v1/auditlogevents?sort_order=DESC&limit=1",
            None,
        )
        .await;
    assert_eq!(
        desc["entries"][0]["action"],
        "AUDIT_LOG_ACTION_DELETE_SERVICE_ACCOUNT"
    );
}

async fn query_rejections_use_the_error_shape(s: &TestServer) {
    let (st, v) = s
        .admin(
            Method::GET,
            "/api/v1/clusters?pagination.limit=1&pagination.limit=2",
            None,
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["code"], 3, "{v}");
    assert_eq!(
        v["details"][0]["field_violations"][0]["field"], "pagination.limit",
        "{v}"
    );
    let (st, v) = s
        .admin(Method::GET, "/api/v1/clusters?show_inactive=maybe", None)
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(
        v["details"][0]["field_violations"][0]["field"], "show_inactive",
        "{v}"
    );
}

async fn body_over_the_cap_is_413(s: &TestServer) {
    let (st, v) = s
        .admin(
            Method::POST,
            "/api/v1/service-accounts",
            Some(json!({"name": "big", "description": "x".repeat(2 << 20)})),
        )
        .await;
    assert_eq!(st, 413, "{v}");
    assert_eq!(v["code"], 3, "{v}");
    assert_eq!(
        v["details"][0]["field_violations"][0]["field"], "body",
        "{v}"
    );
}

async fn authentication(s: &TestServer) {
    let (st, v) = s.call(Method::GET, "/api/v1/clusters", None, None).await;
    assert_eq!((st, v["code"].clone()), (401, json!(16)));
    let (st, _) = s
        .call(
            Method::GET,
            "/api/v1/clusters",
            Some("PRMTR_0123456789abcdef_wrongwrongwrongwrongwrongwrongwrongwrong"),
            None,
        )
        .await;
    assert_eq!(st, 401);
    let mut forged = s.admin.clone();
    forged.pop();
    forged.push(if s.admin.ends_with('A') { 'B' } else { 'A' });
    let (st, _) = s
        .call(Method::GET, "/api/v1/clusters", Some(&forged), None)
        .await;
    assert_eq!(st, 401, "a secret differing in one character");
    let (st, _) = s
        .call(Method::GET, "/api/v1/clusters", Some("garbage"), None)
        .await;
    assert_eq!(st, 401);
    let resp = s
        .http
        .get(s.url("/api/v1/clusters"))
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // 401 comes before validation.
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/clusters",
            None,
            Some(json!({"bogus": 1})),
        )
        .await;
    assert_eq!(st, 401);
    // No auth on these.
    let (st, v) = s.call(Method::GET, "/health", None, None).await;
    assert_eq!((st, v), (200, json!({"status": "ok"})));
    let (st, _) = s.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(st, 200);
    let (st, v) = s
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(st, 200);
    assert!(v["paths"].as_object().unwrap().len() > 20);
    // Cc-Version is validated and echoed.
    let r = s
        .http
        .get(s.url("/health"))
        .header("Cc-Version", "2022-09-20")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cc-version"], "2022-09-20");
    let r = s
        .http
        .get(s.url("/health"))
        .header("Cc-Version", "latest")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cc-version"], "2024-09-16");
    let r = s
        .http
        .get(s.url("/health"))
        .header("Cc-Version", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "invalid Cc-Version.");
}

async fn validation_errors(s: &TestServer) {
    let c = s
        .create_cluster("valid-cluster", json!({"us-east-1": 3, "us-west-2": 1}))
        .await;
    let rules = format!("/api/v1/clusters/{c}/networking/egress-rules");
    let mk = |t: &str, d: &str| json!({"name": "x", "type": t, "destination": d, "ports": [443], "description": ""});
    expect_invalid(
        s,
        Method::POST,
        &rules,
        mk("CIDR", "10.0.0.1/8"),
        "destination",
        "use 10.0.0.0/8",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        &rules,
        mk("FQDN", "*.com"),
        "destination",
        "com",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        &rules,
        mk("FQDN", "*.co.uk"),
        "destination",
        "co.uk",
    )
    .await;
    expect_invalid(s, Method::POST, &rules, mk("FQDN", "*"), "destination", "*").await;
    expect_invalid(
        s,
        Method::POST,
        &rules,
        mk("FQDN", "10.1.2.3"),
        "destination",
        "CIDR",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        &rules,
        mk("DNS", "a.example.com"),
        "type",
        "FQDN",
    )
    .await;
    let mut bad_ports = mk("FQDN", "a.example.com");
    bad_ports["ports"] = json!([443, 70000]);
    expect_invalid(s, Method::POST, &rules, bad_ports, "ports[1]", "65535").await;
    let mut zero = mk("FQDN", "a.example.com");
    zero["ports"] = json!([0]);
    expect_invalid(s, Method::POST, &rules, zero, "ports[0]", "65535").await;
    let mut cidr_paths = mk("CIDR", "10.0.0.0/8");
    cidr_paths["paths"] = json!(["/a"]);
    expect_invalid(s, Method::POST, &rules, cidr_paths, "paths", "CIDR").await;
    expect_invalid(s, Method::POST, &rules, json!({"name": "x", "type": "FQDN", "destination": "a.example.com", "ports": [443], "colour": "red"}), "colour", "unknown field").await;
    expect_invalid(s, Method::POST, &rules, json!({"cluster_id": uuid::Uuid::new_v4().to_string(), "name": "x", "type": "FQDN", "destination": "a.example.com", "ports": [443]}), "cluster_id", "disagrees").await;
    expect_invalid(
        s,
        Method::POST,
        &rules,
        json!({"name": "", "type": "FQDN", "destination": "a.example.com", "ports": [443]}),
        "name",
        "name",
    )
    .await;
    let (st, v) = s
        .admin(Method::POST, &rules, Some(json!("not an object")))
        .await;
    assert_eq!(field_of(&v), "body");
    assert_eq!(st, 400, "{v}");
    let raw = s
        .http
        .post(s.url(&rules))
        .bearer_auth(&s.admin)
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400, "truncated JSON");
    // Duplicate name.
    s.ok(Method::POST, &rules, Some(mk("FQDN", "a.example.com")))
        .await;
    let (st, v) = s
        .admin(Method::POST, &rules, Some(mk("FQDN", "b.example.com")))
        .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["code"], 6);
    assert_eq!(field_of(&v), "name");
    // Name cannot change.
    let list = s.ok(Method::GET, &rules, None).await;
    let rid = list["rules"][0]["id"].as_str().unwrap();
    expect_invalid(
        s,
        Method::PATCH,
        &format!("{rules}/{rid}"),
        json!({"name": "other"}),
        "name",
        "cannot change",
    )
    .await;
    // Regions per provider; name rules.
    let mkc = |name: &str, provider: &str, region: &str| json!({"name": name, "provider": provider, "spec": {"dedicated": {"region_nodes": {region: 3}}}});
    expect_invalid(
        s,
        Method::POST,
        "/api/v1/clusters",
        mkc("good-name", "AWS", "us-east1"),
        "spec.dedicated.region_nodes.us-east1",
        "GCP",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        "/api/v1/clusters",
        mkc("good-name", "GCP", "us-east-1"),
        "spec.dedicated.region_nodes.us-east-1",
        "AWS",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        "/api/v1/clusters",
        mkc("Bad_Name", "AWS", "us-east-1"),
        "name",
        "",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        "/api/v1/clusters",
        mkc("short", "AWS", "us-east-1"),
        "name",
        "",
    )
    .await;
    expect_invalid(
        s,
        Method::POST,
        "/api/v1/clusters",
        mkc("good-name", "IBM", "us-east-1"),
        "provider",
        "AWS, GCP or AZURE",
    )
    .await;
    // Pagination parameters.
    expect_invalid(
        s,
        Method::GET,
        &format!("{rules}?pagination.limit=0"),
        Value::Null,
        "pagination.limit",
        "1 to 500",
    )
    .await;
    expect_invalid(
        s,
        Method::GET,
        &format!("{rules}?pagination.limit=501"),
        Value::Null,
        "pagination.limit",
        "1 to 500",
    )
    .await;
    expect_invalid(
        s,
        Method::GET,
        &format!("{rules}?pagination.sort_order=UP"),
        Value::Null,
        "pagination.sort_order",
        "ASC",
    )
    .await;
    expect_invalid(
        s,
        Method::GET,
        &format!("{rules}?pagination.page=forged"),
        Value::Null,
        "pagination.page",
        "token",
    )
    .await;
    expect_invalid(
        s,
        Method::GET,
        "/api/v1/clusters/not-a-uuid",
        Value::Null,
        "cluster_id",
        "UUID",
    )
    .await;
    // Unknown clusters and rules.
    let (st, _) = s
        .admin(
            Method::GET,
            &format!("/api/v1/clusters/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = s
        .admin(
            Method::GET,
            &format!("{rules}/{}", uuid::Uuid::new_v4()),
            None,
        )
        .await;
    assert_eq!(st, 404);
}

/// GET `base?query` as admin, expecting 200.
async fn page(s: &TestServer, base: &str, query: &str) -> Value {
    s.ok(Method::GET, &format!("{base}?{query}"), None).await
}

/// Seven rules, three per page: pages of 3, 3, 1, forward and back, in both orders.
async fn pagination_three_pages(s: &TestServer) {
    let c = s
        .create_cluster("page-cluster", json!({"us-east-1": 1}))
        .await;
    let base = format!("/api/v1/clusters/{c}/networking/egress-rules");
    for i in (0..7).rev() {
        s.ok(
            Method::POST,
            &base,
            Some(rule(&format!("rule-{i}"), &format!("h{i}.example.com"))),
        )
        .await;
    }
    let names = |v: &Value| -> Vec<String> {
        v["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let p1 = s
        .ok(Method::GET, &format!("{base}?pagination.limit=3"), None)
        .await;
    assert_eq!(names(&p1), ["rule-0", "rule-1", "rule-2"]);
    assert_eq!(p1["pagination"]["previous_page"], "");
    let t1 = p1["pagination"]["next_page"].as_str().unwrap();
    assert!(!t1.is_empty());
    let p2 = page(
        s,
        &base,
        &format!("pagination.limit=3&pagination.page={t1}"),
    )
    .await;
    assert_eq!(names(&p2), ["rule-3", "rule-4", "rule-5"]);
    let t2 = p2["pagination"]["next_page"].as_str().unwrap();
    let p3 = page(
        s,
        &base,
        &format!("pagination.limit=3&pagination.page={t2}"),
    )
    .await;
    assert_eq!(names(&p3), ["rule-6"]);
    assert_eq!(p3["pagination"]["next_page"], "", "the last page says so");
    let back = p3["pagination"]["previous_page"].as_str().unwrap();
    let p2b = page(
        s,
        &base,
        &format!("pagination.limit=3&pagination.page={back}"),
    )
    .await;
    assert_eq!(names(&p2b), ["rule-3", "rule-4", "rule-5"]);
    let back = p2b["pagination"]["previous_page"].as_str().unwrap();
    let p1b = page(
        s,
        &base,
        &format!("pagination.limit=3&pagination.page={back}"),
    )
    .await;
    assert_eq!(names(&p1b), ["rule-0", "rule-1", "rule-2"]);
    let d1 = page(s, &base, "pagination.limit=3&pagination.sort_order=DESC").await;
    assert_eq!(names(&d1), ["rule-6", "rule-5", "rule-4"]);
    let t = d1["pagination"]["next_page"].as_str().unwrap();
    let d2 = page(
        s,
        &base,
        &format!("pagination.limit=3&pagination.sort_order=DESC&pagination.page={t}"),
    )
    .await;
    assert_eq!(names(&d2), ["rule-3", "rule-2", "rule-1"]);
    let all = s.ok(Method::GET, &base, None).await;
    assert_eq!(all["rules"].as_array().unwrap().len(), 7);
    assert_eq!(
        all["pagination"],
        Value::Null,
        "one page: pagination is null"
    );
}

/// The workload route: every region listed, addresses validated with the field named, regions
/// checked, each write audited and carried in the next snapshot.
async fn workload_addresses(s: &TestServer) {
    let c = s
        .create_cluster("workload-1", json!({"us-east-1": 1, "eu-west-1": 1}))
        .await;
    let path = format!("/api/v1/clusters/{c}/workload");
    let v = s.ok(Method::GET, &path, None).await;
    assert_eq!(
        v,
        json!({"regions": {"eu-west-1": {"sql": "", "ui": ""}, "us-east-1": {"sql": "", "ui": ""}}})
    );
    let (_, platform) = s
        .key_with(
            "platform-wl",
            json!([{"name": "PLATFORM_OPERATOR", "resource": {"type": "ORGANIZATION"}}]),
        )
        .await;
    let set = |body: Value| {
        let path = path.clone();
        let platform = platform.clone();
        async move {
            s.call(Method::PUT, &path, Some(&platform), Some(body))
                .await
        }
    };
    let (st, v) =
        set(json!({"regions": {"us-east-1": {"sql": "127.0.0.1:26257", "ui": "[::1]:8080"}}}))
            .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["regions"]["us-east-1"]["sql"], "127.0.0.1:26257");
    assert_eq!(v["regions"]["us-east-1"]["ui"], "[::1]:8080");
    assert_eq!(v["regions"]["eu-west-1"]["sql"], "");
    assert_eq!(s.ok(Method::GET, &path, None).await, v);
    let (st, v) = set(json!({"regions": {"us-east-1": {"sql": "127.0.0.1"}}})).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(field_of(&v), "regions.us-east-1.sql", "{v}");
    let (st, v) = set(json!({"regions": {"us-east-1": {"ui": "db.example.com:0"}}})).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(field_of(&v), "regions.us-east-1.ui", "{v}");
    let (st, v) = set(json!({"regions": {"mars-1": {"sql": "127.0.0.1:1"}}})).await;
    assert_ne!(st, 200, "{v}");
    assert!(v.to_string().contains("regions.mars-1"), "{v}");
    let (st, v) = set(json!({"regions": {"us-east-1": {"sql": "127.0.0.1:1", "tls": "x"}}})).await;
    assert_eq!(st, 400, "unknown fields are refused: {v}");
    // Unchanged after the refusals.
    assert_eq!(
        s.ok(Method::GET, &path, None).await["regions"]["us-east-1"]["sql"],
        "127.0.0.1:26257"
    );
    let (sets, audit) = audit_entries(s, "AUDIT_LOG_ACTION_SET_WORKLOAD").await;
    assert_eq!(sets, 1, "one accepted write, one entry: {audit}");
}

/// Ingress what-if: the verdict of the public listeners and the deciding entry, under the
/// newest snapshot.
async fn ingress_check(s: &TestServer) {
    let c = s
        .create_cluster("ingress-check-1", json!({"us-east-1": 1}))
        .await;
    let check = format!("/api/v1/clusters/{c}/networking/ingress-check");
    let ask = |source: &str, listener: &str| json!({"source": source, "listener": listener});
    let v = s
        .ok(Method::POST, &check, Some(ask("198.51.100.7", "sql")))
        .await;
    assert_eq!(v["admitted"], false);
    assert_eq!(v["reason"], "allowlist_empty");
    assert_eq!(v["entry"], Value::Null);
    let allowlist = format!("/api/v1/clusters/{c}/networking/allowlist");
    s.ok(
        Method::POST,
        &allowlist,
        Some(json!({"cidr_ip": "198.51.100.0", "cidr_mask": 24, "name": "office", "sql": true, "ui": false})),
    )
    .await;
    s.ok(
        Method::POST,
        &allowlist,
        Some(json!({"cidr_ip": "198.51.100.7", "cidr_mask": 32, "name": "laptop", "sql": false, "ui": false})),
    )
    .await;
    let v = s
        .ok(Method::POST, &check, Some(ask("198.51.100.7", "sql")))
        .await;
    assert_eq!(v["admitted"], true, "{v}");
    assert_eq!(v["verdict"], "ADMITTED");
    assert_eq!(v["reason"], "allowlisted");
    assert_eq!(v["entry"]["name"], "office");
    assert_eq!(v["entry"]["cidr_ip"], "198.51.100.0");
    let v = s
        .ok(Method::POST, &check, Some(ask("198.51.100.7", "ui")))
        .await;
    assert_eq!(v["admitted"], false);
    assert_eq!(v["reason"], "listener_not_allowed");
    assert_eq!(v["entry"]["name"], "laptop", "the most specific entry: {v}");
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("::ffff:198.51.100.9", "sql")),
        )
        .await;
    assert_eq!(v["admitted"], true, "IPv4-mapped judged as IPv4: {v}");
    let v = s
        .ok(Method::POST, &check, Some(ask("203.0.113.1", "sql")))
        .await;
    assert_eq!(v["reason"], "not_allowlisted");
    let (st, v) = s
        .admin(Method::POST, &check, Some(ask("0306.51.100.7", "sql")))
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(field_of(&v), "source");
    let (st, v) = s
        .admin(Method::POST, &check, Some(ask("198.51.100.7", "ssh")))
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(field_of(&v), "listener");
}

/// Functional roles: set by the platform (PUT replaces the set, `{}` clears it), expanded with
/// the cluster's real id and account, shown on the cluster, readable by the cluster's readers,
/// each template refused with its purpose named, each write audited, gone with the cluster.
async fn credential_roles(s: &TestServer) {
    let c = s.create_cluster("roles-1", json!({"us-east-1": 1})).await;
    let cluster = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}"), None)
        .await;
    assert_eq!(
        cluster["credential_roles"],
        json!({}),
        "none at first: {cluster}"
    );
    let account = cluster["account_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/clusters/{c}/credential-roles");
    assert_eq!(s.ok(Method::GET, &path, None).await, json!({"roles": {}}));
    let (_, platform) = s
        .key_with(
            "platform-cr",
            json!([{"name": "PLATFORM_OPERATOR", "resource": {"type": "ORGANIZATION"}}]),
        )
        .await;
    let set = |body: Value| {
        let path = path.clone();
        let platform = platform.clone();
        async move {
            s.call(Method::PUT, &path, Some(&platform), Some(body))
                .await
        }
    };
    let backup = "arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}";
    let cdc = "arn:aws:iam::{account_id}:role/cdc/crl-cdc-sink-user-{cluster_id}";
    let (st, v) = set(json!({"roles": {"backup": backup, "changefeed": cdc}})).await;
    assert_eq!(st, 200, "{v}");
    let backup_arn = format!("arn:aws:iam::123456789012:role/crl-dr-store-user-{c}");
    let cdc_arn = format!("arn:aws:iam::{account}:role/cdc/crl-cdc-sink-user-{c}");
    assert_eq!(
        v,
        json!({"roles": {
            "backup": {"template": backup, "role_arn": backup_arn},
            "changefeed": {"template": cdc, "role_arn": cdc_arn},
        }})
    );
    assert_eq!(s.ok(Method::GET, &path, None).await, v);
    let cluster = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}"), None)
        .await;
    assert_eq!(
        cluster["credential_roles"],
        json!({"backup": backup_arn, "changefeed": cdc_arn}),
        "{cluster}"
    );
    let listed = s.ok(Method::GET, "/api/v1/clusters", None).await;
    let mine = listed["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == c.as_str())
        .unwrap();
    assert_eq!(mine["credential_roles"]["backup"], backup_arn.as_str());

    // Refusals name the purpose and leave the set as it was.
    let refusals = [
        (
            json!({"roles": {"backup": "arn:aws:iam::123456789012:user/x-{cluster_id}"}}),
            "roles.backup",
            "not an IAM role ARN",
        ),
        (
            json!({"roles": {"backup": "arn:aws:iam::123456789012:role/x-{cluster}"}}),
            "roles.backup",
            "unknown placeholder {cluster}",
        ),
        (
            json!({"roles": {"changefeed": "arn:aws:iam::123456789012:role/x-{cluster_id"}}),
            "roles.changefeed",
            "unmatched '{'",
        ),
        (
            json!({"roles": {"changefeed": "arn:aws:iam::123456789012:role/x-}"}}),
            "roles.changefeed",
            "unmatched '}'",
        ),
        (
            json!({"roles": {"Backup": backup}}),
            "roles.Backup",
            "a purpose is",
        ),
        (
            json!({"roles": {"back up": backup}}),
            "roles.back up",
            "a purpose is",
        ),
        (json!({"roles": {"backup": ""}}), "roles.backup", "empty"),
        (
            json!({"roles": {"backup": "arn:aws:iam::123456789012:role/crl-disaster-recovery-stores-{cluster_id}"}}),
            "roles.backup",
            "at most 64",
        ),
        (
            json!({"roles": {"backup": 7}}),
            "roles.backup",
            "invalid type",
        ),
        (json!({"roles": {}, "extra": 1}), "extra", "unknown field"),
    ];
    for (body, field, needle) in refusals {
        let (st, v) = set(body.clone()).await;
        assert_eq!(st, 400, "{body} should be 400: {v}");
        assert_eq!(v["code"], 3, "{v}");
        assert_eq!(field_of(&v), field, "{body}: {v}");
        let msg = v["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: {msg:?} should contain {needle:?}"
        );
    }
    let too_many: serde_json::Map<String, Value> = (0..33)
        .map(|i| (format!("p{i}"), Value::from(backup)))
        .collect();
    let (st, v) = set(json!({"roles": too_many})).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(field_of(&v), "roles");
    assert_eq!(
        s.ok(Method::GET, &path, None).await["roles"]["backup"]["role_arn"],
        backup_arn.as_str()
    );

    // A GCP cluster's account id is no AWS account: refused with the cluster's real identity.
    let gcp = s
        .ok(
            Method::POST,
            "/api/v1/clusters",
            Some(json!({"name": "roles-gcp", "provider": "GCP", "spec": {"dedicated": {"region_nodes": {"us-east1": 1}}}})),
        )
        .await;
    let gcp_path = format!(
        "/api/v1/clusters/{}/credential-roles",
        gcp["id"].as_str().unwrap()
    );
    let (st, v) = s
        .call(
            Method::PUT,
            &gcp_path,
            Some(&platform),
            Some(json!({"roles": {"changefeed": cdc}})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(field_of(&v), "roles.changefeed", "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("for this cluster"),
        "{v}"
    );
    let (st, v) = s
        .call(
            Method::PUT,
            &gcp_path,
            Some(&platform),
            Some(json!({"roles": {"backup": backup}})),
        )
        .await;
    assert_eq!(st, 200, "a fixed account fits any cluster: {v}");

    // PUT replaces the whole set; a purpose beyond the well-known two is accepted.
    let export = "arn:aws:iam::123456789012:role/export-{cluster_id}";
    let (st, v) = set(json!({"roles": {"export": export}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"roles": {"export": {"template": export, "role_arn": format!("arn:aws:iam::123456789012:role/export-{c}")}}})
    );

    // Readers of the cluster read them; the platform alone sets them.
    let (_, reader) = s
        .key_with(
            "cr-reader",
            json!([{"name": "CLUSTER_DEVELOPER", "resource": {"type": "CLUSTER", "id": c}}]),
        )
        .await;
    let (st, v) = s.call(Method::GET, &path, Some(&reader), None).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["roles"]["export"]["role_arn"].is_string(), "{v}");
    let (st, v) = s.call(Method::GET, &gcp_path, Some(&reader), None).await;
    assert_eq!(st, 403, "another cluster: {v}");
    let clear = Some(json!({"roles": {}}));
    let (st, v) = s
        .call(Method::PUT, &path, Some(&reader), clear.clone())
        .await;
    assert_eq!(st, 403, "{v}");
    // The bootstrap admin holds PLATFORM_OPERATOR too.
    let (st, v) = s.admin(Method::PUT, &path, clear).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"roles": {}}), "an empty map clears them");
    let cluster = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}"), None)
        .await;
    assert_eq!(cluster["credential_roles"], json!({}));

    let (sets, audit) = audit_entries(s, "AUDIT_LOG_ACTION_SET_CREDENTIAL_ROLES").await;
    assert_eq!(sets, 4, "one entry per accepted write: {audit}");

    // Deleted with the cluster: the route answers 404 and the deleted cluster shows none.
    set(json!({"roles": {"backup": backup}})).await;
    s.ok(Method::DELETE, &format!("/api/v1/clusters/{c}"), None)
        .await;
    let (st, v) = s.admin(Method::GET, &path, None).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = set(json!({"roles": {"backup": backup}})).await;
    assert_eq!(st, 404, "{v}");
    let cluster = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}"), None)
        .await;
    assert_eq!(cluster["state"], "DELETED");
    assert_eq!(cluster["credential_roles"], json!({}), "{cluster}");
}

/// The certificate of a PEM, parsed.
fn parse_pem_certificate(pem: &str) -> Vec<u8> {
    let block = pem::parse(pem).unwrap_or_else(|e| panic!("not PEM: {e}: {pem}"));
    assert_eq!(block.tag(), "CERTIFICATE");
    block.contents().to_vec()
}

/// TLS inspection: off at first (no CA, ca.pem 404); the first enable generates the cluster's
/// CA (a P-256 CA with the cluster's name), which turning off and on again keeps; the
/// never-inspect patterns are checked one by one; the CA key is sealed in the store; every
/// change is audited, bumps the policy version and propagates; the setting goes with the
/// cluster.
async fn tls_inspection(s: &TestServer) {
    use x509_parser::prelude::*;
    let c = s.create_cluster("inspect-1", json!({"us-east-1": 1})).await;
    let path = format!("/api/v1/clusters/{c}/networking/tls-inspection");
    let ca_path = format!("{path}/ca.pem");
    assert_eq!(
        s.ok(Method::GET, &path, None).await,
        json!({"enabled": false, "never_inspect": [], "ca_certificate": "", "ca_fingerprint_sha256": "", "propagating": false})
    );
    let (st, v) = s.admin(Method::GET, &ca_path, None).await;
    assert_eq!(st, 404, "no CA before the first enable: {v}");
    assert_eq!(v["code"], 5, "the API's error shape: {v}");
    assert!(
        v["message"].as_str().unwrap().contains("never enabled"),
        "{v}"
    );

    // Each pattern is checked, named by its index; at most 100.
    expect_invalid(
        s,
        Method::PUT,
        &path,
        json!({"enabled": true, "never_inspect": ["pinned.example.com", "not a host"]}),
        "never_inspect[1]",
        "never_inspect[1]",
    )
    .await;
    let many: Vec<String> = (0..101).map(|i| format!("h{i}.example.com")).collect();
    expect_invalid(
        s,
        Method::PUT,
        &path,
        json!({"enabled": true, "never_inspect": many}),
        "never_inspect",
        "at most 100",
    )
    .await;
    let (st, v) = s
        .admin(
            Method::PUT,
            &path,
            Some(json!({"enabled": true, "extra": 1})),
        )
        .await;
    assert_eq!(st, 400, "unknown fields are refused: {v}");
    assert_eq!(
        s.ok(Method::GET, &path, None).await["ca_certificate"],
        "",
        "refused requests generate nothing"
    );

    let before = s.store.policy_version_of(&c).await.unwrap().unwrap().0;
    let on = s
        .ok(
            Method::PUT,
            &path,
            Some(
                json!({"enabled": true, "never_inspect": ["pinned.example.com", "*.bank.example"]}),
            ),
        )
        .await;
    assert!(
        s.store.policy_version_of(&c).await.unwrap().unwrap().0 > before,
        "a change the gateways get"
    );
    assert_eq!(on["enabled"], true);
    assert_eq!(
        on["never_inspect"],
        json!(["pinned.example.com", "*.bank.example"])
    );
    assert_eq!(on["propagating"], true, "no gateway applied it yet: {on}");
    let pem = on["ca_certificate"].as_str().unwrap().to_string();
    let fingerprint = on["ca_fingerprint_sha256"].as_str().unwrap().to_string();
    assert_eq!(s.ok(Method::GET, &path, None).await, on);

    // ca.pem: the certificate alone, a CA named for the cluster.
    let resp = s
        .http
        .get(s.url(&ca_path))
        .bearer_auth(&s.admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-pem-file");
    let body = resp.text().await.unwrap();
    assert_eq!(body, pem);
    let der = parse_pem_certificate(&body);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(
        cert.subject()
            .to_string()
            .contains(&format!("CN=Perimeter inspection CA {c}")),
        "{}",
        cert.subject()
    );
    assert!(cert.subject().to_string().contains("O=Perimeter"));
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint == Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    use sha2::Digest;
    let want: Vec<String> = sha2::Sha256::digest(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    assert_eq!(fingerprint, want.join(":"));
    // And openssl agrees that it is a CA, where it is installed.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ca.pem");
    std::fs::write(&file, &body).unwrap();
    if let Ok(out) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&file)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
        assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
        assert!(text.contains("prime256v1"), "{text}");
    }

    // The key is sealed in the store: never the PEM, and bound to this cluster.
    let row = s.store.get_tls_inspection(&c).await.unwrap().unwrap();
    assert!(!row.ca_key_sealed.is_empty());
    assert!(
        !row.ca_key_sealed.contains("PRIVATE KEY"),
        "sealed, not PEM"
    );
    assert!(!row.ca_key_sealed.contains("BEGIN"));
    assert_eq!(row.ca_certificate, pem);

    // Off and on again: the same CA.
    let off = s
        .ok(Method::PUT, &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(off["enabled"], false);
    assert_eq!(off["never_inspect"], json!([]), "absent means none");
    assert_eq!(
        off["ca_fingerprint_sha256"],
        fingerprint.as_str(),
        "kept while off"
    );
    let (st, _) = s.admin(Method::GET, &ca_path, None).await;
    assert_eq!(st, 200, "the CA stays downloadable while off");
    let again = s
        .ok(Method::PUT, &path, Some(json!({"enabled": true})))
        .await;
    assert_eq!(again["ca_fingerprint_sha256"], fingerprint.as_str());
    assert_eq!(again["ca_certificate"], pem.as_str());
    assert_eq!(
        s.store
            .get_tls_inspection(&c)
            .await
            .unwrap()
            .unwrap()
            .ca_key_sealed,
        row.ca_key_sealed,
        "the same sealed key"
    );

    // Another cluster gets a CA of its own.
    let c2 = s.create_cluster("inspect-2", json!({"us-east-1": 1})).await;
    let other = s
        .ok(
            Method::PUT,
            &format!("/api/v1/clusters/{c2}/networking/tls-inspection"),
            Some(json!({"enabled": true})),
        )
        .await;
    assert_ne!(other["ca_fingerprint_sha256"], fingerprint.as_str());

    // Whoever may read the cluster reads it; cluster admins and org admins change it.
    let (_, dev) = s
        .key_with(
            "tls-dev",
            json!([{"name": "CLUSTER_DEVELOPER", "resource": {"type": "CLUSTER", "id": c}}]),
        )
        .await;
    let (st, v) = s.call(Method::GET, &path, Some(&dev), None).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s.call(Method::GET, &ca_path, Some(&dev), None).await;
    assert_eq!(st, 200);
    let (st, v) = s
        .call(
            Method::PUT,
            &path,
            Some(&dev),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(st, 403, "{v}");

    let (sets, audit) = audit_entries(s, "AUDIT_LOG_ACTION_SET_TLS_INSPECTION").await;
    assert_eq!(sets, 4, "one entry per accepted change: {audit}");

    // Gone with the cluster.
    s.ok(Method::DELETE, &format!("/api/v1/clusters/{c}"), None)
        .await;
    let (st, v) = s.admin(Method::GET, &path, None).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = s.admin(Method::GET, &ca_path, None).await;
    assert_eq!(st, 404, "{v}");
}

on_both_backends!(
    tls_inspection,
    credential_roles,
    ingress_check,
    workload_addresses,
    clusters_happy_path,
    egress_rules_happy_path,
    traffic_policy,
    allowlist_happy_path,
    identity_and_audit,
    authentication,
    body_over_the_cap_is_413,
    query_rejections_use_the_error_shape,
    validation_errors,
    pagination_three_pages,
);
