//! Endpoint-service backends that point at the platform (issue 14, finding 6): private endpoint
//! traffic bypasses the egress address guard, so a backend is the guard's business at
//! registration (here) and again when a forwarder dials it (the gateway's `backend_guard`).

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

fn service(name: &str, backends: Value) -> Value {
    json!({"service_name": format!("com.amazonaws.vpce.us-east-1.vpce-svc-{name}"),
           "region": "us-east-1", "backends": backends})
}

/// The field an error names.
fn field(v: &Value) -> &str {
    v["details"][0]["field_violations"][0]["field"]
        .as_str()
        .unwrap_or_default()
}

async fn backends_cannot_point_at_the_platform(s: &TestServer) {
    let (_, org_admin) = s
        .key_with(
            "org-admin",
            json!([{"name": "ORG_ADMIN", "resource": {"type": "ORGANIZATION"}}]),
        )
        .await;
    let api = s.addr;
    // An organization admin: the addresses the attack used are refused, each naming its field.
    for (i, backend) in [
        format!("127.0.0.1:{}", api.port()),
        "169.254.169.254:80".to_string(),
        "[::1]:80".to_string(),
        "0.0.0.0:80".to_string(),
        "10.0.0.5:5432".to_string(),
        "100.64.0.1:80".to_string(),
        "[::ffff:127.0.0.1]:80".to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        let (st, v) = s
            .call(
                Method::POST,
                "/api/v1/endpoint-services",
                Some(&org_admin),
                Some(service(
                    &format!("a{i}"),
                    json!(["198.51.100.7:9092", backend]),
                )),
            )
            .await;
        assert_eq!(st, 400, "{backend}: {v}");
        assert_eq!(field(&v), "backends[1]", "{backend}: {v}");
    }
    // Asking for special addresses is the platform operator's alone.
    let mut body = service("asked", json!(["127.0.0.1:9092"]));
    body["allow_special_addresses"] = json!(true);
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/endpoint-services",
            Some(&org_admin),
            Some(body.clone()),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    // A public backend is the organization admin's to register.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/endpoint-services",
            Some(&org_admin),
            Some(service("public", json!(["198.51.100.7:9092"]))),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["allow_special_addresses"], false, "{v}");

    // The platform operator (the admin key) registers a loopback backend explicitly...
    let v = s
        .ok(Method::POST, "/api/v1/endpoint-services", Some(body))
        .await;
    assert_eq!(v["allow_special_addresses"], true, "{v}");
    // ...but never the platform's own listeners, nor what no forwarder dials.
    for backend in [
        format!("127.0.0.1:{}", api.port()),
        "169.254.169.254:80".to_string(),
        "0.0.0.0:80".to_string(),
    ] {
        let mut body = service("own", json!([backend]));
        body["allow_special_addresses"] = json!(true);
        let (st, v) = s
            .admin(Method::POST, "/api/v1/endpoint-services", Some(body))
            .await;
        assert_eq!(st, 400, "{backend}: {v}");
        assert_eq!(field(&v), "backends[0]", "{backend}: {v}");
    }

    // auto_accept_accounts: a wildcard is refused with a clear message, and so is what is not
    // an account id.
    for (accounts, bad) in [
        (json!(["*"]), "auto_accept_accounts[0]"),
        (json!(["123456789012", "a b"]), "auto_accept_accounts[1]"),
        (json!([""]), "auto_accept_accounts[0]"),
    ] {
        let mut body = service("accounts", json!(["198.51.100.7:9092"]));
        body["acceptance_required"] = json!(true);
        body["auto_accept_accounts"] = accounts.clone();
        let (st, v) = s
            .admin(Method::POST, "/api/v1/endpoint-services", Some(body))
            .await;
        assert_eq!(st, 400, "{accounts}: {v}");
        assert_eq!(field(&v), bad, "{accounts}: {v}");
        if accounts[0] == "*" {
            assert!(
                v["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("every account"),
                "{v}"
            );
        }
    }
}

on_both_backends!(backends_cannot_point_at_the_platform);
