//! The DNS listener of `perimeter serve`'s embedded gateways (`dns_address`), asked with real
//! `dig` over UDP and TCP: under DEFAULT_DENY a name an FQDN rule allows answers the address
//! the gateway resolved from its upstream server; an unrelated name gets REFUSED and the
//! upstream server never sees it; the port is kept across restarts.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use perimeter_testkit::api::{add_rule, create_cluster, set_traffic_policy, wait_rule_active};
use perimeter_testkit::dns::recording_dns_server;
use perimeter_testkit::{Server, ok};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// What `dig` says: the status and the answer section's data.
#[derive(Debug, PartialEq)]
struct Dig {
    status: String,
    answers: Vec<String>,
}

fn dig(server: SocketAddr, name: &str, qtype: &str, tcp: bool) -> Dig {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), name, qtype])
        .args(["+tries=1", "+time=5", "+nocookie"]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd
        .output()
        .expect("running dig (Debian package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "dig failed: {text}");
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig's output: {text}"))
        .to_string();
    let answers = text
        .split(";; ANSWER SECTION:\n")
        .nth(1)
        .map(|section| {
            section
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().last().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Dig { status, answers }
}

fn dns_address(s: &Server, key: &str, cid: &str) -> SocketAddr {
    let c = ok(s, key, "GET", &format!("/api/v1/clusters/{cid}"), None);
    let a = c["regions"][0]["dns_address"].as_str().unwrap_or_default();
    a.parse()
        .unwrap_or_else(|_| panic!("dns_address {a:?} in {c:#}"))
}

#[test]
fn embedded_dns_listener_answers_allowed_names_and_refuses_the_rest() {
    embedded_dns_listener(&[]);
}

#[test]
fn embedded_dns_listener_on_postgresql() {
    let db = perimeter_testkit::pg::PgDatabase::create("perimeter_dns_listener");
    embedded_dns_listener(&["--database-url", &db.url]);
}

fn embedded_dns_listener(store_args: &[&str]) {
    let (upstream, seen) = recording_dns_server(HashMap::from([
        (
            "allowed.example.com".to_string(),
            vec![Ipv4Addr::new(203, 0, 113, 7)],
        ),
        (
            "unrelated.example.com".to_string(),
            vec![Ipv4Addr::new(203, 0, 113, 8)],
        ),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--dns-server", upstream.as_str()];
    args.extend_from_slice(store_args);
    let s = Server::start(BIN, dir.path(), &args, &[]);
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "dns-one", &["us-east-1"]);
    set_traffic_policy(&s, &key, &cid, "DEFAULT_DENY");
    let rule = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "allowed", "type": "FQDN", "destination": "allowed.example.com",
               "ports": [443], "description": "the name the DNS listener answers"}),
    );
    wait_rule_active(&s, &key, &cid, rule["id"].as_str().unwrap());

    let dns = dns_address(&s, &key, &cid);
    assert!(dns.ip().is_loopback(), "{dns}");

    for tcp in [false, true] {
        assert_eq!(
            dig(dns, "allowed.example.com", "A", tcp),
            Dig {
                status: "NOERROR".into(),
                answers: vec!["203.0.113.7".into()],
            },
            "tcp: {tcp}"
        );
        // Another type of the allowed name: no answer, and nothing asked upstream for it.
        assert_eq!(
            dig(dns, "allowed.example.com", "TXT", tcp),
            Dig {
                status: "NOERROR".into(),
                answers: vec![],
            }
        );
        for name in ["c2VjcmV0.attacker.example", "unrelated.example.com"] {
            assert_eq!(
                dig(dns, name, "A", tcp),
                Dig {
                    status: "REFUSED".into(),
                    answers: vec![],
                },
                "{name}, tcp: {tcp}"
            );
        }
    }
    let names = seen.names();
    assert!(
        names.iter().any(|n| n == "allowed.example.com"),
        "the allowed name was resolved by the gateway: {names:?}"
    );
    assert!(
        names.iter().all(|n| n == "allowed.example.com"),
        "only the allowed name reached the upstream server: {names:?}"
    );

    // The decisions are recorded as the proxy's are: REFUSED names as DENIED.
    perimeter_testkit::wait_until("the DNS decisions reported", 30, || {
        let d = ok(
            &s,
            &key,
            "GET",
            &format!("/api/v1/clusters/{cid}/networking/egress-decisions"),
            None,
        );
        d.to_string().contains("c2vjcmv0.attacker.example")
    });

    // The port is kept across restarts.
    s.terminate();
    let s = Server::start(BIN, dir.path(), &args, &[]);
    let key = s.admin_key_file();
    perimeter_testkit::wait_until("the DNS listener back on its port", 30, || {
        let c = ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None);
        c["regions"][0]["dns_address"] == dns.to_string()
    });
    assert_eq!(
        dig(dns, "allowed.example.com", "A", false).status,
        "NOERROR"
    );
}

/// `perimeter gateway --dns-listen`: under REPORT_ONLY any name answers what the gateway
/// resolved (here from its hosts file), except addresses the guard would not dial; a private
/// endpoint name would be refused for want of a transparent listener, and is logged at start.
#[test]
fn standalone_gateway_dns_listener_under_report_only() {
    let (upstream, seen) = recording_dns_server(HashMap::new());
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        BIN,
        &dir.path().join("serve"),
        &["--dns-server", &upstream, "--no-embedded-gateways"],
        &[],
    );
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "dns-two", &["us-east-1"]);
    let token = perimeter_testkit::api::gateway_token(&s, &key, &cid, "us-east-1", "edge-dns");
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "203.0.113.9 report.example.com\n10.0.0.1 rebind.example.com\n",
    )
    .unwrap();
    let gw = perimeter_testkit::Gateway::start_with(
        BIN,
        dir.path(),
        &s.url(),
        &token,
        "us-east-1",
        &dir.path().join("gw-state"),
        &hosts,
        &upstream,
        &["--dns-listen", "127.0.0.1:0", "--log-format", "json"],
    );
    set_traffic_policy(&s, &key, &cid, "REPORT_ONLY");
    let log = std::fs::read_to_string(&gw.log).unwrap();
    let dns: SocketAddr = log
        .lines()
        .find_map(|l| l.split("perimeter: gateway DNS listener on ").nth(1))
        .unwrap_or_else(|| panic!("no DNS listener announced: {log}"))
        .trim()
        .parse()
        .unwrap();
    assert!(
        log.contains("no address to answer for private endpoint names"),
        "{log}"
    );
    for tcp in [false, true] {
        assert_eq!(
            dig(dns, "report.example.com", "A", tcp),
            Dig {
                status: "NOERROR".into(),
                answers: vec!["203.0.113.9".into()],
            }
        );
        // A name resolving to a private address gets no answer: the gateway would not dial it.
        assert_eq!(
            dig(dns, "rebind.example.com", "A", tcp),
            Dig {
                status: "NOERROR".into(),
                answers: vec![],
            }
        );
    }
    assert!(seen.names().is_empty(), "{:?}", seen.names());
    perimeter_testkit::wait_until("the WOULD_DENY answer recorded", 30, || {
        gw.decisions()
            .iter()
            .any(|d| d["destination"] == "report.example.com" && d["verdict"] == "would_deny")
    });
    gw.terminate();
}
