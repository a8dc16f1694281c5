//! `perimeter serve`'s embedded gateways: one per cluster region on loopback, shown as the
//! region's `egress_proxy_address`, acknowledging snapshots like any gateway (so rules turn
//! ACTIVE with no other process), enforcing the policy, kept on the same ports across restarts,
//! and off with `--no-embedded-gateways`.

use std::net::SocketAddr;
use std::time::Duration;

use perimeter_testkit::{Server, api, curl, header_value, http_upstream, json, ok, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

fn proxy_addresses(cluster: &Value) -> Vec<(String, String)> {
    cluster["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["egress_proxy_address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn rule_state(s: &Server, key: &str, cluster: &str, name: &str) -> String {
    let rules = ok(
        s,
        key,
        "GET",
        &format!("/api/v1/clusters/{cluster}/networking/egress-rules"),
        None,
    );
    rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .map(|r| r["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn create_cluster(s: &Server, key: &str, name: &str, regions: Value) -> Value {
    ok(
        s,
        key,
        "POST",
        "/api/v1/clusters",
        Some(json!({
            "name": name, "provider": "AWS",
            "spec": {"dedicated": {"region_nodes": regions, "restrict_egress_traffic": true}}
        })),
    )
}

#[test]
fn embedded_gateways_enforce_and_settle_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &[], &[]);
    let key = s.admin_key_file();

    // The answer to the create already carries a proxy address per region, on loopback.
    let c = create_cluster(
        &s,
        &key,
        "embedded-one",
        json!({"us-east-1": 3, "eu-west-1": 1}),
    );
    let id = c["id"].as_str().unwrap().to_string();
    let addrs = proxy_addresses(&c);
    assert_eq!(addrs.len(), 2, "{c:#}");
    for (region, a) in &addrs {
        let a: SocketAddr = a
            .parse()
            .unwrap_or_else(|_| panic!("region {region}: egress_proxy_address {a:?}"));
        assert!(a.ip().is_loopback(), "{a}");
    }
    let proxy = addrs[0].1.clone();

    // The gateways register as the cluster's own, named after their regions.
    let gws = ok(
        &s,
        &key,
        "GET",
        &format!("/api/v1/clusters/{id}/gateways"),
        None,
    );
    let mut names: Vec<&str> = gws["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["embedded-eu-west-1", "embedded-us-east-1"]);

    // Deny by default: nothing passes yet, loopback least of all.
    let port = http_upstream();
    let url = format!("http://127.0.0.1:{port}/");
    let (st, _) = curl(&["-x", &format!("http://{proxy}"), &url]);
    assert_eq!(st, 403);

    // A rule admitting the loopback upstream turns ACTIVE once both embedded gateways applied
    // it, with no other process running, and then the proxy forwards.
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{id}/networking/egress-rules"),
        Some(
            json!({"name": "upstream", "type": "CIDR", "destination": "127.0.0.1/32",
                    "ports": [port], "description": "the test's upstream"}),
        ),
    );
    wait_until("the rule ACTIVE", 15, || {
        rule_state(&s, &key, &id, "upstream") == "ACTIVE"
    });
    for (region, p) in &addrs {
        let (st, body) = curl(&["-x", &format!("http://{p}"), &url]);
        assert_eq!((st, body.as_str()), (200, "upstream-ok /\n"), "{region}");
    }
    // Loopback not named by the rule stays refused, with the reason.
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "-m", "10", "-x", &format!("http://{proxy}")])
        .arg(format!("http://127.0.0.2:{port}/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert_eq!(
        header_value(&text, "x-perimeter-error").as_deref(),
        Some("special_address")
    );

    // Their decisions are counted on serve's own /metrics.
    let (st, metrics) = curl(&[&format!("{}/metrics", s.url)]);
    assert_eq!(st, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("perimeter_egress_decisions_total")
                && l.contains(&id)
                && l.contains("verdict=\"allowed\"")),
        "{metrics}"
    );
    // Each region's gateway labels its decisions with its region.
    for (region, _) in &addrs {
        let label = format!("region=\"{region}\"");
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("perimeter_egress_decisions_total")
                    && l.contains(&id)
                    && l.contains(&label)
                    && l.contains("verdict=\"allowed\"")),
            "{region}: {metrics}"
        );
    }

    // Adding a region adds its gateway; removing one removes it.
    let patch = |regions: Value| {
        ok(
            &s,
            &key,
            "PATCH",
            &format!("/api/v1/clusters/{id}"),
            Some(json!({"dedicated": {"region_nodes": regions}})),
        )
    };
    let c = patch(json!({"us-east-1": 3, "eu-west-1": 1, "ap-south-1": 1}));
    let grown = proxy_addresses(&c);
    assert_eq!(grown.len(), 3);
    assert!(grown.iter().all(|(_, a)| !a.is_empty()), "{c:#}");
    let c = patch(json!({"us-east-1": 3, "eu-west-1": 1}));
    assert_eq!(proxy_addresses(&c), addrs);
    wait_until("the removed region's gateway gone", 10, || {
        let gws = ok(
            &s,
            &key,
            "GET",
            &format!("/api/v1/clusters/{id}/gateways"),
            None,
        );
        gws["gateways"].as_array().unwrap().len() == 2
    });

    // A name under the embedded prefix is reserved.
    let (st, body) = api(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{id}/gateways"),
        Some(json!({"region": "us-east-1", "name": "embedded-mine"})),
    );
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        json(&body)["details"][0]["field_violations"][0]["field"],
        "name"
    );

    // A restart keeps the ports, and the gateways keep enforcing.
    assert!(s.terminate().success());
    let s = Server::start(BIN, dir.path(), &[], &[]);
    // The embedded gateways start after the API announced itself: each region's address comes
    // back once its gateway is up again.
    let cluster = || ok(&s, &key, "GET", &format!("/api/v1/clusters/{id}"), None);
    wait_until("the embedded gateways back on their ports", 15, || {
        proxy_addresses(&cluster())
            .iter()
            .all(|(_, a)| !a.is_empty())
    });
    assert_eq!(proxy_addresses(&cluster()), addrs);
    wait_until("the proxy forwarding after the restart", 15, || {
        curl(&["-x", &format!("http://{proxy}"), &url]).0 == 200
    });
}

#[test]
fn no_embedded_gateways_leaves_rules_pending() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &["--no-embedded-gateways"], &[]);
    let key = s.admin_key_file();
    let c = create_cluster(&s, &key, "external-only", json!({"us-east-1": 1}));
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        proxy_addresses(&c),
        [("us-east-1".to_string(), String::new())]
    );
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{id}/networking/egress-rules"),
        Some(
            json!({"name": "r", "type": "FQDN", "destination": "allowed.test",
                    "ports": [443], "description": ""}),
        ),
    );
    // No gateway has observed anything: the rule says so.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rule_state(&s, &key, &id, "r"), "PENDING_CREATION");
    let gws = ok(
        &s,
        &key,
        "GET",
        &format!("/api/v1/clusters/{id}/gateways"),
        None,
    );
    assert_eq!(gws["gateways"], json!([]));
}
