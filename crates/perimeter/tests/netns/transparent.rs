//! Transparent mode. The gateway's transparent listener stands on the root namespace's end of
//! the workload link; a nat PREROUTING rule on that link (and only there) redirects every TCP
//! connection of the workload to it. The workload knows nothing of a proxy: curl and openssl
//! inside it connect straight to the upstreams' addresses, which they resolve themselves
//! (`--resolve`), as a workload with its own DNS would.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Stdio;

use perimeter_testkit::api::{add_rule, set_policy, wait_rule_active};
use perimeter_testkit::netns::run;
use perimeter_testkit::wait_until;
use serde_json::{Value, json};

use crate::case::{self, Case, case, workload};
use crate::clients::raw_all;
use crate::fixture::{Addrs, Net, NetOptions, Redirect};
use crate::{Perimeter, start_perimeter};

#[test]
fn workload_namespace_leaves_only_through_the_root_namespace() {
    let net = Net::new(NetOptions {
        metadata: false,
        workload: true,
        ..NetOptions::default()
    });
    let w = net.workload.as_ref().unwrap();
    let out = run("ip", &["-n", &w.ns, "-4", "route", "show"]);
    let routes = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        routes.contains(&format!("default via {}", net.a.workload_root)),
        "{routes}"
    );
    assert_eq!(
        routes.lines().count(),
        2,
        "only the link and the default route: {routes}"
    );
    // The root namespace is reachable from the workload at its end of the link.
    let l = std::net::TcpListener::bind((net.a.workload_root, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let (mut c, peer) = l.accept().unwrap();
        c.write_all(b"root-ns\n").unwrap();
        peer
    });
    let out = w
        .command("python3")
        .arg("-c")
        .arg(format!(
            "import socket; s = socket.create_connection(('{}', {port}), 5); print(s.recv(100).decode())",
            net.a.workload_root
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let peer = t.join().unwrap();
    assert_eq!(peer.ip(), std::net::IpAddr::V4(net.a.workload), "{peer}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("root-ns"),
        "{out:?}"
    );
}
/// `name:port:ip`, curl's `--resolve`.
fn pin(name: &str, port: u16, ip: Ipv4Addr) -> String {
    format!("{name}:{port}:{ip}")
}

/// What the workload's curl gets through the transparent listener: rules `allowed.test` on 443,
/// its API (`/api/*`) on 80, and a CIDR rule for the allowed address on 25.
fn redirected(a: Addrs, ca: &str) -> Vec<Case> {
    vec![
        // Allowed: HTTPS by SNI, dialled at the address the workload chose (one of the name's).
        case(
            "HTTPS by SNI at one of the name's addresses",
            workload(&[
                "--cacert",
                ca,
                "--resolve",
                &pin("allowed.test", 443, a.allowed),
                "https://allowed.test/t-secure",
            ]),
        )
        .allowed(200)
        .contains(format!(
            "upstream {}:443 https path=/t-secure host=allowed.test sni=allowed.test",
            a.allowed
        ))
        .serves(["/t-secure"]),
        // Plain HTTP by Host, path rules on every request of a keep-alive connection.
        case(
            "plain HTTP: path rules on every request of a keep-alive connection",
            workload(&[
                "--resolve",
                &pin("allowed.test", 80, a.allowed),
                "http://allowed.test/api/t1",
                "http://allowed.test/api/../t-secret",
                "http://allowed.test/api/t2",
            ]),
        )
        .allowed(200)
        .contains("path=/api/t1")
        .contains("path=/api/t2")
        .contains("x-perimeter-error: path_not_allowed")
        .serves(["/api/t1", "/api/t2"]),
        case(
            "plain HTTP outside the path rule",
            workload(&[
                "--resolve",
                &pin("allowed.test", 80, a.allowed),
                "http://allowed.test/t-secret",
            ]),
        )
        .refused(403, "path_not_allowed"),
        // SNI allowed, but the workload dialled an address that is not the name's.
        case(
            "SNI allowed, address not the name's",
            workload(&[
                "--cacert",
                ca,
                "--resolve",
                &pin("allowed.test", 443, a.denied),
                "https://allowed.test/t-mismatch",
            ]),
        )
        .closed(),
        // The same with plain HTTP: the Host is allowed, the address is not its.
        case(
            "Host allowed, address not the name's",
            workload(&[
                "--resolve",
                &pin("allowed.test", 80, a.denied),
                "http://allowed.test/api/t-mismatch",
            ]),
        )
        .refused(403, "original_destination_mismatch"),
        case(
            "a Host naming another port than the one dialled",
            workload(&[
                "-H",
                "Host: allowed.test:8080",
                &format!("http://{}/api/t-port", a.allowed),
            ]),
        )
        .refused(400, "host_mismatch"),
        // Names without a rule, and addresses without a CIDR rule, are refused.
        case(
            "denied.test over TLS",
            workload(&[
                "-k",
                "--resolve",
                &pin("denied.test", 443, a.denied),
                "https://denied.test/t-denied",
            ]),
        )
        .closed(),
        case(
            "denied.test over HTTP",
            workload(&[
                "--resolve",
                &pin("denied.test", 80, a.denied),
                "http://denied.test/t-denied",
            ]),
        )
        .refused(403, "no_rule_for_destination"),
        // The private upstream, by an allowed name's pinning: not the name's address either.
        case(
            "an allowed name pinned to the private upstream",
            workload(&[
                "--cacert",
                ca,
                "--resolve",
                &pin("allowed.test", 443, a.private),
                "https://allowed.test/t-private",
            ]),
        )
        .closed(),
    ]
}

#[test]
fn transparent_listener_decides_on_sni_and_host_and_checks_the_original_address() {
    let net = Net::new(NetOptions {
        metadata: false,
        workload: true,
        ..NetOptions::default()
    });
    let a = net.a;
    let w = net.workload.as_ref().unwrap();
    let listen = format!("{}:0", a.workload_root);
    let Perimeter { s, key, cid, gw } = start_perimeter(
        &net,
        "netns-transparent",
        "gw-t",
        &["--transparent-listen", &listen],
    );
    let tport: u16 = gw
        .transparent
        .as_deref()
        .and_then(|t| t.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no transparent listener announced: {}", gw.log_text()));
    set_policy(&s, &key, &cid, false);
    for body in [
        json!({"name": "allowed-tls", "type": "FQDN", "destination": "allowed.test", "ports": [443], "description": ""}),
        json!({"name": "allowed-api", "type": "FQDN", "destination": "allowed.test", "ports": [80], "paths": ["/api/*"], "description": ""}),
        json!({"name": "allowed-smtp", "type": "CIDR", "destination": format!("{}/32", a.allowed), "ports": [25], "description": ""}),
    ] {
        let rule = add_rule(&s, &key, &cid, body);
        wait_rule_active(&s, &key, &cid, rule["id"].as_str().unwrap());
    }
    let _redirect = Redirect::new(&w.veth, tport);

    // --- A server that speaks first: the client waits for its greeting. The address the
    // workload dialled is judged as an IP destination (a CIDR rule here) once the client has
    // been silent for a while; the greeting comes through, then the exchange.
    let smtp = |addr: Ipv4Addr| {
        let script = format!(
            "import socket\n\
             s = socket.create_connection(('{addr}', 25), timeout=8)\n\
             f = s.makefile('rb')\n\
             print(f.readline().decode().strip())\n\
             s.sendall(b'EHLO workload.test\\r\\n')\n\
             print(f.readline().decode().strip())\n"
        );
        let out = w.command("python3").args(["-c", &script]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = smtp(a.allowed);
    assert_eq!(
        said,
        format!("220 {}:25 ready\n250 EHLO workload.test\n", a.allowed),
        "server-first through the transparent listener"
    );
    // Without a CIDR rule for the address, the silent client is refused: no greeting.
    let said = smtp(a.denied);
    assert!(
        said.trim().is_empty(),
        "server-first to an address no rule allows: {said}"
    );
    let cafile = net.cert.to_str().unwrap().to_string();
    let failures = case::run(&net, "", redirected(a, &cafile));
    case::assert_passed("transparent listener", &failures);
    // TLS without SNI is judged as a connection to the address: no CIDR rule, refused.
    let out = w
        .command("openssl")
        .args(["s_client", "-connect", &format!("{}:443", a.allowed)])
        .args([
            "-noservername",
            "-CAfile",
            &cafile,
            "-verify_return_error",
            "-quiet",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "TLS without SNI: {out:?}");

    // --- A connection to the listener that no rule redirected is refused.
    let direct = raw_all(
        gw.transparent.as_deref().unwrap(),
        b"GET /api/x HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
    );
    assert_eq!(direct, "", "a direct connection gets nothing");

    // --- What the upstreams saw: only the allowed requests; nothing at denied.test or the
    // private upstream, no secret path anywhere.
    let paths: Vec<String> = net
        .events_at(a.allowed)
        .iter()
        .filter(|e| e["kind"] == "http" || e["kind"] == "https")
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/t-secure", "/api/t1", "/api/t2"],
        "allowed upstream"
    );
    assert_eq!(net.events_at(a.denied), Vec::<Value>::new(), "denied.test");
    let lines: Vec<String> = net
        .events_at(a.allowed)
        .iter()
        .filter(|e| e["kind"] == "greet")
        .map(|e| e["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        lines,
        ["EHLO workload.test"],
        "what the greeting server heard"
    );
    assert_eq!(net.events_at(a.private), Vec::<Value>::new(), "private");
    let reasons = [
        "original_destination_mismatch",
        "not_redirected",
        "no_rule_for_destination",
    ];
    // The log is written by a writer thread: its lines come a moment after the connections.
    wait_until("the decision events to be logged", 10, || {
        let log = gw.log_text();
        reasons.iter().all(|r| log.contains(r))
    });
    let log = gw.log_text();
    for reason in reasons {
        assert!(
            log.contains(reason),
            "the decision events name {reason}:\n{log}"
        );
    }
    gw.terminate();
}
