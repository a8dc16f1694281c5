//! The control plane's REST API, called with curl as an operator would, and the calls tests
//! make often: clusters, gateway tokens, traffic policies and egress rules.

use serde_json::{Value, json};

use crate::curl::curl;
use crate::serve::Server;
use crate::wait::wait_until;

pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// An API call with the admin key: (status, body).
pub fn api(s: &Server, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let url = format!("{}{path}", s.url);
    let auth = format!("Authorization: Bearer {key}");
    let mut args = vec![
        "-X",
        method,
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
    ];
    let text;
    if let Some(b) = body {
        text = b.to_string();
        args.extend(["-d", text.as_str()]);
    }
    args.push(&url);
    curl(&args)
}

/// An API call that must succeed; its JSON body.
pub fn ok(s: &Server, key: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (st, b) = api(s, key, method, path, body);
    assert!((200..300).contains(&st), "{method} {path}: {st} {b}");
    json(&b)
}

/// Create a cluster with one node in each of `regions`; its id.
pub fn create_cluster(s: &Server, key: &str, name: &str, regions: &[&str]) -> String {
    let nodes: serde_json::Map<String, Value> =
        regions.iter().map(|r| (r.to_string(), json!(1))).collect();
    let c = ok(
        s,
        key,
        "POST",
        "/api/v1/clusters",
        Some(
            json!({"name": name, "provider": "AWS", "spec": {"dedicated": {"region_nodes": nodes}}}),
        ),
    );
    c["id"].as_str().unwrap().to_string()
}

/// Register a gateway of the cluster in `region`; its token.
pub fn gateway_token(s: &Server, key: &str, cid: &str, region: &str, name: &str) -> String {
    let g = ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/gateways"),
        Some(json!({"region": region, "name": name})),
    );
    g["token"].as_str().unwrap().to_string()
}

/// The cluster's gateways as the API lists them.
pub fn gateways(s: &Server, key: &str, cid: &str) -> Vec<Value> {
    let v = ok(
        s,
        key,
        "GET",
        &format!("/api/v1/clusters/{cid}/gateways"),
        None,
    );
    v["gateways"].as_array().cloned().unwrap_or_default()
}

/// Wait until every gateway of the cluster has applied some snapshot.
pub fn wait_gateways_applied(s: &Server, key: &str, cid: &str, count: usize) {
    wait_until("the gateways to apply a snapshot", 30, || {
        let g = gateways(s, key, cid);
        g.len() == count
            && g.iter()
                .all(|g| g["applied_version"].as_i64().unwrap_or(0) > 0)
    });
}

/// Set the traffic policy (ALLOW_ALL or DEFAULT_DENY) and wait until the cluster reads it
/// (every gateway applied it).
pub fn set_policy(s: &Server, key: &str, cid: &str, allow_all: bool) {
    let policy = if allow_all {
        "ALLOW_ALL"
    } else {
        "DEFAULT_DENY"
    };
    set_traffic_policy(s, key, cid, policy);
}

/// Set the traffic policy `ALLOW_ALL`, `DEFAULT_DENY` or `REPORT_ONLY`, and wait until the
/// cluster reads it (every gateway applied it).
pub fn set_traffic_policy(s: &Server, key: &str, cid: &str, policy: &str) {
    let body = match policy {
        "ALLOW_ALL" => json!({"allow_all": true}),
        "DEFAULT_DENY" => json!({"allow_all": false}),
        "REPORT_ONLY" => json!({"allow_all": false, "report_only": true}),
        other => panic!("no traffic policy {other}"),
    };
    ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules/egress-traffic-policy"),
        Some(body),
    );
    wait_until(&format!("the traffic policy to read {policy}"), 30, || {
        ok(s, key, "GET", &format!("/api/v1/clusters/{cid}"), None)["egress_traffic_policy"]
            == policy
    });
}

/// Add an egress rule; the rule as the API answered it.
pub fn add_rule(s: &Server, key: &str, cid: &str, body: Value) -> Value {
    let r = ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        Some(body),
    );
    r["Rule"].clone()
}

/// The rule's state, or `HTTP <status>` when it cannot be read (e.g. `HTTP 404` once deleted).
pub fn rule_state(s: &Server, key: &str, cid: &str, rid: &str) -> String {
    let (st, b) = api(
        s,
        key,
        "GET",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
        None,
    );
    if st != 200 {
        return format!("HTTP {st}");
    }
    json(&b)["rule"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Wait (30 s at most) until the rule reads ACTIVE: every live gateway applied it.
pub fn wait_rule_active(s: &Server, key: &str, cid: &str, rid: &str) {
    wait_until(&format!("rule {rid} to read ACTIVE"), 30, || {
        rule_state(s, key, cid, rid) == "ACTIVE"
    });
}

/// Delete the rule and wait (30 s at most) until it is gone from the API: every live gateway
/// applied a snapshot without it.
pub fn delete_rule_applied(s: &Server, key: &str, cid: &str, rid: &str) {
    ok(
        s,
        key,
        "DELETE",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
        None,
    );
    wait_until(&format!("rule {rid} to be gone"), 30, || {
        rule_state(s, key, cid, rid) == "HTTP 404"
    });
}
