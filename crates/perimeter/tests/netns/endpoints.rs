//! Private endpoints in transparent mode: a workload that knows nothing of a proxy asks the
//! gateway's DNS listener for an endpoint's name (real `dig`), gets the transparent address,
//! connects to it on the service's port, and the redirect takes it to the endpoint's backend;
//! under DEFAULT_DENY with no egress rule. A name nothing routes or allows gets REFUSED.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;

use perimeter_testkit::api::set_policy;
use perimeter_testkit::pg::PgDatabase;
use perimeter_testkit::{api, ok, wait_until};
use serde_json::{Value, json};

use crate::fixture::{Net, NetOptions, Redirect, Workload};
use crate::{Perimeter, start_perimeter_on};

/// A TCP echo service on loopback in the root namespace (the service owner's backend).
fn echo_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || c.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// `dig` inside the workload over UDP: (status, answers).
fn dig(w: &Workload, server: SocketAddr, name: &str) -> (String, Vec<String>) {
    let out = w
        .command("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            "+tries=1",
            "+time=5",
            name,
            "A",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("dig (Debian package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .unwrap_or("")
        .to_string();
    let answers = text
        .split(";; ANSWER SECTION:")
        .nth(1)
        .map(|sec| {
            sec.lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .filter_map(|l| l.split_whitespace().last().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (status, answers)
}

/// Connect from the workload to `ip:port` as a plain TCP client, send `payload`, read the echo.
fn echo_from_workload(w: &Workload, ip: &str, port: u16, payload: &str) -> String {
    let script = format!(
        "import socket\n\
         p = b'{payload}'\n\
         s = socket.create_connection(('{ip}', {port}), timeout=8)\n\
         s.sendall(p)\n\
         got = b''\n\
         while len(got) < len(p):\n\
         \x20   d = s.recv(4096)\n\
         \x20   if not d: break\n\
         \x20   got += d\n\
         print(got.decode())\n"
    );
    let out = w.command("python3").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn endpoint(p: &Perimeter, id: &str) -> Value {
    ok(
        &p.s,
        &p.key,
        "GET",
        &format!(
            "/api/v1/clusters/{}/networking/egress-private-endpoints/{id}",
            p.cid
        ),
        None,
    )
}

#[test]
fn transparent_workload_reaches_an_endpoint_by_the_dns_listener_and_the_redirect() {
    transparent_workload_reaches_an_endpoint(&[]);
}

#[test]
fn transparent_workload_reaches_an_endpoint_on_postgresql() {
    let db = PgDatabase::create("perimeter_netns_endpoints");
    transparent_workload_reaches_an_endpoint(&["--database-url", &db.url]);
}

fn transparent_workload_reaches_an_endpoint(serve_args: &[&str]) {
    let net = Net::new(NetOptions {
        metadata: false,
        workload: true,
        ..NetOptions::default()
    });
    let a = net.a;
    let w = net.workload.as_ref().unwrap();
    let listen = format!("{}:0", a.workload_root);
    let p = start_perimeter_on(
        &net,
        "netns-endpoints",
        "gw-e",
        &[
            "--transparent-listen",
            &listen,
            "--dns-listen",
            &listen,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        serve_args,
    );
    let tport: u16 =
        p.gw.transparent
            .as_deref()
            .and_then(|t| t.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no transparent listener: {}", p.gw.log_text()));
    let log = p.gw.log_text();
    let dns: SocketAddr = log
        .lines()
        .find_map(|l| l.split("gateway DNS listener on ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no DNS listener announced: {log}"));
    set_policy(&p.s, &p.key, &p.cid, false);

    let backend = echo_backend();
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-transparent";
    ok(
        &p.s,
        &p.key,
        "POST",
        "/api/v1/endpoint-services",
        Some(
            json!({"service_name": service, "region": "us-east-1", "backends": [backend.to_string()], "allow_special_addresses": true}),
        ),
    );
    let created = ok(
        &p.s,
        &p.key,
        "POST",
        &format!(
            "/api/v1/clusters/{}/networking/egress-private-endpoints",
            p.cid
        ),
        Some(
            json!({"region": "us-east-1", "target_service_identifier": service, "target_service_type": "PRIVATE_SERVICE"}),
        ),
    );
    let id = created["id"].as_str().unwrap().to_string();
    wait_until("the endpoint to be AVAILABLE", 30, || {
        endpoint(&p, &id)["state"] == "AVAILABLE"
    });
    let address = endpoint(&p, &id)["endpoint_address"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, b) = api(
        &p.s,
        &p.key,
        "PATCH",
        &format!(
            "/api/v1/clusters/{}/networking/egress-private-endpoints/{id}",
            p.cid
        ),
        Some(json!({"domain_names": ["svc.internal.test"]})),
    );
    assert_eq!(st, 200, "{b}");
    wait_until("the domain names to be AVAILABLE", 30, || {
        endpoint(&p, &id)["domain_names_state"] == "AVAILABLE"
    });
    let _redirect = Redirect::new(&w.veth, tport);

    // The endpoint's address and its domain answer the transparent address.
    let answer = a.workload_root.to_string();
    for name in [address.as_str(), "svc.internal.test"] {
        let (status, answers) = dig(w, dns, name);
        assert_eq!(status, "NOERROR", "{name}");
        assert_eq!(answers, std::slice::from_ref(&answer), "{name}");
    }
    // A name nothing routes or allows: REFUSED, never forwarded.
    let (status, answers) = dig(w, dns, "c2VjcmV0.attacker.test");
    assert_eq!(status, "REFUSED");
    assert!(answers.is_empty());

    // The workload connects where DNS sent it, on the service's port: the redirect and the
    // transparent listener take it to the backend, with no egress rule.
    let port = backend.port();
    assert_eq!(
        echo_from_workload(w, &answer, port, "through the endpoint"),
        "through the endpoint",
        "{}",
        p.gw.log_text()
    );
    // Plaintext HTTP whose Host names the endpoint's custom domain: routed by the Host.
    let request = "GET /by-host HTTP/1.1\\r\\nHost: svc.internal.test\\r\\n\\r\\n";
    let echoed = echo_from_workload(w, &answer, port, request);
    assert!(
        echoed.starts_with("GET /by-host HTTP/1.1") && echoed.contains("Host: svc.internal.test"),
        "{echoed:?}"
    );
    // A port no endpoint serves is refused (closed before any byte moves).
    assert_eq!(
        echo_from_workload(w, &answer, port.wrapping_add(1).max(1), "nothing"),
        ""
    );
    let forwarded = format!(
        "reason=private_endpoint bytes_up={} bytes_down={}",
        "through the endpoint".len(),
        "through the endpoint".len()
    );
    // The log is written by a thread of its own, a moment later.
    wait_until(
        "the forwarded connection's decision event, with its bytes",
        10,
        || p.gw.log_text().contains(&forwarded),
    );

    // The bytes are metered per endpoint.
    let metrics = p.gw.metrics.clone().expect("the gateway serves metrics");
    let (_, text) = perimeter_testkit::curl(&["-s", &metrics]);
    let line = format!(
        "perimeter_private_endpoint_bytes_total{{cluster=\"{}\",region=\"us-east-1\",endpoint=\"{id}\",direction=\"up\"}} {}",
        p.cid,
        "through the endpoint".len()
            + "GET /by-host HTTP/1.1\r\nHost: svc.internal.test\r\n\r\n".len()
    );
    assert!(text.contains(&line), "{line} in\n{text}");
    assert!(
        text.contains("perimeter_dns_responses_total{rcode=\"REFUSED\"} 1"),
        "{text}"
    );

    // A tunnel through the gateway's explicit proxy, open when the cluster is deleted: the
    // gateway gets a last document that denies everything, and the tunnel is cut.
    let mut t = std::net::TcpStream::connect(&p.gw.proxy).unwrap();
    t.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    write!(
        t,
        "CONNECT {address}:{port} HTTP/1.1\r\nHost: {address}:{port}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && t.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    t.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    t.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    ok(
        &p.s,
        &p.key,
        "DELETE",
        &format!("/api/v1/clusters/{}", p.cid),
        None,
    );
    let mut rest = [0u8; 8];
    let cut = match t.read(&mut rest) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    assert!(cut, "the tunnel outlived its cluster: {}", p.gw.log_text());
}
