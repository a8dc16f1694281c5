//! Identity under attack: an ORG_ADMIN that tries to make itself the platform, names that
//! spoof an audit entry, and loose bindings and credentials. On both backends.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

fn binding(role: &str) -> Value {
    json!({"name": role, "resource": {"type": "ORGANIZATION"}})
}

fn field_of(v: &Value) -> String {
    v["details"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| d["field_violations"][0]["field"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The id of the bootstrap `admin` account.
async fn admin_id(s: &TestServer) -> String {
    let accounts = s.ok(Method::GET, "/api/v1/service-accounts", None).await;
    accounts["service_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "admin")
        .and_then(|a| a["id"].as_str())
        .unwrap()
        .to_string()
}

/// A second account named `admin` cannot write audit entries that read as the real admin's:
/// names are unique and printable (no bidi controls, no markup), and entries carry the
/// account's id.
async fn audit_attribution_cannot_be_spoofed(s: &TestServer) {
    let admin = admin_id(s).await;
    let (st, v) = s
        .admin(
            Method::POST,
            "/api/v1/service-accounts",
            Some(json!({"name": "admin", "description": "impostor", "roles": []})),
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["code"], 6, "{v}");
    assert_eq!(field_of(&v), "name", "{v}");

    let (deployer, key) = s.key_with("deployer", json!([binding("ORG_ADMIN")])).await;
    let (st, v) = s
        .admin(
            Method::PATCH,
            &format!("/api/v1/service-accounts/{deployer}"),
            Some(json!({"name": "admin"})),
        )
        .await;
    assert_eq!((st, field_of(&v)), (409, "name".to_string()), "{v}");

    let bad = [
        "admin\u{202e}nimda",
        "\u{2067}admin",
        "ad\u{200b}min",
        "admin\u{7}",
        "line\nbreak",
        "<b>admin</b>",
        "<script>alert(1)</script>",
        " admin",
        "admin ",
        "\u{feff}admin",
    ];
    for name in bad {
        let (st, v) = s
            .admin(
                Method::POST,
                "/api/v1/service-accounts",
                Some(json!({"name": name, "description": "", "roles": []})),
            )
            .await;
        assert_eq!(
            (st, field_of(&v)),
            (400, "name".to_string()),
            "{name:?}: {v}"
        );
        let (st, v) = s
            .admin(
                Method::PATCH,
                &format!("/api/v1/service-accounts/{deployer}"),
                Some(json!({"name": name})),
            )
            .await;
        assert_eq!(
            (st, field_of(&v)),
            (400, "name".to_string()),
            "{name:?}: {v}"
        );
        let (st, v) = s
            .admin(
                Method::POST,
                "/api/v1/api-keys",
                Some(json!({"name": name, "service_account_id": deployer})),
            )
            .await;
        assert_eq!(
            (st, field_of(&v)),
            (400, "name".to_string()),
            "{name:?}: {v}"
        );
    }
    // Printable names in any script stay welcome; a freed name may be taken again.
    for name in ["Équipe données", "デプロイ", "ci/cd bot (prod) #2"] {
        let (st, v) = s
            .admin(
                Method::POST,
                "/api/v1/service-accounts",
                Some(json!({"name": name, "description": "", "roles": []})),
            )
            .await;
        assert_eq!(st, 200, "{name:?}: {v}");
        s.ok(
            Method::DELETE,
            &format!("/api/v1/service-accounts/{}", v["id"].as_str().unwrap()),
            None,
        )
        .await;
        let (st, v) = s
            .admin(
                Method::POST,
                "/api/v1/service-accounts",
                Some(json!({"name": name, "description": "", "roles": []})),
            )
            .await;
        assert_eq!(st, 200, "{name:?} again: {v}");
    }

    // Entries name the account by id as well as by name.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/service-accounts",
            Some(&key),
            Some(json!({"name": "made-by-deployer", "description": "", "roles": []})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let audit = s
        .ok(
            Method::GET,
            "/api/v1/auditlogevents?sort_order=DESC&limit=1000",
            None,
        )
        .await;
    let entries = audit["entries"].as_array().unwrap();
    let by_deployer = entries
        .iter()
        .find(|e| e["payload"].as_str().unwrap().contains("made-by-deployer"))
        .unwrap();
    assert_eq!(by_deployer["service_account_name"], "deployer");
    assert_eq!(by_deployer["service_account_id"], deployer, "{by_deployer}");
    let by_admin = entries
        .iter()
        .find(|e| e["payload"].as_str().unwrap().contains("\"deployer\""))
        .unwrap();
    assert_eq!(by_admin["service_account_name"], "admin");
    assert_eq!(by_admin["service_account_id"], admin, "{by_admin}");
}

on_both_backends!(audit_attribution_cannot_be_spoofed);
