//! The curl examples of the CockroachDB Cloud documentation for egress perimeter controls and
//! egress private endpoints, run verbatim with real curl (and jq) against `perimeter serve`:
//! only the host is replaced and the placeholders filled, as a user would.

use std::process::Command;
use std::time::{Duration, Instant};

use perimeter_testkit::{Server, curl, json};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const DOCS_HOST: &str = "https://cockroachlabs.cloud";

struct Docs {
    url: String,
    key: String,
    dir: tempfile::TempDir,
}

impl Docs {
    /// Run a documented shell snippet with bash: host replaced, `{placeholders}` filled from
    /// `fill`, `$VARIABLES` from `env`. Returns stdout.
    fn run(&self, snippet: &str, fill: &[(&str, &str)], env: &[(&str, &str)]) -> String {
        let mut script = snippet.replace(DOCS_HOST, &self.url);
        for (k, v) in fill {
            script = script.replace(&format!("{{{k}}}"), v);
        }
        let mut cmd = Command::new("bash");
        cmd.args(["-euo", "pipefail", "-c", &script])
            .current_dir(self.dir.path())
            .env("CC_API_KEY", &self.key);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("bash");
        assert!(
            out.status.success(),
            "snippet failed:\n{script}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> Value {
        let auth = format!("Authorization: Bearer {}", self.key);
        let url = format!("{}{path}", self.url);
        let mut args = vec!["-X", method, "-H", auth.as_str(), url.as_str()];
        if let Some(b) = body {
            args.extend(["-d", b]);
        }
        let (st, b) = curl(&args);
        assert_eq!(st, 200, "{method} {path}: {b}");
        json(&b)
    }

    fn cluster(&self, name: &str, provider: &str, regions: &str) -> String {
        let body = format!(
            r#"{{"name":"{name}","provider":"{provider}","spec":{{"dedicated":{{"region_nodes":{regions},"restrict_egress_traffic":false,"network_visibility":"PRIVATE"}}}}}}"#
        );
        self.api("POST", "/api/v1/clusters", Some(&body))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Wait until the cluster's endpoints and their domain names have all left PENDING (the
    /// cluster lock is released).
    fn settle(&self, cluster: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.api(
                "GET",
                &format!("/api/v1/clusters/{cluster}/networking/egress-private-endpoints"),
                None,
            );
            if v["egress_private_endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| {
                    e["state"] != "PENDING"
                        && e["state"] != "DELETING"
                        && e["domain_names_state"] != "PENDING"
                })
            {
                return;
            }
            assert!(Instant::now() < deadline, "endpoints did not settle: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start() -> (Server, Docs) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, &dir.path().join("data"), &[], &[]);
    let docs = Docs {
        url: s.url(),
        key: s.admin_key_file(),
        dir,
    };
    (s, docs)
}

#[test]
fn egress_perimeter_controls_examples() {
    let (_s, d) = start();
    let cluster = d.cluster("docstest", "AWS", r#"{"us-east-1":3}"#);
    let env = [("CLUSTER_ID", cluster.as_str())];
    // Get the cluster (both revisions).
    let out = d.run(
        r#"curl --request GET \
--header "Authorization: Bearer $CC_API_KEY" \
--url "https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID""#,
        &[],
        &env,
    );
    assert_eq!(json(&out)["id"], cluster.as_str());
    // Deny by default.
    let out = d.run(
        r#"curl --request POST \
--header "Authorization: Bearer $CC_API_KEY" \
--header 'Cc-Version: latest' \
--url "https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID/networking/egress-rules/egress-traffic-policy" \
--data '{"allow_all":false}'"#,
        &[],
        &env,
    );
    assert_eq!(json(&out), serde_json::json!({}));
    // The rule files, then the two POSTs.
    std::fs::write(
        d.dir.path().join("egress-rule1.json"),
        "{\n  \"name\": \"roach-buckets\",\n  \"type\": \"FQDN\",\n  \"destination\": \"storage.googleapis.com\",\n  \"ports\": [\n    443,\n    80\n  ],\n  \"description\": \"egress for GCP storage API\"\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.dir.path().join("egress-rule2.json"),
        "{\n  \"name\": \"roach-kafka\",\n  \"type\": \"CIDR\",\n  \"destination\": \"123.34.62.123/32\",\n  \"ports\": [\n    443\n  ],\n  \"description\": \"egress for Kafka\"\n}\n",
    )
    .unwrap();
    let out = d.run(
        r#"curl --request POST \
--header "Authorization: Bearer $CC_API_KEY" \
--url "https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID/networking/egress-rules" \
--data "@egress-rule1.json"
echo
curl --request POST \
--header "Authorization: Bearer $CC_API_KEY" \
--url "https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID/networking/egress-rules" \
--data "@egress-rule2.json""#,
        &[],
        &env,
    );
    let mut lines = out.lines();
    let r1 = json(lines.next().unwrap());
    let r2 = json(lines.next().unwrap());
    assert_eq!(r1["Rule"]["name"], "roach-buckets");
    assert_eq!(r1["Rule"]["state"], "PENDING_CREATION");
    assert_eq!(r1["Rule"]["ports"], serde_json::json!([443, 80]));
    assert_eq!(r2["Rule"]["type"], "CIDR");
    let rule_id = r2["Rule"]["id"].as_str().unwrap().to_string();
    let env = [
        ("CLUSTER_ID", cluster.as_str()),
        ("RULE_ID", rule_id.as_str()),
    ];
    // Get one rule (lower-case "rule"), list (sorted by name, pagination null).
    let out = d.run(
        r#"curl --request GET \
--header "Authorization: Bearer $CC_API_KEY" \
--header  'Cc-Version: 2022-09-20' \
--url "https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID/networking/egress-rules/$RULE_ID""#,
        &[],
        &env,
    );
    assert_eq!(json(&out)["rule"]["name"], "roach-kafka");
    let out = d.run(
        r#"curl --request GET \
--header "Authorization: Bearer $CC_API_KEY" \
--header  'Cc-Version: 2022-09-20' \
--url https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID/networking/egress-rules
"#,
        &[],
        &env,
    );
    let list = json(&out);
    assert_eq!(list["rules"][0]["name"], "roach-buckets");
    assert_eq!(list["rules"][1]["name"], "roach-kafka");
    assert_eq!(list["pagination"], Value::Null);
    // Delete: capital "Rule", PENDING_DELETION.
    let out = d.run(
        r#"curl --request DELETE \
--header "Authorization: Bearer $CC_API_KEY" \
--header  'Cc-Version: 2022-09-20' \
--url "https://cockroachlabs.cloud/api/v1/clusters/$CLUSTER_ID/networking/egress-rules/$RULE_ID""#,
        &[],
        &env,
    );
    assert_eq!(json(&out)["Rule"]["state"], "PENDING_DELETION");
    // The policy change shows UPDATING until the region's embedded gateway applied it, then
    // the new policy; the deleted rule is gone once applied.
    let settled = |d: &Docs| {
        let c = d.api("GET", &format!("/api/v1/clusters/{cluster}"), None);
        let policy = c["egress_traffic_policy"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            ["UPDATING", "DEFAULT_DENY"].contains(&policy.as_str()),
            "{policy}"
        );
        let rules = d.api(
            "GET",
            &format!("/api/v1/clusters/{cluster}/networking/egress-rules"),
            None,
        );
        policy == "DEFAULT_DENY" && rules["rules"].as_array().is_some_and(|r| r.len() == 1)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !settled(&d) {
        assert!(
            std::time::Instant::now() < deadline,
            "the changes never settled"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn egress_private_endpoint_examples() {
    let (_s, d) = start();
    let aws = d.cluster("docs-aws", "AWS", r#"{"us-east-1":3,"us-east-2":3}"#);
    let gcp = d.cluster("docs-gcp", "GCP", r#"{"us-east1":3}"#);
    let azure = d.cluster("docs-azure", "AZURE", r#"{"eastus":3}"#);
    let key = d.key.clone();
    // account_id, for the service owner's allow list.
    let out = d.run(
        r#"curl --request GET \
  --url https://cockroachlabs.cloud/api/v1/clusters/{cluster_id} \
  --header "Authorization: Bearer {secret_key}" | jq .account_id"#,
        &[("cluster_id", &aws), ("secret_key", &key)],
        &[],
    );
    let account = out.trim().trim_matches('"').to_string();
    assert!(
        account.len() >= 12 && account.chars().all(|c| c.is_ascii_digit()),
        "{out}"
    );
    // The owner registers the service, accepting that account, so the endpoint is accepted.
    d.api(
        "POST",
        "/api/v1/endpoint-services",
        Some(&format!(
            r#"{{"service_name":"com.amazonaws.vpce.us-east-1.vpce-svc-example","region":"us-east-1","backends":["127.0.0.1:9092"],"allow_special_addresses":true,"acceptance_required":true,"auto_accept_accounts":["{account}"]}}"#
        )),
    );
    let create = |cluster: &str, body: &str| -> Value {
        let snippet = format!(
            "curl https://cockroachlabs.cloud/api/v1/clusters/{{cluster_id}}/networking/egress-private-endpoints \\\n-X POST \\\n-H \"Authorization: Bearer {{secret_key}}\" \\\n-H 'Content-Type: application/json' \\\n-d '{body}'"
        );
        let out = d.run(
            &snippet,
            &[("cluster_id", cluster), ("secret_key", &key)],
            &[],
        );
        let v = json(&out);
        assert!(v["id"].is_string(), "{v}");
        assert_eq!(v["endpoint_connection_id"], "");
        assert_eq!(v["endpoint_address"], "");
        v
    };
    // AWS private service.
    let ep = create(
        &aws,
        "{\n  \"cluster_id\": \"{cluster_id}\",\n  \"region\": \"us-east-1\",\n  \"target_service_identifier\": \"com.amazonaws.vpce.us-east-1.vpce-svc-example\",\n  \"target_service_type\": \"PRIVATE_SERVICE\"\n}",
    );
    assert_eq!(ep["state"], "PENDING");
    let ep_id = ep["id"].as_str().unwrap().to_string();
    // The embedded gateway serves its forwarder: AVAILABLE, observed.
    d.settle(&aws);
    let got = d.api(
        "GET",
        &format!("/api/v1/clusters/{aws}/networking/egress-private-endpoints/{ep_id}"),
        None,
    );
    assert_eq!(got["state"], "AVAILABLE", "{got}");
    // Domain names (deprecated route, the docs' body with cluster_id and endpoint_id).
    let snippet = "curl -s -w '%{http_code}' https://cockroachlabs.cloud/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints/{endpoint_id}/domain-names \\\n-X PATCH \\\n-H \"Authorization: Bearer {secret_key}\" \\\n-H 'Content-Type: application/json' \\\n-d '{\n  \"cluster_id\": \"{cluster_id}\",\n  \"endpoint_id\": \"{endpoint_id}\",\n  \"domain_names\": [\"*.us-east-2.aws.confluent.cloud\"]\n}'";
    let out = d.run(
        snippet,
        &[
            ("cluster_id", &aws),
            ("endpoint_id", &ep_id),
            ("secret_key", &key),
        ],
        &[],
    );
    assert_eq!(out, "{}200");
    d.settle(&aws);
    let got = d.api(
        "GET",
        &format!("/api/v1/clusters/{aws}/networking/egress-private-endpoints/{ep_id}"),
        None,
    );
    assert_eq!(got["domain_names_state"], "AVAILABLE", "{got}");
    // Delete: DELETING, then gone.
    let out = d.run(
        "curl https://cockroachlabs.cloud/api/v1/clusters/{cluster_id}/networking/egress-private-endpoints/{endpoint_id} \\\n-X DELETE \\\n-H \"Authorization: Bearer {secret_key}\"",
        &[("cluster_id", &aws), ("endpoint_id", &ep_id), ("secret_key", &key)],
        &[],
    );
    assert_eq!(json(&out), serde_json::json!({}));
    d.settle(&aws);
    // CloudWatch logs (the docs' ".log"), MSK, GCP, Azure: accepted shapes; no such service is
    // registered here, so each ends FAILED, which releases the cluster lock for the next.
    create(
        &aws,
        "{\n  \"cluster_id\": \"{cluster_id}\",\n  \"region\": \"us-east-1\",\n  \"target_service_identifier\": \"com.amazonaws.us-east-1.log\",\n  \"target_service_type\": \"PRIVATE_SERVICE\"\n}",
    );
    d.settle(&aws);
    create(
        &aws,
        "{\n  \"cluster_id\": \"{cluster_id}\",\n  \"region\": \"us-east-2\",\n  \"target_service_identifier\": \"arn:aws:kafka:us-east-2:example:cluster/msk-example/99bcd320-3af1-42cc-b8cc-example-7\",\n  \"target_service_type\": \"MSK_SASL_SCRAM\"\n}",
    );
    d.settle(&aws);
    create(
        &gcp,
        "{\n  \"cluster_id\": \"{cluster_id}\",\n  \"region\": \"us-east1\",\n  \"target_service_identifier\": \"projects/cc-example/regions/us-east1/serviceAttachments/s-example-service-attachment-us-east1-d\",\n  \"target_service_type\": \"PRIVATE_SERVICE\"\n}",
    );
    let azure_body = "{\n  \"cluster_id\": \"{cluster_id}\",\n  \"region\": \"eastus\",\n  \"target_service_identifier\": \"/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.Network/privateLinkServices/{pls-name}\",\n  \"target_service_type\": \"PRIVATE_SERVICE\"\n}";
    let snippet = format!(
        "curl https://cockroachlabs.cloud/api/v1/clusters/{{cluster_id}}/networking/egress-private-endpoints \\\n-X POST \\\n-H \"Authorization: Bearer {{secret_key}}\" \\\n-H 'Content-Type: application/json' \\\n-d '{azure_body}'"
    );
    let out = d.run(
        &snippet,
        &[
            ("cluster_id", &azure),
            ("secret_key", &key),
            ("subscription-id", "8f2b3c4d-1111-2222-3333-444455556666"),
            ("resource-group", "rg-kafka"),
            ("pls-name", "pls-kafka"),
        ],
        &[],
    );
    assert_eq!(json(&out)["region"], "eastus");
    let list = d.api(
        "GET",
        &format!("/api/v1/clusters/{aws}/networking/egress-private-endpoints"),
        None,
    );
    assert_eq!(
        list["egress_private_endpoints"].as_array().unwrap().len(),
        2
    );
    assert_eq!(list["pagination"], Value::Null);
}
