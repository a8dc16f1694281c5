//! The OpenAPI document: generated from the same route list as the router, served at
//! /api/v1/openapi.json, and faithful to the published reference for every compat shape.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use perimeter_api::AppState;
use perimeter_store::{Durability, Store};
use serde_json::Value;
use tower::ServiceExt;

async fn app() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(dir.path(), Durability::Normal)
        .await
        .unwrap();
    (perimeter_api::app(AppState::new(store)), dir)
}

fn doc() -> Value {
    serde_json::to_value(perimeter_api::openapi()).unwrap()
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every (method, path) of the document is served by the router: unauthenticated routes answer
/// 200, the others 401; none falls through to the router's "no such route".
#[tokio::test]
async fn every_documented_route_is_routed() {
    let (app, _dir) = app().await;
    let doc = doc();
    let mut n = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_none() {
                continue;
            }
            n += 1;
            let concrete = path
                .replace("{cluster_id}", "7d0f3c2a-1234-4cde-9a11-9f2c9d7a1b23")
                .replace("{cidr_mask}", "24")
                .replace("{cidr_ip}", "192.168.1.0")
                .replace(['{', '}'], "");
            let req = Request::builder()
                .method(m.to_uppercase().as_str())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let public = ["/health", "/metrics", "/api/v1/openapi.json"].contains(&path.as_str());
            let want = if public {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(resp.status(), want, "{m} {path}");
        }
    }
    assert!(n >= 54, "only {n} routes documented");
    let req = Request::builder()
        .uri("/api/v1/nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

/// The document served over HTTP is the generated one.
#[tokio::test]
async fn served_document_matches() {
    let (app, _dir) = app().await;
    let resp = app
        .oneshot(
            Request::builder()
                .uri("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(served, doc());
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));
}

/// The published OpenAPI document of the CockroachDB Cloud API, kept in the repository so the
/// comparison runs in a plain clone.
fn reference() -> Value {
    let text = include_str!("reference/cockroach-cloud-openapi.json");
    serde_json::from_str(text).unwrap()
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let s = &doc["components"]["schemas"][name];
    assert!(!s.is_null(), "schema {name} missing");
    s
}

/// Compat paths exist in the reference with the same methods, and our compat schemas carry every
/// field the reference requires, under the same names.
#[test]
fn compat_shapes_follow_the_reference() {
    let reference = reference();
    let ours = doc();
    let mut compat_routes = 0;
    for (path, item) in ours["paths"].as_object().unwrap() {
        let Some(theirs) = reference["paths"].get(path) else {
            continue;
        };
        for m in METHODS {
            if item.get(m).is_some() {
                assert!(
                    theirs.get(m).is_some(),
                    "{m} {path} is not in the reference"
                );
                compat_routes += 1;
            }
        }
    }
    assert!(compat_routes >= 35, "only {compat_routes} compat routes");
    // (our schema, reference schema): ours must have every reference property that is required.
    let pairs = [
        ("Cluster", "Cluster"),
        ("Region", "Region"),
        ("EgressRule", "EgressRule"),
        ("EgressPrivateEndpoint", "EgressPrivateEndpoint"),
        ("AllowlistEntry", "AllowlistEntry"),
        (
            "ListAllowlistEntriesResponse",
            "ListAllowlistEntriesResponse",
        ),
        ("ListEgressRulesResponse", "ListEgressRulesResponse"),
        (
            "ListEgressPrivateEndpointsResponse",
            "ListEgressPrivateEndpointsResponse",
        ),
        ("ListClustersResponse", "ListClustersResponse"),
        ("ApiKey", "ApiKey"),
        ("CreateApiKeyResponse", "CreateApiKeyResponse"),
        ("ListApiKeysResponse", "ListApiKeysResponse"),
        ("ServiceAccount", "ServiceAccount"),
        ("ListServiceAccountsResponse", "ListServiceAccountsResponse"),
        ("GetAllRolesForUserResponse", "GetAllRolesForUserResponse"),
        ("PrivateEndpointTrustedOwner", "PrivateEndpointTrustedOwner"),
        ("PrivateEndpointService", "PrivateEndpointService"),
        ("PrivateEndpointServices", "PrivateEndpointServices"),
        ("PrivateEndpointConnection", "PrivateEndpointConnection"),
        ("PrivateEndpointConnections", "PrivateEndpointConnections"),
        ("GetEgressRuleResponse", "GetEgressRuleResponse"),
        ("Pagination", "KeysetPaginationResponse"),
    ];
    for (mine, theirs) in pairs {
        let m = schema(&ours, mine);
        let t = &reference["components"]["schemas"][theirs];
        let props = m["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{mine} has no properties"));
        for req in t["required"].as_array().into_iter().flatten() {
            let f = req.as_str().unwrap();
            // The reference marks some names required that are not among its own properties
            // (`rule` on Add/Edit/Delete responses whose property is `Rule`, `region` beside
            // `region_name`): a generated client reads the property, so the property is what counts.
            if t["properties"].get(f).is_none() {
                continue;
            }
            assert!(
                props.contains_key(f),
                "{mine} lacks {f}, required by the reference's {theirs}"
            );
        }
        for key in t["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            if props.contains_key(key) {
                continue;
            }
            // Optional reference fields we do not carry must not be ones clients rely on.
            assert!(
                !["state", "id", "name"].contains(&key.as_str()),
                "{mine} lacks {key}"
            );
        }
    }
    // The response-key quirk: Add/Edit/Delete say "Rule", Get says "rule".
    let rr = schema(&ours, "RuleResponse");
    assert!(rr["properties"].get("Rule").is_some());
    for name in [
        "AddEgressRuleResponse",
        "EditEgressRuleResponse",
        "DeleteEgressRuleResponse",
    ] {
        assert!(
            reference["components"]["schemas"][name]["properties"]
                .get("Rule")
                .is_some()
        );
    }
    // Request bodies: every reference-required field of compat requests is accepted.
    for (mine, theirs) in [
        ("AddEgressRuleRequest", "AddEgressRuleRequest"),
        ("CreateClusterRequest", "CreateClusterRequest"),
        ("CreateApiKeyRequest", "CreateApiKeyRequest"),
        ("CreateServiceAccountRequest", "CreateServiceAccountRequest"),
    ] {
        let m = schema(&ours, mine);
        let t = &reference["components"]["schemas"][theirs];
        let t = if t.is_null() { continue } else { t };
        for key in t["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            assert!(
                m["properties"].get(key).is_some() || key == "serverless",
                "{mine} does not accept {key}"
            );
        }
    }
}

/// The extensions of egress-check (per-address verdicts, resolution errors) and of the
/// snapshot answer (the gateway's registration) are documented with their shapes.
#[test]
fn what_if_and_registration_shapes_are_documented() {
    let doc = doc();
    let check = schema(&doc, "EgressCheckResponse");
    for field in ["addresses", "resolution_error", "rule", "reason"] {
        assert!(
            !check["properties"][field].is_null(),
            "EgressCheckResponse.{field}: {check:#}"
        );
    }
    let address = schema(&doc, "AddressVerdict");
    for field in ["address", "allowed", "rule_name", "reason", "dialled"] {
        assert!(
            !address["properties"][field].is_null(),
            "AddressVerdict.{field}: {address:#}"
        );
    }
    let error = schema(&doc, "ResolutionError");
    assert!(!error["properties"]["reason"].is_null(), "{error:#}");
    let snapshot = schema(&doc, "SnapshotResponse");
    assert!(!snapshot["properties"]["gateway"].is_null(), "{snapshot:#}");
    let registration = schema(&doc, "GatewayRegistration");
    for field in ["id", "cluster_id", "name", "region"] {
        assert!(
            !registration["properties"][field].is_null(),
            "GatewayRegistration.{field}: {registration:#}"
        );
    }
}

/// The functional roles route and the cluster's `credential_roles` extension are documented.
#[test]
fn credential_roles_are_documented() {
    let doc = doc();
    let path = &doc["paths"]["/api/v1/clusters/{cluster_id}/credential-roles"];
    assert!(!path["get"].is_null() && !path["put"].is_null(), "{path:#}");
    let cluster = schema(&doc, "Cluster");
    assert_eq!(
        cluster["properties"]["credential_roles"]["type"], "object",
        "{cluster:#}"
    );
    let roles = schema(&doc, "CredentialRoles");
    assert!(!roles["properties"]["roles"].is_null(), "{roles:#}");
    let role = schema(&doc, "CredentialRoleView");
    for field in ["template", "role_arn"] {
        assert!(
            !role["properties"][field].is_null(),
            "CredentialRoleView.{field}: {role:#}"
        );
    }
    let request = schema(&doc, "CredentialRolesRequest");
    assert!(!request["properties"]["roles"].is_null(), "{request:#}");
}

/// The TLS inspection routes and their shapes are documented.
#[test]
fn tls_inspection_is_documented() {
    let doc = doc();
    let path = &doc["paths"]["/api/v1/clusters/{cluster_id}/networking/tls-inspection"];
    assert!(!path["get"].is_null() && !path["put"].is_null(), "{path:#}");
    let pem = &doc["paths"]["/api/v1/clusters/{cluster_id}/networking/tls-inspection/ca.pem"];
    assert!(
        !pem["get"]["responses"]["200"]["content"]["application/x-pem-file"].is_null(),
        "{pem:#}"
    );
    let view = schema(&doc, "TlsInspectionView");
    for field in [
        "enabled",
        "never_inspect",
        "ca_certificate",
        "ca_fingerprint_sha256",
        "propagating",
    ] {
        assert!(
            !view["properties"][field].is_null(),
            "TlsInspectionView.{field}: {view:#}"
        );
    }
    let request = schema(&doc, "TlsInspectionRequest");
    assert!(!request["properties"]["enabled"].is_null(), "{request:#}");
    assert!(
        !request["properties"]["never_inspect"].is_null(),
        "{request:#}"
    );
}
