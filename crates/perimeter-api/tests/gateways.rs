//! The control plane's side of gateways: tokens, the snapshot long-poll, and acknowledgements
//! turned into rule, policy and allowlist states. Gateways are played here by HTTP clients
//! speaking the gateway protocol; the gateway process has its own end-to-end tests.

mod common;

use std::time::{Duration, Instant};

use common::{Gw, TestServer, register, sync};
use reqwest::Method;
use serde_json::{Value, json};

async fn rule_state(s: &TestServer, cluster: &str, id: &str) -> String {
    let (st, v) = s
        .admin(
            Method::GET,
            &format!("/api/v1/clusters/{cluster}/networking/egress-rules/{id}"),
            None,
        )
        .await;
    if st == 404 {
        return "GONE".into();
    }
    v["rule"]["state"].as_str().unwrap().to_string()
}

async fn wait_state(s: &TestServer, cluster: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = rule_state(s, cluster, id).await;
        if st == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rule {id} stayed {st}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn propagation_to_states(s: &TestServer) {
    let c = s
        .create_cluster("gw-cluster", json!({"us-east-1": 3}))
        .await;
    let mut g1 = register(s, &c, "gw-1").await;
    let mut g2 = register(s, &c, "gw-2").await;
    let doc = sync(s, &mut g1).await;
    assert_eq!(doc["traffic_policy"], "ALLOW_ALL");
    assert_eq!(doc["cluster_id"], c.as_str());
    sync(s, &mut g2).await;
    let base = format!("/api/v1/clusters/{c}/networking/egress-rules");
    let r = s.ok(Method::POST, &base, Some(json!({"name": "s3", "type": "FQDN", "destination": "*.s3.amazonaws.example", "ports": [443], "description": ""}))).await;
    let rid = r["Rule"]["id"].as_str().unwrap().to_string();
    assert_eq!(r["Rule"]["state"], "PENDING_CREATION");
    let doc = sync(s, &mut g1).await;
    assert_eq!(doc["rules"][0]["destination"], "*.s3.amazonaws.example");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rule_state(s, &c, &rid).await,
        "PENDING_CREATION",
        "one of two gateways applied it"
    );
    sync(s, &mut g2).await;
    wait_state(s, &c, &rid, "ACTIVE").await;
    // The traffic policy and the allowlist settle the same way.
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c}/networking/egress-rules/egress-traffic-policy"),
        Some(json!({"allow_all": false})),
    )
    .await;
    let doc = sync(s, &mut g1).await;
    assert_eq!(doc["traffic_policy"], "DEFAULT_DENY");
    sync(s, &mut g2).await;
    s.wait_for(
        &format!("/api/v1/clusters/{c}"),
        10,
        "the policy to settle",
        |v| v["egress_traffic_policy"] == "DEFAULT_DENY",
    )
    .await;
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c}/networking/allowlist"),
        Some(json!({"cidr_ip": "203.0.113.0", "cidr_mask": 24, "sql": true, "ui": false})),
    )
    .await;
    // The allowlist travels in the snapshot; until every live gateway applied the one that
    // carries the change, it is still propagating.
    let doc = sync(s, &mut g1).await;
    assert_eq!(
        doc["ingress"]["allowlist"],
        json!([{"cidr": "203.0.113.0/24", "name": "", "sql": true, "ui": false}])
    );
    let allowlist = format!("/api/v1/clusters/{c}/networking/allowlist");
    // Give the reconciler passes to (wrongly) settle it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.ok(Method::GET, &allowlist, None).await["propagating"],
        true,
        "one of two live gateways applied it"
    );
    sync(s, &mut g2).await;
    s.wait_for(&allowlist, 10, "the allowlist to stop propagating", |v| {
        v["propagating"] == false
    })
    .await;
    // A PATCH is a change like any other.
    s.ok(
        Method::PATCH,
        &format!("{allowlist}/203.0.113.0/24"),
        Some(json!({"ui": true})),
    )
    .await;
    assert_eq!(
        s.ok(Method::GET, &allowlist, None).await["propagating"],
        true
    );
    let doc = sync(s, &mut g2).await;
    assert_eq!(doc["ingress"]["allowlist"][0]["ui"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.ok(Method::GET, &allowlist, None).await["propagating"],
        true
    );
    sync(s, &mut g1).await;
    s.wait_for(
        &format!("/api/v1/clusters/{c}/networking/allowlist"),
        10,
        "the allowlist to stop propagating",
        |v| v["propagating"] == false,
    )
    .await;
    // One gateway stops acknowledging: a new rule stays pending, then INCONSISTENT past the deadline.
    let r2 = s.ok(Method::POST, &base, Some(json!({"name": "kafka", "type": "CIDR", "destination": "198.51.100.0/24", "ports": [9092], "description": ""}))).await;
    let r2id = r2["Rule"]["id"].as_str().unwrap().to_string();
    sync(s, &mut g1).await;
    assert_eq!(rule_state(s, &c, &r2id).await, "PENDING_CREATION");
    wait_state(s, &c, &r2id, "INCONSISTENT").await;
    // The laggard catches up: ACTIVE.
    sync(s, &mut g2).await;
    wait_state(s, &c, &r2id, "ACTIVE").await;
    // Deletion of an applied rule waits for every gateway, then the rule is gone.
    let d = s.ok(Method::DELETE, &format!("{base}/{rid}"), None).await;
    assert_eq!(d["Rule"]["state"], "PENDING_DELETION");
    let doc = sync(s, &mut g1).await;
    assert!(
        doc["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != rid.as_str()),
        "a rule being deleted is not in new snapshots"
    );
    assert_eq!(rule_state(s, &c, &rid).await, "PENDING_DELETION");
    sync(s, &mut g2).await;
    wait_state(s, &c, &rid, "GONE").await;
    // What the control plane knows of each gateway.
    let list = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}/gateways"), None)
        .await;
    let gws = list["gateways"].as_array().unwrap();
    assert_eq!(gws.len(), 2);
    assert!(
        gws.iter()
            .all(|g| g["live"] == true && g["applied_version"].as_u64().unwrap() == g1.version)
    );
    // A failed application is reported with its error, and only goes forward: the next
    // version, delivered (polled) but not applied.
    s.ok(Method::POST, &format!("/api/v1/clusters/{c}/networking/egress-rules"), Some(json!({"name": "next", "type": "FQDN", "destination": "next.example.com", "ports": [443], "description": ""}))).await;
    let (st, next) = s
        .call(
            Method::GET,
            &format!(
                "/api/v1/gateway/snapshot?after_version={}&wait_seconds=5",
                g1.version
            ),
            Some(&g1.token),
            None,
        )
        .await;
    assert_eq!(st, 200, "{next}");
    let failed = next["document"]["version"]
        .as_u64()
        .expect("a newer document");
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/gateway/ack",
            Some(&g1.token),
            Some(json!({"version": failed, "applied": false, "error": "disk full"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["last_error"], "disk full");
    assert_eq!(v["applied_version"], g1.version);
    let _ = g2.id;
}

async fn long_poll_and_tokens(s: &TestServer) {
    let c = s
        .create_cluster("poll-cluster", json!({"us-east-1": 1}))
        .await;
    let mut g = register(s, &c, "poller").await;
    sync(s, &mut g).await;
    // Nothing newer: the wait ends with document null.
    let t = Instant::now();
    let (st, v) = s
        .call(
            Method::GET,
            &format!(
                "/api/v1/gateway/snapshot?after_version={}&wait_seconds=1",
                g.version
            ),
            Some(&g.token),
            None,
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["document"], Value::Null);
    assert!(t.elapsed() >= Duration::from_millis(900));
    // Every answer, with a document or without, names the asking gateway's registration.
    assert_eq!(
        v["gateway"],
        json!({"id": g.id, "cluster_id": c, "name": "poller", "region": "us-east-1"}),
        "{v}"
    );
    // A change wakes a waiting poll at once.
    let poll = {
        let http = s.http.clone();
        let url = s.url(&format!(
            "/api/v1/gateway/snapshot?after_version={}&wait_seconds=20",
            g.version
        ));
        let token = g.token.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let v: Value = http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (t.elapsed(), v)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.ok(Method::POST, &format!("/api/v1/clusters/{c}/networking/egress-rules"), Some(json!({"name": "wake", "type": "FQDN", "destination": "wake.example.com", "ports": [443], "description": ""}))).await;
    let (elapsed, v) = poll.await.unwrap();
    assert!(v["document"].is_object(), "{v}");
    assert!(
        elapsed < Duration::from_secs(3),
        "the change woke the poll after {elapsed:?}"
    );
    // Tokens are not API keys and API keys are not tokens.
    let (st, _) = s
        .call(Method::GET, "/api/v1/clusters", Some(&g.token), None)
        .await;
    assert_eq!(st, 401);
    let (st, _) = s
        .call(
            Method::GET,
            "/api/v1/gateway/snapshot",
            Some(&s.admin.clone()),
            None,
        )
        .await;
    assert_eq!(st, 401);
    let mut forged = g.token.clone();
    forged.push('x');
    let (st, _) = s
        .call(Method::GET, "/api/v1/gateway/snapshot", Some(&forged), None)
        .await;
    assert_eq!(st, 401);
    let (st, _) = s
        .call(
            Method::POST,
            "/api/v1/gateway/ack",
            Some(&g.token),
            Some(json!({"version": 1, "applied": false})),
        )
        .await;
    assert_eq!(st, 400, "a failure must say why");
    // Deregistering revokes the token.
    s.ok(
        Method::DELETE,
        &format!("/api/v1/clusters/{c}/gateways/{}", g.id),
        None,
    )
    .await;
    let (st, _) = s
        .call(
            Method::GET,
            "/api/v1/gateway/snapshot",
            Some(&g.token),
            None,
        )
        .await;
    assert_eq!(st, 401);
    let (st, v) = s
        .admin(
            Method::POST,
            &format!("/api/v1/clusters/{c}/gateways"),
            Some(json!({"region": "eu-west-1", "name": "x"})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
}

async fn decisions_are_aggregated(s: &TestServer) {
    let c = s
        .create_cluster("dec-cluster", json!({"us-east-1": 1}))
        .await;
    let g = register(s, &c, "counter").await;
    let push = |count: u64, last: &str| {
        json!({"decisions": [
            {"destination": "api.example.com", "port": 443, "verdict": "WOULD_DENY", "reason": "no_rule_for_destination", "count": count, "bytes": 10 * count, "first_seen": "2026-11-23T10:00:00.000000Z", "last_seen": last},
            {"destination": "s3.example.com", "port": 443, "verdict": "ALLOWED", "rule_name": "s3", "reason": "allowed_by_rule", "count": 1, "bytes": 5, "first_seen": "2026-11-23T10:00:00.000000Z", "last_seen": last},
        ]})
    };
    for (n, last) in [
        (3, "2026-11-23T10:01:00.000000Z"),
        (4, "2026-11-23T10:02:00.000000Z"),
    ] {
        let (st, v) = s
            .call(
                Method::POST,
                "/api/v1/gateway/decisions",
                Some(&g.token),
                Some(push(n, last)),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let v = s
        .ok(
            Method::GET,
            &format!("/api/v1/clusters/{c}/networking/egress-decisions?verdict=WOULD_DENY"),
            None,
        )
        .await;
    let d = v["decisions"].as_array().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["count"], 7);
    assert_eq!(d[0]["bytes"], 70);
    assert_eq!(d[0]["last_seen"], "2026-11-23T10:02:00.000000Z");
    let all = s
        .ok(
            Method::GET,
            &format!("/api/v1/clusters/{c}/networking/egress-decisions"),
            None,
        )
        .await;
    assert_eq!(all["decisions"].as_array().unwrap().len(), 2);
    let (st, _) = s
        .admin(
            Method::GET,
            &format!("/api/v1/clusters/{c}/networking/egress-decisions?verdict=MAYBE"),
            None,
        )
        .await;
    assert_eq!(st, 400);
    // A verdict other than the three refuses the whole push, naming the field.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/gateway/decisions",
            Some(&g.token),
            Some(json!({"decisions": [
                {"destination": "new.example.com", "port": 443, "verdict": "ALLOWED", "reason": "allowed_by_rule", "count": 1, "first_seen": "2026-11-23T10:03:00.000000Z", "last_seen": "2026-11-23T10:03:00.000000Z"},
                {"destination": "new.example.com", "port": 80, "verdict": "allowed", "reason": "allowed_by_rule", "count": 1, "first_seen": "2026-11-23T10:03:00.000000Z", "last_seen": "2026-11-23T10:03:00.000000Z"},
            ]})),
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let field = v["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .map(|d| d["field_violations"][0]["field"].clone());
    assert_eq!(field, Some(json!("decisions[1].verdict")), "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("verdict must be ALLOWED, DENIED or WOULD_DENY"),
        "{v}"
    );
    let all = s
        .ok(
            Method::GET,
            &format!("/api/v1/clusters/{c}/networking/egress-decisions"),
            None,
        )
        .await;
    assert_eq!(all["decisions"].as_array().unwrap().len(), 2, "{all}");
}

async fn egress_check_answers(s: &TestServer) {
    let c = s
        .create_cluster("check-cluster", json!({"us-east-1": 1}))
        .await;
    let rules = format!("/api/v1/clusters/{c}/networking/egress-rules");
    let check = format!("/api/v1/clusters/{c}/networking/egress-check");
    for body in [
        json!({"name": "exact", "type": "FQDN", "destination": "api.example.com", "ports": [443], "description": ""}),
        json!({"name": "wild", "type": "FQDN", "destination": "*.storage.example.com", "ports": [443], "description": ""}),
        json!({"name": "paths", "type": "FQDN", "destination": "repo.example.com", "ports": [80, 443], "paths": ["/releases/*"], "description": ""}),
        json!({"name": "brokers", "type": "CIDR", "destination": "198.51.100.0/24", "ports": [9092], "description": ""}),
    ] {
        s.ok(Method::POST, &rules, Some(body)).await;
    }
    let ask = |dest: &str, port: u16, path: Option<&str>| {
        let mut b = json!({"destination": dest, "port": port});
        if let Some(p) = path {
            b["path"] = json!(p);
        }
        b
    };
    // Under ALLOW_ALL (the default): allowed, but would default-deny allow it?
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("unknown.example.org", 443, None)),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["would_allow_under_default_deny"], false, "{v}");
    // The address guard holds under ALLOW_ALL.
    let v = s
        .ok(Method::POST, &check, Some(ask("169.254.169.254", 80, None)))
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    assert!(
        v["reason"].as_str().unwrap().contains("special_address")
            || v["reason"].as_str().unwrap().contains("metadata"),
        "{v}"
    );
    s.ok(
        Method::POST,
        &format!("/api/v1/clusters/{c}/networking/egress-rules/egress-traffic-policy"),
        Some(json!({"allow_all": false})),
    )
    .await;
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("API.Example.COM.", 443, None)),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["rule"]["name"], "exact");
    assert_eq!(v["reason"], "allowed_by_rule");
    assert!(v["snapshot_version"].as_u64().unwrap() > 0);
    let v = s
        .ok(Method::POST, &check, Some(ask("api.example.com", 80, None)))
        .await;
    assert_eq!(v["allowed"], false, "wrong port: {v}");
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("eu.storage.example.com", 443, None)),
        )
        .await;
    assert_eq!(v["rule"]["name"], "wild");
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("storage.example.com", 443, None)),
        )
        .await;
    assert_eq!(
        v["allowed"], false,
        "a wildcard does not cover its apex: {v}"
    );
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("repo.example.com", 443, None)),
        )
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reason"], "path_needs_tls_inspection");
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask(
                "repo.example.com",
                80,
                Some("/releases/v1/../v2/app.tgz"),
            )),
        )
        .await;
    assert_eq!(v["allowed"], true, "normalised path under the prefix: {v}");
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("repo.example.com", 80, Some("/releases/../admin"))),
        )
        .await;
    assert_eq!(
        v["allowed"], false,
        "dot-segments climbing out of the prefix: {v}"
    );
    let v = s
        .ok(Method::POST, &check, Some(ask("198.51.100.7", 9092, None)))
        .await;
    assert_eq!(v["rule"]["name"], "brokers");
    let v = s
        .ok(Method::POST, &check, Some(ask("127.0.0.1", 443, None)))
        .await;
    assert_eq!(v["allowed"], false);
    let (st, v) = s
        .admin(Method::POST, &check, Some(ask("0177.0.0.1", 443, None)))
        .await;
    assert_eq!(st, 400, "non-canonical IP spelling: {v}");
    let (st, _) = s
        .admin(Method::POST, &check, Some(ask("2130706433", 443, None)))
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .admin(Method::POST, &check, Some(ask("api.example.com", 0, None)))
        .await;
    assert_eq!(st, 400);
}

/// egress-check answers as an inspecting gateway does. A path is decided against the path
/// rules whether inspection is on or off (plain HTTP shows its path; with inspection off a
/// warning says HTTPS is refused); without a path, a destination only path rules allow is
/// `path_needs_tls_inspection`. Once the cluster inspects, a destination on its never-inspect
/// list that only path rules allow is denied `path_rule_never_inspected` whatever the path,
/// as the gateways refuse its CONNECT; never-inspect changes nothing for rules without paths
/// nor under ALLOW_ALL.
async fn egress_check_under_tls_inspection(s: &TestServer) {
    let c = s
        .create_cluster("check-inspection", json!({"us-east-1": 1}))
        .await;
    let rules = format!("/api/v1/clusters/{c}/networking/egress-rules");
    let check = format!("/api/v1/clusters/{c}/networking/egress-check");
    let inspection = format!("/api/v1/clusters/{c}/networking/tls-inspection");
    let policy = format!("/api/v1/clusters/{c}/networking/egress-rules/egress-traffic-policy");
    // A live gateway applies each change, so that the next one is not refused while the cluster
    // is locked.
    let mut g = register(s, &c, "gw-check").await;
    let cluster = format!("/api/v1/clusters/{c}");
    for body in [
        json!({"name": "repo", "type": "FQDN", "destination": "repo.example.com", "ports": [80, 443], "paths": ["/releases/*"], "description": ""}),
        json!({"name": "pinned", "type": "FQDN", "destination": "pinned.example.com", "ports": [443], "paths": ["/api/*"], "description": ""}),
        json!({"name": "bank", "type": "FQDN", "destination": "*.bank.example", "ports": [443], "paths": ["/v1/*"], "description": ""}),
        json!({"name": "open", "type": "FQDN", "destination": "open.example.com", "ports": [443], "description": ""}),
    ] {
        s.ok(Method::POST, &rules, Some(body)).await;
    }
    s.ok(Method::POST, &policy, Some(json!({"allow_all": false})))
        .await;
    sync(s, &mut g).await;
    s.wait_for(&cluster, 10, "DEFAULT_DENY to settle", |v| {
        v["egress_traffic_policy"] == "DEFAULT_DENY"
    })
    .await;
    let ask = |dest: &str, path: Option<&str>| {
        let mut b = json!({"destination": dest, "port": 443});
        if let Some(p) = path {
            b["path"] = json!(p);
        }
        b
    };
    let inspection_warning = |v: &Value| {
        v["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find(|w| w.contains("inspect"))
            .map(str::to_string)
    };

    // Inspection off: paths decided by the path rules (today's answer, kept), with a warning
    // that HTTPS needs inspection; no path: path_needs_tls_inspection.
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("pinned.example.com", Some("/api/x"))),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["rule"]["name"], "pinned", "{v}");
    assert_eq!(v["reason"], "allowed_by_rule", "{v}");
    let w = inspection_warning(&v).expect("a warning about HTTPS");
    assert!(w.contains("path_needs_tls_inspection"), "{w}");
    let v = s
        .ok(Method::POST, &check, Some(ask("pinned.example.com", None)))
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reason"], "path_needs_tls_inspection", "{v}");

    let on = s
        .ok(
            Method::PUT,
            &inspection,
            Some(json!({"enabled": true,
                        "never_inspect": ["pinned.example.com", "*.bank.example", "open.example.com"]})),
        )
        .await;
    assert_eq!(on["enabled"], true, "{on}");
    sync(s, &mut g).await;
    s.wait_for(&inspection, 10, "inspection to settle", |v| {
        v["propagating"] == false
    })
    .await;

    // Inspecting: paths of inspected destinations are decided by their path rules.
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("repo.example.com", Some("/releases/v2/app.tgz"))),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["rule"]["name"], "repo", "{v}");
    assert_eq!(v["would_allow_under_default_deny"], true, "{v}");
    assert_eq!(inspection_warning(&v), None, "{v}");
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("repo.example.com", Some("/admin"))),
        )
        .await;
    assert_eq!(v["allowed"], false, "{v}");
    assert_eq!(v["reason"], "path_not_allowed", "{v}");
    let v = s
        .ok(Method::POST, &check, Some(ask("repo.example.com", None)))
        .await;
    assert_eq!(v["reason"], "path_needs_tls_inspection", "{v}");

    // Never inspected: denied whatever the path (one its rule allows, one it does not, none),
    // exact names and wildcard patterns alike, with no rule named and no address judged.
    for (dest, path) in [
        ("pinned.example.com", Some("/api/x")),
        ("pinned.example.com", Some("/other")),
        ("pinned.example.com", None),
        ("eu.bank.example", Some("/v1/accounts")),
    ] {
        let v = s.ok(Method::POST, &check, Some(ask(dest, path))).await;
        assert_eq!(v["allowed"], false, "{dest} {path:?}: {v}");
        assert_eq!(
            v["reason"], "path_rule_never_inspected",
            "{dest} {path:?}: {v}"
        );
        assert_eq!(v["rule"], Value::Null, "{dest} {path:?}: {v}");
        assert_eq!(v["addresses"], Value::Null, "{dest} {path:?}: {v}");
        assert_eq!(v["would_allow_under_default_deny"], false, "{v}");
        let w = inspection_warning(&v).expect("a warning about never-inspect");
        assert!(w.contains("never-inspect"), "{w}");
    }
    // A rule without paths needs no inspection: never-inspect changes nothing.
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("open.example.com", Some("/anything"))),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["rule"]["name"], "open", "{v}");
    // Under ALLOW_ALL nothing is inspected (the gateways splice the tunnel): allowed, but
    // DEFAULT_DENY would refuse it at the CONNECT.
    s.ok(Method::POST, &policy, Some(json!({"allow_all": true})))
        .await;
    sync(s, &mut g).await;
    s.wait_for(&cluster, 10, "ALLOW_ALL to settle", |v| {
        v["egress_traffic_policy"] == "ALLOW_ALL"
    })
    .await;
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("pinned.example.com", Some("/api/x"))),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["would_allow_under_default_deny"], false, "{v}");
    s.ok(Method::POST, &policy, Some(json!({"allow_all": false})))
        .await;
    sync(s, &mut g).await;
    s.wait_for(&cluster, 10, "DEFAULT_DENY to settle", |v| {
        v["egress_traffic_policy"] == "DEFAULT_DENY"
    })
    .await;

    // Off again: the path rule decides as before.
    s.ok(Method::PUT, &inspection, Some(json!({"enabled": false})))
        .await;
    let v = s
        .ok(
            Method::POST,
            &check,
            Some(ask("pinned.example.com", Some("/api/x"))),
        )
        .await;
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["reason"], "allowed_by_rule", "{v}");
}

/// TLS inspection reaches the gateways: once on, the snapshot carries the cluster's CA and its
/// key (opened, and the certificate's own), and the setting stays `propagating` until every
/// live gateway applied it; once off, the snapshot carries none.
async fn tls_inspection_reaches_the_gateways(s: &TestServer) {
    use x509_parser::prelude::*;
    let c = s
        .create_cluster("inspect-gw", json!({"us-east-1": 1}))
        .await;
    let mut g1 = register(s, &c, "gw-1").await;
    let mut g2 = register(s, &c, "gw-2").await;
    let doc = sync(s, &mut g1).await;
    assert!(doc.get("tls_inspection").is_none(), "off by default: {doc}");
    sync(s, &mut g2).await;
    let path = format!("/api/v1/clusters/{c}/networking/tls-inspection");
    let on = s
        .ok(
            Method::PUT,
            &path,
            Some(json!({"enabled": true, "never_inspect": ["pinned.example.com"]})),
        )
        .await;
    assert_eq!(on["propagating"], true);
    let doc = sync(s, &mut g1).await;
    let t = &doc["tls_inspection"];
    assert_eq!(t["ca_certificate"], on["ca_certificate"], "{doc}");
    assert_eq!(t["never_inspect"], json!(["pinned.example.com"]));
    let key_pem = t["ca_key"].as_str().unwrap();
    assert!(
        key_pem.contains("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM"
    );
    // The key is the certificate's.
    let cert_pem = ::pem::parse(t["ca_certificate"].as_str().unwrap()).unwrap();
    let (_, cert) = X509Certificate::from_der(cert_pem.contents()).unwrap();
    let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref(),
        "the key matches the certificate"
    );
    let document: perimeter_policy::PolicyDocument = serde_json::from_value(doc.clone()).unwrap();
    perimeter_policy::compile(&document).expect("the gateways compile it");
    // Until the second live gateway applied it, still propagating.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.ok(Method::GET, &path, None).await["propagating"],
        true,
        "one of two live gateways applied it"
    );
    sync(s, &mut g2).await;
    s.wait_for(&path, 10, "TLS inspection to stop propagating", |v| {
        v["propagating"] == false
    })
    .await;
    // Off: the next snapshot carries none.
    s.ok(Method::PUT, &path, Some(json!({"enabled": false})))
        .await;
    let doc = sync(s, &mut g1).await;
    assert!(doc.get("tls_inspection").is_none(), "off again: {doc}");
    sync(s, &mut g2).await;
    s.wait_for(&path, 10, "TLS inspection to stop propagating", |v| {
        v["propagating"] == false
    })
    .await;
}

/// Issue 14, finding 3: a gateway acknowledges only versions it was given. A fresh gateway's
/// `{"version": 1000000, "applied": true}` used to turn rules ACTIVE though nothing had been
/// delivered.
async fn acks_name_only_delivered_versions(s: &TestServer) {
    let c = s
        .create_cluster("ack-cluster", json!({"us-east-1": 1}))
        .await;
    let mut g = register(s, &c, "forger").await;
    let rule = s
        .ok(
            Method::POST,
            &format!("/api/v1/clusters/{c}/networking/egress-rules"),
            Some(json!({"name": "r", "type": "FQDN", "destination": "a.example.com", "ports": [443], "description": ""})),
        )
        .await;
    let id = rule["Rule"]["id"].as_str().unwrap().to_string();
    for version in [1_000_000u64, 1, 0] {
        let (st, v) = s
            .call(
                Method::POST,
                "/api/v1/gateway/ack",
                Some(&g.token),
                Some(json!({"version": version, "applied": true})),
            )
            .await;
        assert_eq!(st, 400, "version {version} was never delivered: {v}");
        assert_eq!(
            v["details"][0]["field_violations"][0]["field"], "version",
            "{v}"
        );
    }
    // Nothing was acknowledged: the rule stays PENDING_CREATION, the gateway applied nothing.
    assert_eq!(rule_state(s, &c, &id).await, "PENDING_CREATION");
    let gws = s
        .ok(Method::GET, &format!("/api/v1/clusters/{c}/gateways"), None)
        .await;
    assert_eq!(gws["gateways"][0]["applied_version"], 0, "{gws}");
    // Once delivered, the version (and any earlier one) can be acknowledged.
    sync(s, &mut g).await;
    wait_state(s, &c, &id, "ACTIVE").await;
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/gateway/ack",
            Some(&g.token),
            Some(json!({"version": g.version + 1, "applied": true})),
        )
        .await;
    assert_eq!(st, 400, "one past the delivered version: {v}");
}

/// Issue 14, finding 4: counts and bytes near `i64::MAX`, pushed twice, saturate instead of
/// overflowing (an i64/REAL mismatch in SQLite's sum, an error in PostgreSQL's) and breaking
/// the cluster's decisions list for good.
async fn oversized_decision_counts_saturate(s: &TestServer) {
    let c = s
        .create_cluster("huge-counts", json!({"us-east-1": 1}))
        .await;
    let g = register(s, &c, "pusher").await;
    let huge = u64::MAX - 5;
    for _ in 0..2 {
        let (st, v) = s
            .call(
                Method::POST,
                "/api/v1/gateway/decisions",
                Some(&g.token),
                Some(json!({"decisions": [
                    {"destination": "x.example.com", "port": 443, "verdict": "DENIED", "reason": "no_rule_for_destination",
                     "count": huge, "bytes": huge, "first_seen": "2026-11-23T10:00:00.000000Z", "last_seen": "2026-11-23T10:00:00.000000Z"},
                ]})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    for _ in 0..2 {
        let v = s
            .ok(
                Method::GET,
                &format!("/api/v1/clusters/{c}/networking/egress-decisions"),
                None,
            )
            .await;
        assert_eq!(v["decisions"][0]["count"], i64::MAX, "{v}");
        assert_eq!(v["decisions"][0]["bytes"], i64::MAX, "{v}");
    }
}

/// Issue 14, finding 5: deleting a gateway or its cluster ends the open long-poll with 401
/// (never the next snapshot) and refuses its token on every route at once.
async fn deleted_gateways_and_clusters_revoke_tokens(s: &TestServer) {
    let open_poll = |s: &TestServer, g: &Gw| {
        let http = s.http.clone();
        let url = s.url(&format!(
            "/api/v1/gateway/snapshot?after_version={}&wait_seconds=20",
            g.version
        ));
        let token = g.token.clone();
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    for deleted in ["gateway", "cluster"] {
        let c = s
            .create_cluster(&format!("revoke-{deleted}"), json!({"us-east-1": 1}))
            .await;
        let mut g = register(s, &c, "doomed").await;
        sync(s, &mut g).await;
        let poll = open_poll(s, &g);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let path = match deleted {
            "gateway" => format!("/api/v1/clusters/{c}/gateways/{}", g.id),
            _ => format!("/api/v1/clusters/{c}"),
        };
        s.ok(Method::DELETE, &path, None).await;
        if deleted == "gateway" {
            // A change after the deletion must not reach the deleted gateway's poll.
            s.ok(Method::POST, &format!("/api/v1/clusters/{c}/networking/egress-rules"), Some(json!({"name": "after", "type": "FQDN", "destination": "after.example.com", "ports": [443], "description": ""}))).await;
        }
        let (status, v) = tokio::time::timeout(Duration::from_secs(10), poll)
            .await
            .expect("the open poll ends at once")
            .unwrap();
        assert_eq!(
            status, 401,
            "the open poll after deleting the {deleted}: {v}"
        );
        for (method, route, body) in [
            (Method::GET, "/api/v1/gateway/snapshot", None),
            (
                Method::POST,
                "/api/v1/gateway/ack",
                Some(json!({"version": g.version, "applied": true})),
            ),
            (
                Method::POST,
                "/api/v1/gateway/decisions",
                Some(json!({"decisions": []})),
            ),
        ] {
            let (st, v) = s.call(method, route, Some(&g.token), body).await;
            assert_eq!(st, 401, "{route} after deleting the {deleted}: {v}");
        }
    }
}

on_both_backends!(
    acks_name_only_delivered_versions,
    oversized_decision_counts_saturate,
    deleted_gateways_and_clusters_revoke_tokens,
    tls_inspection_reaches_the_gateways,
    propagation_to_states,
    long_poll_and_tokens,
    decisions_are_aggregated,
    egress_check_answers,
    egress_check_under_tls_inspection
);
