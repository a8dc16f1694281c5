//! The public ingress listeners end to end: `perimeter serve` with its embedded gateway, a TCP
//! echo workload on loopback set with `PUT .../workload`, real TCP clients bound to distinct
//! loopback sources (127.0.0.2, 127.0.0.3). On SQLite and on PostgreSQL:
//!
//! - an entry `127.0.0.2/32` with `sql: true` admits 127.0.0.2 on the SQL listener (relayed to
//!   the workload) and refuses 127.0.0.3, closed with nothing reaching the workload;
//! - the UI listener refuses 127.0.0.2 until a PATCH sets `ui`, observed once the allowlist reads
//!   `propagating: false`;
//! - deleting the entry cuts the open admitted connection; an empty allowlist refuses everyone;
//! - every decision is logged with its verdict and reason;
//! - after a restart the listeners are back on their ports, and an entry re-added for one
//!   source lets only that source in;
//! - with `--trusted-proxy 127.0.0.1/32`: a PROXY v1 or v2 header from 127.0.0.1 names the
//!   judged source (admitted when allowlisted, refused otherwise); a missing, malformed,
//!   truncated or slow header from it is refused, and so is a PROXY header from an untrusted
//!   peer, with nothing reaching the workload.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perimeter_testkit::clients::{closed, connect_from, echoes};
use perimeter_testkit::dns::dns_server;
use perimeter_testkit::pg::PgDatabase;
use perimeter_testkit::{Gateway, Server, api, curl, ok, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// What the workload received: connections accepted and bytes read.
#[derive(Default)]
struct Seen {
    connections: usize,
    bytes: Vec<u8>,
}

/// A TCP echo workload on loopback.
fn echo_workload() -> (SocketAddr, Arc<Mutex<Seen>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let record = record.clone();
            std::thread::spawn(move || {
                record.lock().unwrap().connections += 1;
                let mut buf = [0u8; 4096];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            record.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                            if c.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, seen)
}

fn cluster_region(s: &Server, key: &str, cid: &str) -> Value {
    ok(s, key, "GET", &format!("/api/v1/clusters/{cid}"), None)["regions"][0].clone()
}

fn wait_settled(s: &Server, key: &str, cid: &str) {
    let path = format!("/api/v1/clusters/{cid}/networking/allowlist");
    wait_until("the allowlist to stop propagating", 30, || {
        ok(s, key, "GET", &path, None)["propagating"] == false
    });
}

fn public_ingress(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    let cid = api::create_cluster(&s, &key, "ingress-1", &["us-east-1"]);
    let mut region = Value::Null;
    wait_until("the region's ingress listeners", 30, || {
        region = cluster_region(&s, &key, &cid);
        region["sql_ingress_address"] != "" && region["ui_ingress_address"] != ""
    });
    let sql: SocketAddr = region["sql_ingress_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ui: SocketAddr = region["ui_ingress_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(sql.ip().is_loopback() && ui.ip().is_loopback(), "{region}");
    let (workload, seen) = echo_workload();
    let w = ok(
        &s,
        &key,
        "PUT",
        &format!("/api/v1/clusters/{cid}/workload"),
        Some(
            json!({"regions": {"us-east-1": {"sql": workload.to_string(), "ui": workload.to_string()}}}),
        ),
    );
    assert_eq!(w["regions"]["us-east-1"]["sql"], workload.to_string());
    api::wait_gateways_applied(&s, &key, &cid, 1);

    let a = Ipv4Addr::new(127, 0, 0, 2);
    let b = Ipv4Addr::new(127, 0, 0, 3);
    // No entry yet: the public side admits no one.
    let mut c = connect_from(a, sql).unwrap();
    assert!(closed(&mut c), "an empty allowlist admits no one");

    let allowlist = format!("/api/v1/clusters/{cid}/networking/allowlist");
    ok(
        &s,
        &key,
        "POST",
        &allowlist,
        Some(
            json!({"cidr_ip": "127.0.0.2", "cidr_mask": 32, "name": "a", "sql": true, "ui": false}),
        ),
    );
    wait_settled(&s, &key, &cid);
    let mut admitted = connect_from(a, sql).unwrap();
    assert!(
        echoes(&mut admitted, "hello from a\n"),
        "127.0.0.2 admitted on sql"
    );
    let mut refused = connect_from(b, sql).unwrap();
    assert!(closed(&mut refused), "127.0.0.3 is in no entry");
    let mut refused_ui = connect_from(a, ui).unwrap();
    assert!(closed(&mut refused_ui), "the entry does not set ui");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.connections, 1,
            "refused connections never reach the workload"
        );
        assert_eq!(seen.bytes, b"hello from a\n");
    }

    // PATCH sets ui: observed once propagating reads false.
    ok(
        &s,
        &key,
        "PATCH",
        &format!("{allowlist}/127.0.0.2/32"),
        Some(json!({"ui": true})),
    );
    wait_settled(&s, &key, &cid);
    let mut via_ui = connect_from(a, ui).unwrap();
    assert!(
        echoes(&mut via_ui, "ui from a\n"),
        "ui admitted after the PATCH"
    );
    drop(via_ui);
    assert!(
        echoes(&mut admitted, "still here\n"),
        "the open connection stands"
    );

    // An entry without the listener's flag refuses.
    ok(
        &s,
        &key,
        "POST",
        &allowlist,
        Some(json!({"cidr_ip": "127.0.0.3", "cidr_mask": 32, "sql": false, "ui": false})),
    );
    wait_settled(&s, &key, &cid);
    let mut refused = connect_from(b, sql).unwrap();
    assert!(closed(&mut refused), "127.0.0.3's entry sets neither flag");

    // Deleting the admitting entry cuts the open connection.
    ok(
        &s,
        &key,
        "DELETE",
        &format!("{allowlist}/127.0.0.2/32"),
        None,
    );
    wait_settled(&s, &key, &cid);
    let deadline = Instant::now() + Duration::from_secs(10);
    admitted
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let cut = loop {
        let mut buf = [0u8; 64];
        match admitted.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => break false,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && Instant::now() < deadline => {}
            Err(e) => {
                break !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
    };
    assert!(cut, "deleting the entry cuts the open admitted connection");
    let mut c = connect_from(a, sql).unwrap();
    assert!(
        closed(&mut c),
        "127.0.0.2 is refused once its entry is gone"
    );

    // An empty allowlist refuses everyone, on both listeners.
    ok(
        &s,
        &key,
        "DELETE",
        &format!("{allowlist}/127.0.0.3/32"),
        None,
    );
    wait_settled(&s, &key, &cid);
    for (from, to) in [(a, sql), (a, ui), (b, sql), (b, ui)] {
        let mut c = connect_from(from, to).unwrap();
        assert!(closed(&mut c), "{from} -> {to} with an empty allowlist");
    }
    let connections = seen.lock().unwrap().connections;
    assert_eq!(
        connections, 2,
        "only the two admitted connections reached the workload"
    );

    let log = s.log_text();
    for needle in [
        "ingress decision",
        "ADMITTED",
        "REFUSED",
        "REVOKED",
        "not_allowlisted",
        "listener_not_allowed",
        "allowlist_empty",
    ] {
        assert!(log.contains(needle), "the log lacks {needle}");
    }

    // The listeners keep their ports across a restart, and what the store holds is enforced
    // again: an entry re-added for one source lets only that source in.
    assert!(s.terminate().success());
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    wait_until("the ingress listeners back on their ports", 30, || {
        let r = cluster_region(&s, &key, &cid);
        r["sql_ingress_address"] == sql.to_string() && r["ui_ingress_address"] == ui.to_string()
    });
    ok(
        &s,
        &key,
        "PUT",
        &format!("{allowlist}/127.0.0.3/32"),
        Some(json!({"sql": true, "ui": false})),
    );
    wait_settled(&s, &key, &cid);
    let mut c = connect_from(b, sql).unwrap();
    assert!(
        echoes(&mut c, "b after the restart\n"),
        "127.0.0.3 admitted"
    );
    let mut c = connect_from(a, sql).unwrap();
    assert!(closed(&mut c), "127.0.0.2 still refused");
    assert_eq!(seen.lock().unwrap().connections, 3);
}

/// `perimeter gateway --sql-ingress-listen --ui-ingress-listen`: a standalone gateway in front of
/// a workload named by a DNS name (resolved by the gateway); a listener whose region has no
/// workload address closes admitted connections with the reason; decisions are counted in
/// `perimeter_ingress_decisions_total`.
#[test]
fn standalone_gateway_ingress_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 workload.test.example\n").unwrap();
    let dns = dns_server(HashMap::new());
    let s = Server::start(
        BIN,
        &dir.path().join("cp"),
        &["--no-embedded-gateways"],
        &[],
    );
    let key = s.admin_key_file();
    let cid = api::create_cluster(&s, &key, "ingress-gw", &["us-east-1"]);
    let token = api::gateway_token(&s, &key, &cid, "us-east-1", "gw-1");
    let gw = Gateway::start_with(
        BIN,
        dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &dir.path().join("gw-state"),
        &hosts,
        &dns,
        &[
            "--sql-ingress-listen",
            "127.0.0.1:0",
            "--ui-ingress-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let announced = |name: &str| -> SocketAddr {
        gw.log_text()
            .lines()
            .find_map(|l| {
                l.split(&format!("perimeter: gateway {name} ingress listener on "))
                    .nth(1)
            })
            .unwrap_or_else(|| panic!("no {name} ingress listener announced"))
            .trim()
            .parse()
            .unwrap()
    };
    let (sql, ui) = (announced("sql"), announced("ui"));
    let (workload, seen) = echo_workload();
    ok(
        &s,
        &key,
        "PUT",
        &format!("/api/v1/clusters/{cid}/workload"),
        Some(
            json!({"regions": {"us-east-1": {"sql": format!("workload.test.example:{}", workload.port())}}}),
        ),
    );
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/allowlist"),
        Some(json!({"cidr_ip": "127.0.0.2", "cidr_mask": 32, "sql": true, "ui": true})),
    );
    wait_settled(&s, &key, &cid);
    let a = Ipv4Addr::new(127, 0, 0, 2);
    let mut c = connect_from(a, sql).unwrap();
    assert!(
        echoes(&mut c, "by name\n"),
        "admitted and relayed to the named workload"
    );
    let mut c = connect_from(a, ui).unwrap();
    assert!(closed(&mut c), "no ui workload address in this region");
    let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 3), sql).unwrap();
    assert!(closed(&mut c), "127.0.0.3 is in no entry");
    assert_eq!(seen.lock().unwrap().connections, 1);

    let metrics = gw.metrics.clone().expect("the gateway serves metrics");
    let want = [
        ("sql", "ADMITTED", "allowlisted"),
        ("ui", "REFUSED", "no_workload_address"),
        ("sql", "REFUSED", "not_allowlisted"),
    ];
    let mut lines = Vec::new();
    wait_until("the ingress decisions counted", 10, || {
        let (st, body) = curl(&[&metrics]);
        assert_eq!(st, 200, "{body}");
        lines = body
            .lines()
            .filter(|l| l.starts_with("perimeter_ingress_decisions_total{"))
            .map(str::to_string)
            .collect();
        want.iter().all(|(listener, verdict, reason)| {
            lines.iter().any(|l| {
                l.contains(&format!("cluster=\"{cid}\""))
                    && l.contains("region=\"us-east-1\"")
                    && l.contains(&format!("listener=\"{listener}\""))
                    && l.contains(&format!("verdict=\"{verdict}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
                    && l.ends_with(" 1")
            })
        })
    });
    gw.terminate();
}

/// A PROXY protocol v2 header (command PROXY, TCP over IPv4) with the AWS VPC endpoint TLV,
/// written from haproxy's proxy-protocol.txt.
fn proxy_v2(source: SocketAddrV4, destination: SocketAddrV4) -> Vec<u8> {
    let id = b"vpce-0a1b2c3d";
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&((12 + 3 + 1 + id.len()) as u16).to_be_bytes());
    h.extend_from_slice(&source.ip().octets());
    h.extend_from_slice(&destination.ip().octets());
    h.extend_from_slice(&source.port().to_be_bytes());
    h.extend_from_slice(&destination.port().to_be_bytes());
    h.push(0xEA);
    h.extend_from_slice(&((1 + id.len()) as u16).to_be_bytes());
    h.push(0x01);
    h.extend_from_slice(id);
    h
}

/// Closed by the gateway without anything sent (a read ends with no byte), within `bound`.
fn closed_unprompted(s: &mut TcpStream, bound: Duration) -> bool {
    s.set_read_timeout(Some(bound)).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn proxy_protocol(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![
        "--trusted-proxy",
        "127.0.0.1/32",
        "--header-timeout-seconds",
        "1",
    ];
    all.extend_from_slice(args);
    let s = Server::start(BIN, dir.path(), &all, &[]);
    let key = s.admin_key_file();
    let cid = api::create_cluster(&s, &key, "ingress-pp", &["us-east-1"]);
    let mut region = Value::Null;
    wait_until("the region's ingress listeners", 30, || {
        region = cluster_region(&s, &key, &cid);
        region["sql_ingress_address"] != ""
    });
    let sql: SocketAddr = region["sql_ingress_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let SocketAddr::V4(sql4) = sql else {
        panic!("{sql}")
    };
    let (workload, seen) = echo_workload();
    ok(
        &s,
        &key,
        "PUT",
        &format!("/api/v1/clusters/{cid}/workload"),
        Some(json!({"regions": {"us-east-1": {"sql": workload.to_string()}}})),
    );
    let allowlist = format!("/api/v1/clusters/{cid}/networking/allowlist");
    // The client behind the proxy, and the untrusted peer itself, are allowlisted; the proxy
    // (127.0.0.1) is not.
    for ip in ["198.51.100.7", "127.0.0.2"] {
        ok(
            &s,
            &key,
            "POST",
            &allowlist,
            Some(json!({"cidr_ip": ip, "cidr_mask": 32, "sql": true, "ui": false})),
        );
    }
    wait_settled(&s, &key, &cid);
    let proxy = Ipv4Addr::LOCALHOST;
    let untrusted = Ipv4Addr::new(127, 0, 0, 2);
    let client: SocketAddrV4 = "198.51.100.7:40000".parse().unwrap();
    let stranger: SocketAddrV4 = "203.0.113.9:40000".parse().unwrap();

    // An untrusted peer, allowlisted itself, is refused when it opens with a PROXY header.
    let mut c = connect_from(untrusted, sql).unwrap();
    c.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5432\r\n")
        .unwrap();
    assert!(closed(&mut c), "an untrusted peer's v1 header");
    let mut c = connect_from(untrusted, sql).unwrap();
    c.write_all(&proxy_v2(client, sql4)).unwrap();
    assert!(closed(&mut c), "an untrusted peer's v2 header");
    assert!(seen.lock().unwrap().bytes.is_empty());
    let mut c = connect_from(untrusted, sql).unwrap();
    assert!(
        echoes(&mut c, "plain from 127.0.0.2\n"),
        "the untrusted peer without a header is judged by its own address"
    );

    // The trusted proxy's v1 and v2 headers name an allowlisted client: admitted, and the
    // header is not relayed.
    let mut c = connect_from(proxy, sql).unwrap();
    c.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5432\r\n")
        .unwrap();
    assert!(echoes(&mut c, "via v1\n"), "v1 honoured");
    let mut c = connect_from(proxy, sql).unwrap();
    let header = proxy_v2(client, sql4);
    let (first, second) = header.split_at(9);
    c.write_all(first).unwrap();
    c.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(second).unwrap();
    assert!(
        echoes(&mut c, "via v2\n"),
        "v2 honoured, split across writes"
    );
    let mut c = connect_from(proxy, sql).unwrap();
    c.write_all(b"PROXY TCP6 2001:db8::7 ::1 40000 5432\r\n")
        .unwrap();
    assert!(
        closed(&mut c),
        "a v1 header naming a source not allowlisted"
    );
    let mut c = connect_from(proxy, sql).unwrap();
    c.write_all(&proxy_v2(stranger, sql4)).unwrap();
    assert!(
        closed(&mut c),
        "a v2 header naming a source not allowlisted"
    );

    // Malformed, missing, over-long, truncated and slow headers from the trusted proxy.
    let mut long = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5432".to_vec();
    long.resize(110, b' ');
    long.extend_from_slice(b"\r\n");
    let mut bad_tlv = proxy_v2(client, sql4);
    // The TLV says one byte more than the header holds.
    bad_tlv[30] += 1;
    for bytes in [
        b"PROXY TCP4 198.51.100.7 127.0.0.1 040000 5432\r\n".to_vec(),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5432\n".to_vec(),
        b"hello without a header\n".to_vec(),
        long,
        bad_tlv,
    ] {
        let mut c = connect_from(proxy, sql).unwrap();
        let _ = c.write_all(&bytes);
        assert!(
            closed_unprompted(&mut c, Duration::from_secs(10)),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    let mut c = connect_from(proxy, sql).unwrap();
    c.write_all(b"PROXY TCP4 198.51.100.7 127.0").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        closed_unprompted(&mut c, Duration::from_secs(10)),
        "truncated"
    );
    for slow in [
        &b"PROXY TCP4 198.51.100.7 127.0"[..],
        &proxy_v2(client, sql4)[..20],
    ] {
        let mut c = connect_from(proxy, sql).unwrap();
        let started = Instant::now();
        c.write_all(slow).unwrap();
        assert!(
            closed_unprompted(&mut c, Duration::from_secs(10)),
            "a slow header is cut"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "cut by the header timeout"
        );
    }
    assert_eq!(
        seen.lock().unwrap().bytes,
        b"plain from 127.0.0.2\nvia v1\nvia v2\n",
        "only admitted clients' bytes, without headers, reached the workload"
    );

    // Each refusal is counted on serve's /metrics with its reason.
    let metrics = format!("{}/metrics", s.url);
    wait_until("the PROXY protocol refusals counted", 10, || {
        let (st, body) = curl(&[&metrics]);
        assert_eq!(st, 200, "{body}");
        [
            ("REFUSED", "proxy_header_untrusted", 2),
            ("REFUSED", "proxy_header_invalid", 4),
            ("REFUSED", "proxy_header_missing", 1),
            ("REFUSED", "proxy_header_truncated", 1),
            ("REFUSED", "proxy_header_timeout", 2),
            ("REFUSED", "not_allowlisted", 2),
            ("ADMITTED", "allowlisted", 3),
        ]
        .iter()
        .all(|(verdict, reason, n)| {
            body.lines().any(|l| {
                l.starts_with("perimeter_ingress_decisions_total{")
                    && l.contains(&format!("cluster=\"{cid}\""))
                    && l.contains("listener=\"sql\"")
                    && l.contains(&format!("verdict=\"{verdict}\""))
                    && l.contains(&format!("reason=\"{reason}\""))
                    && l.ends_with(&format!(" {n}"))
            })
        })
    });

    let log = s.log_text();
    for needle in [
        "proxy_header_untrusted",
        "proxy_header_invalid",
        "proxy_header_missing",
        "proxy_header_truncated",
        "proxy_header_timeout",
        "source=198.51.100.7:40000",
        "not_allowlisted",
    ] {
        assert!(log.contains(needle), "the log lacks {needle}");
    }
}

#[test]
fn proxy_protocol_on_sqlite() {
    proxy_protocol(&[]);
}

#[test]
fn proxy_protocol_on_postgresql() {
    let db = PgDatabase::create("perimeter_ingress_pp");
    proxy_protocol(&["--database-url", &db.url]);
}

#[test]
fn public_ingress_on_sqlite() {
    public_ingress(&[]);
}

#[test]
fn public_ingress_on_postgresql() {
    let db = PgDatabase::create("perimeter_ingress");
    public_ingress(&["--database-url", &db.url]);
}
