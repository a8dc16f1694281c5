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

/// An ORG_ADMIN cannot make itself PLATFORM_OPERATOR (and then edit operator-managed rules):
/// not through its own bindings, a new account holding it, or a key of the bootstrap admin.
/// Each way is a 403 that changes nothing, and the platform's own account is out of its reach.
async fn org_admin_cannot_become_platform_operator(s: &TestServer) {
    let (me, key) = s
        .key_with("tenant-admin", json!([binding("ORG_ADMIN")]))
        .await;
    let admin = admin_id(s).await;
    let c = s
        .create_cluster("escalate-1", json!({"us-east-1": 1}))
        .await;
    let forbidden = |st: u16, v: &Value, what: &str| {
        assert_eq!(st, 403, "{what}: {v}");
        assert_eq!(v["code"], 7, "{what}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains("PLATFORM_OPERATOR"),
            "{what}: the refusal names the role: {v}"
        );
    };

    // 1. Its own bindings.
    for scope in [
        json!({"type": "ORGANIZATION"}),
        json!({"type": "CLUSTER", "id": c}),
    ] {
        let (st, v) = s
            .call(
                Method::PUT,
                &format!("/api/v1/roles/{me}"),
                Some(&key),
                Some(json!({"roles": [binding("ORG_ADMIN"), {"name": "PLATFORM_OPERATOR", "resource": scope}]})),
            )
            .await;
        forbidden(st, &v, "PUT /roles/{self} with PLATFORM_OPERATOR");
    }
    let roles = s
        .ok(Method::GET, &format!("/api/v1/roles/{me}"), None)
        .await;
    assert_eq!(roles["roles"], json!([binding("ORG_ADMIN")]), "unchanged");

    // 2. A new account that holds it: refused, and not created.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/service-accounts",
            Some(&key),
            Some(json!({"name": "sidekick", "description": "", "roles": [binding("PLATFORM_OPERATOR")]})),
        )
        .await;
    forbidden(st, &v, "a service account holding PLATFORM_OPERATOR");
    let list = s.ok(Method::GET, "/api/v1/service-accounts", None).await;
    assert!(
        !list.to_string().contains("sidekick"),
        "no account was created: {list}"
    );

    // 3. A key of the bootstrap admin: refused, no secret handed out.
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/api-keys",
            Some(&key),
            Some(json!({"name": "mine", "service_account_id": admin})),
        )
        .await;
    forbidden(st, &v, "an API key of the bootstrap admin");
    assert!(v.get("secret").is_none(), "{v}");
    let keys = s
        .ok(
            Method::GET,
            &format!("/api/v1/api-keys?service_account_id={admin}"),
            None,
        )
        .await;
    assert_eq!(keys["api_keys"].as_array().unwrap().len(), 1, "{keys}");
    let admin_key = keys["api_keys"][0]["id"].as_str().unwrap().to_string();

    // The platform's account is the platform's: its roles, name, keys and existence.
    let attempts = [
        (
            Method::PUT,
            format!("/api/v1/roles/{admin}"),
            Some(json!({"roles": [binding("ORG_ADMIN")]})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/service-accounts/{admin}"),
            Some(json!({"name": "retired"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/service-accounts/{admin}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/api-keys/{admin_key}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/api-keys/{admin_key}"),
            None,
        ),
    ];
    for (m, path, body) in attempts {
        let (st, v) = s.call(m.clone(), &path, Some(&key), body).await;
        forbidden(st, &v, &format!("{m} {path}"));
    }
    let (st, _) = s.admin(Method::GET, "/api/v1/clusters", None).await;
    assert_eq!(st, 200, "the bootstrap admin's key still works");

    // Nor could it reach operator-managed rules.
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{c}/networking/egress-rules"),
            Some(&key),
            Some(json!({"name": "op", "type": "FQDN", "destination": "telemetry.example.com", "ports": [443], "description": "", "crl_managed": true})),
        )
        .await;
    assert_eq!(st, 403);

    // The platform may: a caller holding ORG_ADMIN and PLATFORM_OPERATOR.
    let (op, _) = s
        .key_with(
            "platform-staff",
            json!([binding("ORG_ADMIN"), binding("PLATFORM_OPERATOR")]),
        )
        .await;
    let k = s
        .ok(
            Method::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "second", "service_account_id": op})),
        )
        .await;
    assert!(k["secret"].as_str().is_some(), "{k}");
    // And an ORG_ADMIN still manages every other account, its own included.
    let (st, v) = s
        .call(
            Method::PUT,
            &format!("/api/v1/roles/{me}"),
            Some(&key),
            Some(json!({"roles": [binding("ORG_ADMIN"), binding("CLUSTER_ADMIN")]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
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

/// Bindings are read strictly: an ORGANIZATION binding that carries a cluster id is refused
/// (not silently widened to the organization), and so are organization roles at CLUSTER scope.
async fn bindings_are_read_strictly(s: &TestServer) {
    let c = s.create_cluster("strict-1", json!({"us-east-1": 1})).await;
    let (sa, _) = s.key_with("strict", json!([])).await;
    let cases = [
        (
            json!([{"name": "CLUSTER_ADMIN", "resource": {"type": "ORGANIZATION", "id": c}}]),
            "roles[0].resource.id",
        ),
        (
            json!([binding("CLUSTER_DEVELOPER"), {"name": "ORG_ADMIN", "resource": {"type": "CLUSTER", "id": c}}]),
            "roles[1].resource.type",
        ),
        (
            json!([{"name": "CLUSTER_CREATOR", "resource": {"type": "CLUSTER", "id": c}}]),
            "roles[0].resource.type",
        ),
    ];
    for (roles, field) in cases {
        let (st, v) = s
            .admin(
                Method::PUT,
                &format!("/api/v1/roles/{sa}"),
                Some(json!({"roles": roles})),
            )
            .await;
        assert_eq!((st, field_of(&v)), (400, field.to_string()), "{roles}: {v}");
        let (st, v) = s
            .admin(
                Method::POST,
                "/api/v1/service-accounts",
                Some(json!({"name": "loose", "description": "", "roles": roles})),
            )
            .await;
        assert_eq!((st, field_of(&v)), (400, field.to_string()), "{roles}: {v}");
    }
    // The reference's SDK may send an empty id with an ORGANIZATION binding: that carries none.
    s.ok(
        Method::PUT,
        &format!("/api/v1/roles/{sa}"),
        Some(json!({"roles": [{"name": "CLUSTER_DEVELOPER", "resource": {"type": "ORGANIZATION", "id": ""}}]})),
    )
    .await;
}

/// Two Authorization headers are a 401, whichever of them is valid, for API keys and gateway
/// tokens alike: no credential is picked out of several.
async fn two_authorization_headers_are_refused(s: &TestServer) {
    let c = s.create_cluster("twohdr-1", json!({"us-east-1": 1})).await;
    let (_, key) = s
        .key_with("twohdr", json!([binding("CLUSTER_DEVELOPER")]))
        .await;
    let url = s.url("/api/v1/clusters");
    let bearer = |k: &str| format!("Bearer {k}");
    for (first, second) in [
        (bearer(&s.admin), bearer("garbage")),
        (bearer("garbage"), bearer(&s.admin)),
        (bearer(&s.admin), bearer(&s.admin)),
        (bearer(&key), bearer(&s.admin)),
    ] {
        let resp = s
            .http
            .get(&url)
            .header("Authorization", first)
            .header("Authorization", second)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], 16, "{v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("one Authorization header"),
            "{v}"
        );
    }
    // A gateway token too.
    let gw = s
        .ok(
            Method::POST,
            &format!("/api/v1/clusters/{c}/gateways"),
            Some(json!({"region": "us-east-1", "name": "gw-strict"})),
        )
        .await;
    let token = gw["token"].as_str().unwrap();
    let resp = s
        .http
        .post(s.url("/api/v1/gateway/ack"))
        .header("Authorization", bearer(token))
        .header("Authorization", bearer(token))
        .json(&json!({"version": 1, "applied": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

/// As in the reference, a CLUSTER_CREATOR is granted CLUSTER_ADMIN on the clusters it creates:
/// it reads, changes and deletes what it creates, and only that.
async fn cluster_creator_administers_its_clusters(s: &TestServer) {
    let c = s.create_cluster("other-1", json!({"us-east-1": 1})).await;
    let (creator, ckey) = s
        .key_with("creator", json!([binding("CLUSTER_CREATOR")]))
        .await;
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/clusters",
            Some(&ckey),
            Some(json!({"name": "created-1", "provider": "AWS", "spec": {"dedicated": {"region_nodes": {"us-east-1": 1}}}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mine = v["id"].as_str().unwrap().to_string();
    let (st, v) = s
        .call(
            Method::GET,
            &format!("/api/v1/clusters/{mine}"),
            Some(&ckey),
            None,
        )
        .await;
    assert_eq!(st, 200, "the creator reads its cluster: {v}");
    let (st, v) = s
        .call(Method::GET, "/api/v1/clusters", Some(&ckey), None)
        .await;
    assert_eq!(st, 200, "{v}");
    let ids: Vec<&str> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![mine.as_str()], "only its own cluster");
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{mine}/networking/egress-rules"),
            Some(&ckey),
            Some(json!({"name": "r1", "type": "FQDN", "destination": "a.example.com", "ports": [443], "description": ""})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s
        .call(
            Method::GET,
            &format!("/api/v1/clusters/{c}"),
            Some(&ckey),
            None,
        )
        .await;
    assert_eq!(st, 403, "not another cluster");
    let roles = s
        .ok(Method::GET, &format!("/api/v1/roles/{creator}"), None)
        .await;
    assert_eq!(
        roles["roles"],
        json!([
            {"name": "CLUSTER_ADMIN", "resource": {"type": "CLUSTER", "id": mine}},
            binding("CLUSTER_CREATOR"),
        ]),
        "{roles}"
    );
    let audit = s
        .ok(
            Method::GET,
            "/api/v1/auditlogevents?sort_order=DESC&limit=1000",
            None,
        )
        .await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "AUDIT_LOG_ACTION_ASSIGN_USER_ROLE"
                && e["cluster_id"] == mine.as_str()
                && e["service_account_id"] == creator.as_str()),
        "the grant is audited: {audit}"
    );
    // An organization-wide CLUSTER_ADMIN needs no binding of its own.
    let (admin_sa, akey) = s
        .key_with("org-cadmin", json!([binding("CLUSTER_ADMIN")]))
        .await;
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/clusters",
            Some(&akey),
            Some(json!({"name": "created-2", "provider": "AWS", "spec": {"dedicated": {"region_nodes": {"us-east-1": 1}}}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let roles = s
        .ok(Method::GET, &format!("/api/v1/roles/{admin_sa}"), None)
        .await;
    assert_eq!(roles["roles"], json!([binding("CLUSTER_ADMIN")]), "{roles}");
    let (st, v) = s
        .call(
            Method::DELETE,
            &format!("/api/v1/clusters/{mine}"),
            Some(&ckey),
            None,
        )
        .await;
    assert_eq!(st, 200, "the creator deletes its cluster: {v}");
}

/// `whoami` tells any valid key its own account and bindings, and nothing about anyone else;
/// without a valid key it is a 401 like every other route.
async fn whoami_answers_for_the_calling_key(s: &TestServer) {
    let c = s.create_cluster("whoami-1", json!({"us-east-1": 1})).await;
    let roles = json!([{"name": "CLUSTER_DEVELOPER", "resource": {"type": "CLUSTER", "id": c}}]);
    let (sa, key) = s.key_with("reader", roles.clone()).await;
    let (st, v) = s
        .call(Method::GET, "/api/v1/whoami", Some(&key), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["service_account_id"], sa.as_str(), "{v}");
    assert_eq!(v["service_account_name"], "reader", "{v}");
    assert_eq!(v["roles"], roles, "{v}");
    assert!(key.starts_with(v["api_key_id"].as_str().unwrap()), "{v}");
    let admin = s.ok(Method::GET, "/api/v1/whoami", None).await;
    assert_eq!(admin["service_account_name"], "admin", "{admin}");
    for bad in [None, Some("pk_nope_0000")] {
        let (st, v) = s.call(Method::GET, "/api/v1/whoami", bad, None).await;
        assert_eq!((st, v["code"].clone()), (401, json!(16)), "{v}");
    }
}

/// `egress-rules/validate` answers what a create would, field and words, and the warnings,
/// storing nothing; readers may ask, strangers may not.
async fn rule_validation_stores_nothing(s: &TestServer) {
    let c = s
        .create_cluster("validate-1", json!({"us-east-1": 1}))
        .await;
    let path = format!("/api/v1/clusters/{c}/networking/egress-rules/validate");
    let rules = format!("/api/v1/clusters/{c}/networking/egress-rules");
    let v = s
        .ok(
            Method::POST,
            &path,
            Some(json!({"name": "docs", "type": "FQDN", "destination": "Example.COM."})),
        )
        .await;
    assert_eq!(v["destination"], "example.com", "{v}");
    let warnings = v["warnings"].to_string();
    assert!(
        warnings.contains("matches only example.com itself")
            && warnings.contains("no ports listed"),
        "{v}"
    );
    // The create's own 400s, field for field.
    for (body, field) in [
        (
            json!({"type": "CIDR", "destination": "10.0.0.0/33", "ports": [443]}),
            "destination",
        ),
        (
            json!({"type": "FQDN", "destination": "a.example.com", "ports": [443, 0]}),
            "ports[1]",
        ),
        (
            json!({"type": "CIDR", "destination": "10.0.0.0/8", "paths": ["/x"]}),
            "paths",
        ),
        (
            json!({"type": "NOPE", "destination": "a.example.com"}),
            "type",
        ),
        (
            json!({"name": "bad/name", "type": "FQDN", "destination": "a.example.com"}),
            "name",
        ),
        (
            json!({"type": "FQDN", "destination": "a.example.com", "surprise": 1}),
            "surprise",
        ),
    ] {
        let (st, checked) = s.admin(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(
            (st, common::field_of(&checked).as_str()),
            (400, field),
            "{body}: {checked}"
        );
        let mut create = body.clone();
        create
            .as_object_mut()
            .unwrap()
            .entry("name")
            .or_insert(json!("same"));
        let (st, created) = s.admin(Method::POST, &rules, Some(create)).await;
        assert_eq!(st, 400, "{body}: {created}");
        assert_eq!(
            checked["message"], created["message"],
            "the same words as a create"
        );
    }
    assert_eq!(s.ok(Method::GET, &rules, None).await["rules"], json!([]));
    // A reader of the cluster may validate; a key without a role on it may not.
    let (_, dev) = s
        .key_with(
            "validator",
            json!([{"name": "CLUSTER_DEVELOPER", "resource": {"type": "CLUSTER", "id": c}}]),
        )
        .await;
    let body = json!({"type": "FQDN", "destination": "*.a.example.com", "ports": [443]});
    let (st, v) = s
        .call(Method::POST, &path, Some(&dev), Some(body.clone()))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["warnings"], json!([]), "{v}");
    // An operator-managed rule is checked against the roles a create would need.
    let mut operator = body.clone();
    operator["crl_managed"] = json!(true);
    let (st, v) = s
        .call(Method::POST, &path, Some(&dev), Some(operator.clone()))
        .await;
    assert_eq!(st, 403, "{v}");
    assert_eq!(s.admin(Method::POST, &path, Some(operator)).await.0, 200);
    let other = s
        .create_cluster("validate-2", json!({"us-east-1": 1}))
        .await;
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{other}/networking/egress-rules/validate"),
            Some(&dev),
            Some(body),
        )
        .await;
    assert_eq!(st, 403, "{v}");
}

on_both_backends!(
    whoami_answers_for_the_calling_key,
    rule_validation_stores_nothing,
    org_admin_cannot_become_platform_operator,
    audit_attribution_cannot_be_spoofed,
    bindings_are_read_strictly,
    two_authorization_headers_are_refused,
    cluster_creator_administers_its_clusters,
);
