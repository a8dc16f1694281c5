//! The explicit proxy under ALLOW_ALL: ordinary addresses are allowed, and the address guard
//! still holds (loopback, metadata and private addresses need a CIDR rule naming them).

use std::net::Ipv4Addr;

use perimeter_testkit::api::{add_rule, ok, wait_rule_active};
use serde_json::{Value, json};

use crate::addresses::{get_at, non_canonical};
use crate::case::{self, Case, case, curl, curl_with, raw_bytes};
use crate::fixture::{Addrs, METADATA, Net, NetOptions};
use crate::{Perimeter, start_perimeter};

/// ALLOW_ALL really allows: ordinary addresses, by name, over HTTP and HTTPS.
fn ordinary_destinations(a: Addrs, ca: &str) -> Vec<Case> {
    vec![
        case("denied.test over HTTP", curl("http://denied.test/anything"))
            .allowed(200)
            .contains("host=denied.test")
            .serves(["/anything"]),
        case(
            "denied.test over TLS",
            curl_with(&["--cacert", ca], "https://denied.test/tls"),
        )
        .allowed(200)
        .serves(["/tls"]),
        // A name resolving to a metadata, a private and a public address: only the public one
        // is dialled.
        case(
            "only the public address of a name is dialled",
            curl("http://multi.test/first-allowed"),
        )
        .allowed(200)
        .contains(format!("upstream {}:80 ", a.allowed))
        .serves(["/first-allowed"]),
    ]
}

/// URLs of special addresses: (loopback, metadata, private).
fn special_urls(a: Addrs, lport: u16) -> (Vec<String>, Vec<String>, Vec<String>) {
    let loopback = vec![
        format!("http://127.0.0.1:{lport}/"),
        format!("http://127.0.0.2:{lport}/"),
        format!("http://[::1]:{lport}/"),
        format!("http://[::ffff:127.0.0.1]:{lport}/"),
        format!("http://[::ffff:7f00:1]:{lport}/"),
        format!("http://0.0.0.0:{lport}/"),
        format!("http://loopback.test:{lport}/"),
    ];
    let metadata = vec![
        format!("http://{METADATA}/latest/meta-data/"),
        format!("http://[::ffff:{METADATA}]/latest/meta-data/"),
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/".to_string(),
        "http://metadata.test/latest/meta-data/".to_string(),
    ];
    let private = vec![
        format!("http://{}/", a.private),
        "http://private.test/".to_string(),
        "http://private.allowed.test/".to_string(),
    ];
    (loopback, metadata, private)
}

/// Loopback, metadata and private addresses stay refused without a CIDR rule, forwarded or
/// through CONNECT, by literal or by name.
fn special_destinations(a: Addrs, lport: u16) -> Vec<Case> {
    let (loopback, metadata, private) = special_urls(a, lport);
    let mut cases = Vec::new();
    for url in loopback.iter().chain(&metadata).chain(&private) {
        cases.push(case(url.clone(), curl(url)).refused(403, "special_address"));
        cases.push(
            case(format!("CONNECT {url}"), curl_with(&["-p"], url)).refused(403, "special_address"),
        );
    }
    cases.push(
        case(
            "the refusal names the address class",
            curl("http://metadata.test/"),
        )
        .refused(403, "special_address")
        .contains("metadata"),
    );
    // A single label is not a hostname: refused before it is resolved (the hosts file would
    // say 127.0.0.1).
    cases.push(
        case("localhost", curl(format!("http://localhost:{lport}/")))
            .refused(400, "invalid_hostname"),
    );
    // Non-canonical spellings are 400 under ALLOW_ALL too.
    for (spelled, what) in non_canonical(METADATA)
        .into_iter()
        .chain(non_canonical(Ipv4Addr::LOCALHOST))
    {
        cases.push(
            case(
                format!("{what} {spelled}"),
                raw_bytes(get_at(&spelled, "/")),
            )
            .refused(400, "non_canonical_ip"),
        );
    }
    cases
}

/// A CIDR rule naming the private address opens it, and only on its port; metadata and
/// loopback stay refused.
fn after_a_cidr_rule_for_the_private_address(a: Addrs, lport: u16, ca: &str) -> Vec<Case> {
    let (loopback, metadata, _) = special_urls(a, lport);
    vec![
        case(
            "the private upstream by name",
            curl("http://private.test/named"),
        )
        .allowed(200)
        .contains(format!("upstream {}:80 ", a.private))
        .serves(["/named"]),
        case(
            "the private upstream on another port",
            curl_with(&["--cacert", ca], "https://private.test/"),
        )
        .refused(403, "special_address"),
        case(metadata[0].clone(), curl(&metadata[0])).refused(403, "special_address"),
        case(loopback[0].clone(), curl(&loopback[0])).refused(403, "special_address"),
    ]
}

#[test]
fn allow_all_still_refuses_loopback_metadata_and_private_without_a_cidr_rule() {
    let net = Net::new(NetOptions {
        metadata: true,
        workload: false,
        ..NetOptions::default()
    });
    let a = net.a;
    // A loopback listener: it must never see a connection.
    let lo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    lo.set_nonblocking(true).unwrap();
    let lport = lo.local_addr().unwrap().port();

    let Perimeter { s, key, cid, gw } = start_perimeter(&net, "netns-allow", "gw-1", &[]);
    let c = ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None);
    assert_eq!(c["egress_traffic_policy"], "ALLOW_ALL");
    let p = gw.proxy.as_str();
    let ca = net.cert.to_str().unwrap().to_string();

    let mut failures = case::run(&net, p, ordinary_destinations(a, &ca));
    failures.extend(case::run(&net, p, special_destinations(a, lport)));
    case::assert_passed("ALLOW_ALL", &failures);
    assert!(
        lo.accept().is_err(),
        "the loopback listener was connected to"
    );
    assert_eq!(net.events_at(METADATA), Vec::<Value>::new(), "metadata");
    assert_eq!(net.events_at(a.private), Vec::<Value>::new(), "private");

    let rule = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "private-upstream", "type": "CIDR", "destination": format!("{}/32", a.private), "ports": [80], "description": "the private upstream"}),
    );
    wait_rule_active(&s, &key, &cid, rule["id"].as_str().unwrap());
    let failures = case::run(
        &net,
        p,
        after_a_cidr_rule_for_the_private_address(a, lport, &ca),
    );
    case::assert_passed(
        "ALLOW_ALL with a CIDR rule for the private address",
        &failures,
    );
    assert!(
        lo.accept().is_err(),
        "the loopback listener was connected to"
    );
    assert_eq!(net.events_at(METADATA), Vec::<Value>::new(), "metadata");
    gw.terminate();
}
