//! The role matrix: every role x every route, allowed or 403, on both backends. The expected
//! table is written here from the API contract, independently of the server's own table.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

const ORG_ADMIN: &str = "ORG_ADMIN";
const ADMIN: &str = "CLUSTER_ADMIN";
const OPW: &str = "CLUSTER_OPERATOR_WRITER";
const DEV: &str = "CLUSTER_DEVELOPER";
const CREATOR: &str = "CLUSTER_CREATOR";
const PLATFORM: &str = "PLATFORM_OPERATOR";
/// A caller holding ORG_ADMIN and PLATFORM_OPERATOR (as the bootstrap `admin` does): the only
/// one that may hand out PLATFORM_OPERATOR or touch an account holding it.
const ORG_PLATFORM: &str = "ORG_ADMIN+PLATFORM_OPERATOR";

/// The callers of the matrix: a label and the roles it holds at organization scope.
const CALLERS: [(&str, &[&str]); 7] = [
    (ORG_ADMIN, &[ORG_ADMIN]),
    (ADMIN, &[ADMIN]),
    (OPW, &[OPW]),
    (DEV, &[DEV]),
    (CREATOR, &[CREATOR]),
    (PLATFORM, &[PLATFORM]),
    (ORG_PLATFORM, &[ORG_ADMIN, PLATFORM]),
];

struct Route {
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// Roles (or caller labels) allowed; a caller is allowed when its label or one of its roles
    /// is listed.
    allowed: &'static [&'static str],
    /// The exact status an allowed caller gets.
    ok: u16,
}

fn r(
    method: Method,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [&'static str],
    ok: u16,
) -> Route {
    Route {
        method,
        path,
        body,
        allowed,
        ok,
    }
}

/// `{c}`: a cluster id that does not exist; `{x}`: any other id that does not exist; `{admin}`:
/// the bootstrap `admin` account, which holds PLATFORM_OPERATOR. An allowed caller gets past the
/// role check to the status given (404 for what does not exist, 400 for an API key of a missing
/// account); a refused one gets 403.
fn table() -> Vec<Route> {
    use Method as M;
    const READ_CLUSTER: &[&str] = &[ORG_ADMIN, ADMIN, OPW, DEV];
    const READ_NET: &[&str] = &[ADMIN, OPW, DEV];
    const WRITE_NET: &[&str] = &[ADMIN, OPW];
    const IDENTITY: &[&str] = &[ORG_ADMIN];
    const SERVICES: &[&str] = &[ORG_ADMIN, ADMIN];
    let rule = json!({"name": "r", "type": "FQDN", "destination": "a.example.com", "ports": [443], "description": ""});
    let allow = json!({"sql": true, "ui": false});
    let dn = json!({"domain_names": ["db.example.com"]});
    vec![
        r(M::GET, "/api/v1/clusters", None, READ_CLUSTER, 200),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/ingress-check",
            Some(json!({"source": "10.0.0.1", "listener": "sql"})),
            READ_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/workload",
            None,
            &[ADMIN, PLATFORM],
            404,
        ),
        r(
            M::PUT,
            "/api/v1/clusters/{c}/workload",
            Some(json!({"regions": {}})),
            &[PLATFORM],
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/credential-roles",
            None,
            &[ORG_ADMIN, ADMIN, OPW, DEV, PLATFORM],
            404,
        ),
        r(
            M::PUT,
            "/api/v1/clusters/{c}/credential-roles",
            Some(
                json!({"roles": {"backup": "arn:aws:iam::123456789012:role/crl-dr-store-user-{cluster_id}"}}),
            ),
            &[PLATFORM],
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/tls-inspection",
            None,
            READ_CLUSTER,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/tls-inspection/ca.pem",
            None,
            READ_CLUSTER,
            404,
        ),
        r(
            M::PUT,
            "/api/v1/clusters/{c}/networking/tls-inspection",
            Some(json!({"enabled": true, "never_inspect": ["pinned.example.com"]})),
            &[ORG_ADMIN, ADMIN],
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters",
            Some(
                json!({"name": "{name}", "provider": "AWS", "spec": {"dedicated": {"region_nodes": {"us-east-1": 1}}}}),
            ),
            &[ADMIN, CREATOR],
            200,
        ),
        r(M::GET, "/api/v1/clusters/{c}", None, READ_CLUSTER, 404),
        r(
            M::PATCH,
            "/api/v1/clusters/{c}",
            Some(json!({"labels": {"team": "a"}})),
            &[ADMIN, OPW],
            404,
        ),
        r(M::DELETE, "/api/v1/clusters/{c}", None, &[ADMIN], 404),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/allowlist",
            None,
            READ_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/allowlist",
            Some(json!({"cidr_ip": "10.0.0.0", "cidr_mask": 8, "sql": true, "ui": false})),
            WRITE_NET,
            404,
        ),
        r(
            M::PUT,
            "/api/v1/clusters/{c}/networking/allowlist/10.0.0.0/8",
            Some(allow.clone()),
            WRITE_NET,
            404,
        ),
        r(
            M::PATCH,
            "/api/v1/clusters/{c}/networking/allowlist/10.0.0.0/8",
            Some(allow),
            WRITE_NET,
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/clusters/{c}/networking/allowlist/10.0.0.0/8",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/egress-rules",
            None,
            READ_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/egress-rules",
            Some(rule.clone()),
            WRITE_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/egress-rules",
            Some(
                json!({"name": "op", "type": "CIDR", "destination": "10.0.0.0/8", "ports": [443], "description": "", "crl_managed": true}),
            ),
            &[PLATFORM],
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/egress-rules/{x}",
            None,
            READ_NET,
            404,
        ),
        // PLATFORM_OPERATOR passes the route check: the rule may be one of its own (checked per rule).
        r(
            M::PATCH,
            "/api/v1/clusters/{c}/networking/egress-rules/{x}",
            Some(json!({"description": "d"})),
            &[ADMIN, OPW, PLATFORM],
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/clusters/{c}/networking/egress-rules/{x}",
            None,
            &[ADMIN, OPW, PLATFORM],
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/egress-rules/egress-traffic-policy",
            Some(json!({"allow_all": false})),
            WRITE_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/egress-check",
            Some(json!({"destination": "a.example.com", "port": 443})),
            READ_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/egress-decisions",
            None,
            READ_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/gateways",
            Some(json!({"region": "us-east-1", "name": "gw"})),
            WRITE_NET,
            404,
        ),
        r(M::GET, "/api/v1/clusters/{c}/gateways", None, READ_NET, 404),
        r(
            M::DELETE,
            "/api/v1/clusters/{c}/gateways/{x}",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/egress-private-endpoints",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/egress-private-endpoints",
            Some(
                json!({"region": "us-east-1", "target_service_identifier": "com.amazonaws.vpce.us-east-1.vpce-svc-example", "target_service_type": "PRIVATE_SERVICE"}),
            ),
            WRITE_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/egress-private-endpoints/{x}",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::PATCH,
            "/api/v1/clusters/{c}/networking/egress-private-endpoints/{x}",
            Some(dn.clone()),
            WRITE_NET,
            404,
        ),
        r(
            M::PATCH,
            "/api/v1/clusters/{c}/networking/egress-private-endpoints/{x}/domain-names",
            Some(dn),
            WRITE_NET,
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/clusters/{c}/networking/egress-private-endpoints/{x}",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/private-endpoint-services",
            None,
            READ_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/private-endpoint-services",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/private-endpoint-connections",
            None,
            READ_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/private-endpoint-connections",
            Some(json!({"endpoint_id": "vpce-0123"})),
            WRITE_NET,
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/clusters/{c}/networking/private-endpoint-connections/vpce-0123",
            None,
            WRITE_NET,
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/private-endpoint-trusted-owners",
            None,
            READ_NET,
            404,
        ),
        r(
            M::POST,
            "/api/v1/clusters/{c}/networking/private-endpoint-trusted-owners",
            Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": "123456789012"})),
            &[ADMIN],
            404,
        ),
        r(
            M::GET,
            "/api/v1/clusters/{c}/networking/private-endpoint-trusted-owners/{x}",
            None,
            READ_NET,
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/clusters/{c}/networking/private-endpoint-trusted-owners/{x}",
            None,
            &[ADMIN],
            404,
        ),
        r(M::GET, "/api/v1/endpoint-services", None, SERVICES, 200),
        r(
            M::POST,
            "/api/v1/endpoint-services",
            Some(
                json!({"service_name": "{name}", "region": "us-east-1", "backends": ["198.51.100.1:9092"]}),
            ),
            SERVICES,
            200,
        ),
        r(M::GET, "/api/v1/endpoint-services/{x}", None, SERVICES, 404),
        r(
            M::DELETE,
            "/api/v1/endpoint-services/{x}",
            None,
            SERVICES,
            404,
        ),
        r(
            M::GET,
            "/api/v1/endpoint-services/{x}/connections",
            None,
            SERVICES,
            404,
        ),
        r(
            M::POST,
            "/api/v1/endpoint-services/{x}/connections/{x}/accept",
            None,
            SERVICES,
            404,
        ),
        r(
            M::POST,
            "/api/v1/endpoint-services/{x}/connections/{x}/reject",
            None,
            SERVICES,
            404,
        ),
        r(M::GET, "/api/v1/service-accounts", None, IDENTITY, 200),
        r(
            M::POST,
            "/api/v1/service-accounts",
            Some(json!({"name": "{name}", "description": "", "roles": []})),
            IDENTITY,
            200,
        ),
        r(M::GET, "/api/v1/service-accounts/{x}", None, IDENTITY, 404),
        r(
            M::PATCH,
            "/api/v1/service-accounts/{x}",
            Some(json!({"name": "n"})),
            IDENTITY,
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/service-accounts/{x}",
            None,
            IDENTITY,
            404,
        ),
        r(M::GET, "/api/v1/api-keys", None, IDENTITY, 200),
        r(
            M::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "k", "service_account_id": "{x}"})),
            IDENTITY,
            400,
        ),
        r(
            M::GET,
            "/api/v1/api-keys/PRMTR_0000000000000000",
            None,
            IDENTITY,
            404,
        ),
        r(
            M::PATCH,
            "/api/v1/api-keys/PRMTR_0000000000000000",
            Some(json!({"name": "k"})),
            IDENTITY,
            404,
        ),
        r(
            M::DELETE,
            "/api/v1/api-keys/PRMTR_0000000000000000",
            None,
            IDENTITY,
            404,
        ),
        r(M::GET, "/api/v1/roles/{x}", None, IDENTITY, 404),
        r(
            M::PUT,
            "/api/v1/roles/{x}",
            Some(json!({"roles": []})),
            IDENTITY,
            404,
        ),
        r(M::GET, "/api/v1/auditlogevents", None, IDENTITY, 200),
        // PLATFORM_OPERATOR is granted, and its accounts are changed, only by a caller that holds
        // it besides ORG_ADMIN: an ORG_ADMIN alone cannot make itself (or anyone) the platform.
        r(
            M::POST,
            "/api/v1/service-accounts",
            Some(
                json!({"name": "{name}", "description": "", "roles": [{"name": PLATFORM, "resource": {"type": "ORGANIZATION"}}]}),
            ),
            &[ORG_PLATFORM],
            200,
        ),
        r(
            M::POST,
            "/api/v1/service-accounts",
            Some(
                json!({"name": "{name}", "description": "", "roles": [{"name": PLATFORM, "resource": {"type": "CLUSTER", "id": "{c}"}}]}),
            ),
            &[ORG_PLATFORM],
            200,
        ),
        r(
            M::PUT,
            "/api/v1/roles/{x}",
            Some(json!({"roles": [{"name": PLATFORM, "resource": {"type": "ORGANIZATION"}}]})),
            &[ORG_PLATFORM],
            404,
        ),
        r(
            M::PUT,
            "/api/v1/roles/{admin}",
            Some(json!({"roles": [
                {"name": ORG_ADMIN, "resource": {"type": "ORGANIZATION"}},
                {"name": ADMIN, "resource": {"type": "ORGANIZATION"}},
                {"name": PLATFORM, "resource": {"type": "ORGANIZATION"}},
            ]})),
            &[ORG_PLATFORM],
            200,
        ),
        r(
            M::POST,
            "/api/v1/api-keys",
            Some(json!({"name": "k", "service_account_id": "{admin}"})),
            &[ORG_PLATFORM],
            200,
        ),
        r(
            M::PATCH,
            "/api/v1/service-accounts/{admin}",
            Some(json!({"description": "bootstrap administrator"})),
            &[ORG_PLATFORM],
            200,
        ),
    ]
}

fn fill(s: &str, cluster: &str, other: &str, admin: &str, name: &str) -> String {
    s.replace("{c}", cluster)
        .replace("{x}", other)
        .replace("{admin}", admin)
        .replace("{name}", name)
}

async fn role_matrix(s: &TestServer) {
    let mut keys = Vec::new();
    for (label, roles) in CALLERS {
        let bindings: Vec<Value> = roles
            .iter()
            .map(|r| json!({"name": r, "resource": {"type": "ORGANIZATION"}}))
            .collect();
        let (_, key) = s.key_with(&format!("sa-{label}"), json!(bindings)).await;
        keys.push((label, roles, key));
    }
    let accounts = s.ok(Method::GET, "/api/v1/service-accounts", None).await;
    let admin = accounts["service_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "admin")
        .and_then(|a| a["id"].as_str())
        .unwrap()
        .to_string();
    let cluster = uuid::Uuid::new_v4().to_string();
    let other = uuid::Uuid::new_v4().to_string();
    let mut n = 0;
    let mut checked = 0;
    for route in table() {
        for (label, roles, key) in &keys {
            n += 1;
            let name = format!("rm-{n:04}-x");
            let path = fill(route.path, &cluster, &other, &admin, &name);
            let body = route.body.as_ref().map(|b| {
                serde_json::from_str(&fill(&b.to_string(), &cluster, &other, &admin, &name))
                    .unwrap()
            });
            let (status, v) = s.call(route.method.clone(), &path, Some(key), body).await;
            let allowed =
                route.allowed.contains(label) || roles.iter().any(|r| route.allowed.contains(r));
            if allowed {
                assert_eq!(
                    status, route.ok,
                    "{label} should be allowed {} {path}: {status} {v}",
                    route.method
                );
            } else {
                assert_eq!(
                    status, 403,
                    "{label} should be refused {} {path}: {status} {v}",
                    route.method
                );
                assert_eq!(v["code"], 7, "403 carries code 7: {v}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, table().len() * CALLERS.len());
    // The bootstrap admin was only ever given its own bindings back: it still works.
    let (st, v) = s
        .admin(Method::GET, &format!("/api/v1/roles/{admin}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["roles"].as_array().unwrap().len(), 3, "{v}");
}

/// Cluster-scope bindings cover that cluster only, and never organization-scope operations.
async fn cluster_scope(s: &TestServer) {
    let a = s.create_cluster("scope-aaa", json!({"us-east-1": 1})).await;
    let b = s.create_cluster("scope-bbb", json!({"us-east-1": 1})).await;
    let (_, key) = s
        .key_with(
            "scoped",
            json!([{"name": ADMIN, "resource": {"type": "CLUSTER", "id": a}}]),
        )
        .await;
    let rule = json!({"name": "r1", "type": "FQDN", "destination": "a.example.com", "ports": [443], "description": ""});
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{a}/networking/egress-rules"),
            Some(&key),
            Some(rule.clone()),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{b}/networking/egress-rules"),
            Some(&key),
            Some(rule),
        )
        .await;
    assert_eq!(st, 403);
    let (st, v) = s
        .call(Method::GET, "/api/v1/clusters", Some(&key), None)
        .await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![a.as_str()],
        "a cluster-scoped key lists only its cluster"
    );
    let (st, _) = s
        .call(Method::POST, "/api/v1/clusters", Some(&key), Some(json!({"name": "scope-ccc", "provider": "AWS", "spec": {"dedicated": {"region_nodes": {"us-east-1": 1}}}})))
        .await;
    assert_eq!(st, 403, "creating clusters needs organization scope");
    // The scope is checked before the body is read: a caller without the role learns nothing of
    // what a valid body would be, and a path that is not a cluster id is a 400 naming it.
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{b}/networking/allowlist"),
            Some(&key),
            Some(json!({"cidr_ip": "not an address"})),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = s
        .call(
            Method::GET,
            "/api/v1/clusters/not-a-uuid/networking/allowlist",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(st, 400, "{v}");
    assert!(v.to_string().contains("cluster_id must be a UUID"), "{v}");
}

/// Only PLATFORM_OPERATOR may edit or delete an operator-managed rule.
async fn operator_rules(s: &TestServer) {
    let c = s.create_cluster("oprules-1", json!({"us-east-1": 1})).await;
    let (_, platform) = s
        .key_with(
            "platform",
            json!([{"name": PLATFORM, "resource": {"type": "ORGANIZATION"}}]),
        )
        .await;
    let (_, admin) = s
        .key_with(
            "cadmin",
            json!([{"name": ADMIN, "resource": {"type": "ORGANIZATION"}}]),
        )
        .await;
    let body = json!({"name": "essential", "type": "FQDN", "destination": "telemetry.platform.example", "ports": [443], "description": "platform telemetry", "crl_managed": true});
    let (st, _) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{c}/networking/egress-rules"),
            Some(&admin),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        st, 403,
        "a customer role cannot create an operator-managed rule"
    );
    let (st, v) = s
        .call(
            Method::POST,
            &format!("/api/v1/clusters/{c}/networking/egress-rules"),
            Some(&platform),
            Some(body),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Rule"]["crl_managed"], true);
    let id = v["Rule"]["id"].as_str().unwrap();
    let path = format!("/api/v1/clusters/{c}/networking/egress-rules/{id}");
    let (st, v) = s
        .call(
            Method::PATCH,
            &path,
            Some(&admin),
            Some(json!({"description": "mine now"})),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("operator-managed"),
        "{v}"
    );
    let (st, _) = s.call(Method::DELETE, &path, Some(&admin), None).await;
    assert_eq!(st, 403);
    let (st, v) = s
        .call(
            Method::PATCH,
            &path,
            Some(&platform),
            Some(json!({"description": "updated by platform"})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // ...but not a customer's rule.
    let (st, v) = s
        .call(Method::POST, &format!("/api/v1/clusters/{c}/networking/egress-rules"), Some(&admin), Some(json!({"name": "cust", "type": "FQDN", "destination": "b.example.com", "ports": [443], "description": ""})))
        .await;
    assert_eq!(st, 200, "{v}");
    let cust = format!(
        "/api/v1/clusters/{c}/networking/egress-rules/{}",
        v["Rule"]["id"].as_str().unwrap()
    );
    let (st, _) = s.call(Method::DELETE, &cust, Some(&platform), None).await;
    assert_eq!(
        st, 403,
        "PLATFORM_OPERATOR alone may not change customer rules"
    );
    let (st, v) = s.call(Method::DELETE, &path, Some(&platform), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Rule"]["state"], "PENDING_DELETION");
}

on_both_backends!(role_matrix, cluster_scope, operator_rules);
