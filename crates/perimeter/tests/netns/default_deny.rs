//! The explicit proxy under DEFAULT_DENY: `allowed.test` over TLS, its API over HTTP (a path
//! rule), and the names below it are allowed; every trick to reach anything else is refused.
//! The tables are in [`crate::addresses`], [`crate::names`], [`crate::consistency`] and
//! [`crate::paths`]; this file sets the policy up, runs them, and looks at what the upstreams
//! saw overall.

use perimeter_testkit::api::{add_rule, set_policy, wait_rule_active};
use serde_json::{Value, json};

use crate::case::{self, Case, case, curl, curl_with, tls};
use crate::fixture::{Addrs, Net, NetOptions};
use crate::{Perimeter, addresses, consistency, names, paths, start_perimeter};

/// Allowed destinations work: plain HTTP (absolute-form) and HTTPS through CONNECT.
fn allowed(a: Addrs, ca: &str) -> Vec<Case> {
    vec![
        case(
            "absolute-form to an allowed path",
            curl("http://allowed.test/api/hello"),
        )
        .allowed(200)
        .contains(format!(
            "upstream {}:80 http path=/api/hello host=allowed.test",
            a.allowed
        ))
        .serves(["/api/hello"]),
        case(
            "CONNECT to the allowed name over TLS",
            curl_with(&["--cacert", ca], "https://allowed.test/secure"),
        )
        .allowed(200)
        .contains(format!(
            "upstream {}:443 https path=/secure host=allowed.test sni=allowed.test",
            a.allowed
        ))
        .serves(["/secure"]),
        // Resolved over real DNS (not the hosts file).
        case(
            "a name below allowed.test",
            curl("http://dns.allowed.test/x"),
        )
        .allowed(200)
        .contains("host=dns.allowed.test")
        .serves(["/x"]),
        case(
            "s_client with the right SNI completes a verified handshake",
            tls(
                "allowed.test:443",
                Some("allowed.test"),
                "GET /s-client HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
            ),
        )
        .allowed(200)
        .contains("https path=/s-client host=allowed.test sni=allowed.test")
        .serves(["/s-client"]),
    ]
}

#[test]
fn default_deny_allows_only_allowed_test_and_refuses_every_trick() {
    let net = Net::new(NetOptions::default());
    let a = net.a;
    let Perimeter { s, key, cid, gw } = start_perimeter(&net, "netns-deny", "gw-1", &[]);
    set_policy(&s, &key, &cid, false);
    let rules = [
        json!({"name": "allowed-tls", "type": "FQDN", "destination": "allowed.test", "ports": [443], "description": "allowed over TLS"}),
        json!({"name": "allowed-api", "type": "FQDN", "destination": "allowed.test", "ports": [80], "paths": ["/api/*"], "description": "allowed's API over HTTP"}),
        json!({"name": "below-allowed", "type": "FQDN", "destination": "*.allowed.test", "ports": [80, 443], "description": "names below allowed.test"}),
    ];
    for body in rules {
        let rule = add_rule(&s, &key, &cid, body);
        wait_rule_active(&s, &key, &cid, rule["id"].as_str().unwrap());
    }
    let p = gw.proxy.as_str();
    let ca = net.cert.to_str().unwrap().to_string();

    let tables = [
        allowed(a, &ca),
        addresses::non_canonical_literals(a),
        addresses::literals_without_a_cidr_rule(a, &ca),
        addresses::names_of_special_addresses(&ca),
        consistency::sni_other_than_the_connect_name(&ca),
        consistency::host_other_than_the_target(),
        paths::path_rule_tricks(),
        paths::connect_to_a_path_ruled_port(),
        names::spellings_of_one_name(&ca),
        names::homographs(&ca),
        consistency::plaintext_requests_in_a_tunnel(),
    ];
    let mut failures = Vec::new();
    for table in tables {
        failures.extend(case::run(&net, p, table));
    }
    case::assert_passed("DEFAULT_DENY", &failures);

    // Overall: no request at the allowed upstream named the homograph or denied.test, nothing
    // reached denied.test or the private upstream.
    for e in net.events_at(a.allowed) {
        let host = e["host"].as_str().unwrap_or_default().to_lowercase();
        let sni = e["sni"].as_str().unwrap_or_default().to_lowercase();
        assert!(
            !host.contains("xn--") && !sni.contains("xn--") && !host.contains("denied"),
            "{e}"
        );
        assert!(
            ["accept", "tcp-empty", "http", "https"].contains(&e["kind"].as_str().unwrap_or("")),
            "{e}"
        );
    }
    assert_eq!(net.events_at(a.denied), Vec::<Value>::new(), "denied.test");
    assert_eq!(net.events_at(a.private), Vec::<Value>::new(), "private");
    gw.terminate();
}
