//! Egress private endpoints that carry traffic, end to end: `perimeter serve` with its embedded
//! gateways, services registered through the API, real clients (curl, openssl s_server brokers,
//! raw CONNECT tunnels), on loopback.
//!
//! - A Kafka-style service of three TLS brokers on one port, each with its own name, reached
//!   through one endpoint by SNI; an unknown name is refused.
//! - A plain TCP service (with a PROXY v2 header) by its `endpoint_address` and its custom domain
//!   under DEFAULT_DENY with no egress rule; states observed (`PENDING` -> `AVAILABLE`, domain
//!   names `PENDING` -> `AVAILABLE`); bytes metered; after DELETE, neither name reaches the
//!   backend and the open tunnel is cut. On SQLite and on PostgreSQL.
//! - Plain HTTP (absolute-form, as `HTTP_PROXY` clients send it) to an endpoint.
//! - Acceptance required: `PENDING_ACCEPTANCE`, accepted -> `AVAILABLE`, rejected ->
//!   `REJECTED`, expired -> `EXPIRED`; the documentation's MSK (by its broker port) and
//!   CloudWatch examples `AVAILABLE` with a registered service. On SQLite and on PostgreSQL.
//! - Deleting the cluster cuts its endpoints' open connections.
//! - No live gateway: `FAILED` at the provisioning deadline, with the reason in the audit log,
//!   and the cluster lock released. On SQLite and on PostgreSQL.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use perimeter_testkit::certs::self_signed;
use perimeter_testkit::pg::PgDatabase;
use perimeter_testkit::{Server, api, connect_tunnel, curl, ok, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

fn create_cluster(s: &Server, key: &str, name: &str) -> (String, String, String) {
    let c = ok(
        s,
        key,
        "POST",
        "/api/v1/clusters",
        Some(json!({
            "name": name, "provider": "AWS",
            "spec": {"dedicated": {"region_nodes": {"us-east-1": 3}, "restrict_egress_traffic": true}}
        })),
    );
    let id = c["id"].as_str().unwrap().to_string();
    let account = c["account_id"].as_str().unwrap().to_string();
    let proxy = c["regions"][0]["egress_proxy_address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!proxy.is_empty(), "{c:#}");
    (id, account, proxy)
}

fn endpoints_path(cluster: &str) -> String {
    format!("/api/v1/clusters/{cluster}/networking/egress-private-endpoints")
}

fn create_endpoint(s: &Server, key: &str, cluster: &str, target: &str, kind: &str) -> String {
    let ep = ok(
        s,
        key,
        "POST",
        &endpoints_path(cluster),
        Some(
            json!({"region": "us-east-1", "target_service_identifier": target, "target_service_type": kind}),
        ),
    );
    assert_eq!(ep["state"], "PENDING", "{ep}");
    ep["id"].as_str().unwrap().to_string()
}

fn endpoint(s: &Server, key: &str, cluster: &str, id: &str) -> Value {
    ok(
        s,
        key,
        "GET",
        &format!("{}/{id}", endpoints_path(cluster)),
        None,
    )
}

/// Wait until the endpoint's `bytes_processed` reads at least `at_least`; what it read.
fn wait_metered(s: &Server, key: &str, cluster: &str, id: &str, what: &str, at_least: i64) -> i64 {
    let mut metered = 0;
    wait_until(&format!("bytes_processed to count {what}"), 30, || {
        metered = endpoint(s, key, cluster, id)["bytes_processed"]
            .as_i64()
            .unwrap();
        metered >= at_least
    });
    metered
}

fn wait_state(s: &Server, key: &str, cluster: &str, id: &str, field: &str, want: &str) -> Value {
    let mut last = Value::Null;
    wait_until(&format!("endpoint {id} {field} {want}"), 30, || {
        last = endpoint(s, key, cluster, id);
        last[field] == want
    });
    last
}

fn register_service(s: &Server, key: &str, body: Value) -> Value {
    ok(s, key, "POST", "/api/v1/endpoint-services", Some(body))
}

/// Whether a read says the connection was closed (not merely that the read timed out).
fn closed(read: std::io::Result<usize>) -> bool {
    match read {
        Ok(n) => n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Send `payload` through an open tunnel to the echo service and read it back.
fn echo_through(s: &mut TcpStream, payload: &[u8]) -> Vec<u8> {
    s.write_all(payload).unwrap();
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).unwrap();
    back
}

/// What the echo service saw: the PROXY v2 headers' VPC endpoint ids, one per connection.
#[derive(Default)]
struct Seen {
    vpce_ids: Vec<String>,
    connections: usize,
}

/// A TCP echo service on 127.0.0.1; with `proxy_v2`, each connection must open with a PROXY
/// protocol v2 header, whose AWS VPC endpoint TLV (0xEA/0x01) is recorded.
fn echo_service(proxy_v2: bool) -> (SocketAddr, Arc<Mutex<Seen>>) {
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
                if proxy_v2 {
                    let mut head = [0u8; 16];
                    if c.read_exact(&mut head).is_err() || &head[..12] != b"\r\n\r\n\0\r\nQUIT\n" {
                        return;
                    }
                    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
                    let mut rest = vec![0u8; len];
                    if c.read_exact(&mut rest).is_err() {
                        return;
                    }
                    let addrs = if head[13] == 0x11 { 12 } else { 36 };
                    let mut tlvs = &rest[addrs..];
                    while tlvs.len() >= 3 {
                        let l = u16::from_be_bytes([tlvs[1], tlvs[2]]) as usize;
                        if tlvs[0] == 0xEA && l > 1 && tlvs[3] == 0x01 {
                            let id = String::from_utf8_lossy(&tlvs[4..3 + l]).into_owned();
                            record.lock().unwrap().vpce_ids.push(id);
                        }
                        tlvs = &tlvs[3 + l..];
                    }
                }
                let mut buf = [0u8; 16384];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
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

/// A port free on every one of `ips`.
fn port_free_on(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        if ips[1..]
            .iter()
            .all(|ip| TcpListener::bind((*ip, port)).is_ok())
        {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}

/// `openssl s_server -www` on `ip:port` with a certificate for `name`.
struct Broker {
    child: Child,
    cert: std::path::PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn broker(dir: &Path, ip: Ipv4Addr, port: u16, name: &str) -> Broker {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let cert = self_signed(&dir, &[name]);
    let child = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("{ip}:{port}"))
        .arg("-cert")
        .arg(&cert.cert)
        .arg("-key")
        .arg(&cert.key)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    wait_until(&format!("broker {name} listening"), 20, || {
        TcpStream::connect((ip, port)).is_ok()
    });
    Broker {
        child,
        cert: cert.cert,
    }
}

/// An HTTPS GET of `https://name:port/` through the proxy, trusting `ca`: the status code, 0 if
/// the connection failed.
fn https_via(proxy: &str, ca: &Path, name: &str, port: u16) -> u16 {
    let (code, _) = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "--max-time",
        "10",
        "--proxy",
        &format!("http://{proxy}"),
        "--cacert",
        ca.to_str().unwrap(),
        &format!("https://{name}:{port}/"),
    ]);
    code
}

#[test]
fn kafka_brokers_behind_one_endpoint_by_sni_on_sqlite() {
    kafka_brokers_behind_one_endpoint_by_sni(&[]);
}

#[test]
fn kafka_brokers_behind_one_endpoint_by_sni_on_postgresql() {
    let db = PgDatabase::create("perimeter_kafka");
    kafka_brokers_behind_one_endpoint_by_sni(&["--database-url", &db.url]);
}

fn kafka_brokers_behind_one_endpoint_by_sni(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    let (cluster, account, proxy) = create_cluster(&s, &key, "kafka-sni");

    let ips = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 0, 0, 2),
        Ipv4Addr::new(127, 0, 0, 3),
    ];
    let port = port_free_on(&ips);
    let brokers: Vec<Broker> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| broker(dir.path(), *ip, port, &format!("b-{}.kafka.test", i + 1)))
        .collect();
    let backends: Vec<Value> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| json!({"address": format!("{ip}:{port}"), "server_names": [format!("b-{}.kafka.test", i + 1)]}))
        .collect();
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-kafkabrokers";
    register_service(
        &s,
        &key,
        json!({"service_name": service, "region": "us-east-1", "backends": backends, "allow_special_addresses": true,
               "acceptance_required": true, "auto_accept_accounts": [account]}),
    );
    let id = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    let ep = wait_state(&s, &key, &cluster, &id, "state", "AVAILABLE");
    assert!(
        ep["endpoint_address"]
            .as_str()
            .unwrap()
            .ends_with(".us-east-1.endpoints.perimeter.internal"),
        "{ep}"
    );
    ok(
        &s,
        &key,
        "PATCH",
        &format!("{}/{id}", endpoints_path(&cluster)),
        Some(json!({"domain_names": ["*.kafka.test"]})),
    );
    wait_state(&s, &key, &cluster, &id, "domain_names_state", "AVAILABLE");

    // Each broker answers on its own name: curl checks the certificate of the name it asked.
    for (i, b) in brokers.iter().enumerate() {
        let name = format!("b-{}.kafka.test", i + 1);
        assert_eq!(https_via(&proxy, &b.cert, &name, port), 200, "{name}");
    }
    // A name under the endpoint's domain that no broker serves: refused after the ClientHello.
    assert_eq!(
        https_via(&proxy, &brokers[0].cert, "b-9.kafka.test", port),
        0
    );
    // A broker's name with another broker's certificate trusted fails verification: the
    // routing followed the SNI, not the order of the backends.
    assert_eq!(
        https_via(&proxy, &brokers[1].cert, "b-1.kafka.test", port),
        0
    );
    // The log is written by a thread of its own, a moment later.
    wait_until("the refusal to be logged with its SNI", 10, || {
        let log = s.log_text();
        log.contains("private_endpoint_server_name") && log.contains("b-9.kafka.test")
    });

    // A name another endpoint of the cluster claims is refused, naming the field.
    let second = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    wait_state(&s, &key, &cluster, &second, "state", "AVAILABLE");
    let (st, b) = api(
        &s,
        &key,
        "PATCH",
        &format!("{}/{second}", endpoints_path(&cluster)),
        Some(json!({"domain_names": ["other.test", "OTHER.test", "*.kafka.test"]})),
    );
    assert_eq!(st, 400, "{b}");
    // The place in the list as sent, though the repeated name is checked once.
    assert!(b.contains("domain_names[2]") && b.contains(&id), "{b}");
}

fn plain_service_lifecycle(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    let (cluster, _account, proxy) = create_cluster(&s, &key, "plain-service");
    let (backend, seen) = echo_service(true);
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-plainecho";
    let svc = register_service(
        &s,
        &key,
        json!({"service_name": service, "region": "us-east-1",
               "backends": [backend.to_string()], "allow_special_addresses": true, "proxy_protocol": true}),
    );
    assert_eq!(svc["proxy_protocol"], true, "{svc}");
    let id = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    let ep = wait_state(&s, &key, &cluster, &id, "state", "AVAILABLE");
    let address = ep["endpoint_address"].as_str().unwrap().to_string();
    let connection_id = ep["endpoint_connection_id"].as_str().unwrap().to_string();
    let port = backend.port();

    // DEFAULT_DENY and no egress rule: the endpoint's own name reaches the service.
    let (status, mut t) = connect_tunnel(&proxy, &format!("{address}:{port}"));
    assert_eq!(status, 200);
    assert_eq!(echo_through(&mut t, b"hello endpoint"), b"hello endpoint");
    drop(t);
    // A port the service does not listen on, and an unrelated name, are refused.
    let (status, _) = connect_tunnel(
        &proxy,
        &format!("{address}:{}", port.wrapping_add(1).max(1)),
    );
    assert_eq!(status, 403);
    let (status, _) = connect_tunnel(&proxy, &format!("unrelated.test:{port}"));
    assert_eq!(status, 403);

    // A custom domain, observed on the gateways before it reads AVAILABLE.
    ok(
        &s,
        &key,
        "PATCH",
        &format!("{}/{id}", endpoints_path(&cluster)),
        Some(json!({"domain_names": ["svc.internal.test"]})),
    );
    wait_state(&s, &key, &cluster, &id, "domain_names_state", "AVAILABLE");
    let (status, mut t) = connect_tunnel(&proxy, &format!("svc.internal.test:{port}"));
    assert_eq!(status, 200);
    let payload = vec![7u8; 100_000];
    assert_eq!(echo_through(&mut t, &payload), payload);
    drop(t);
    // Every backend connection opened with the endpoint's connection id.
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.vpce_ids.len(),
            seen.connections,
            "every connection had the header"
        );
        assert!(
            seen.vpce_ids.iter().all(|v| *v == connection_id),
            "{:?}",
            seen.vpce_ids
        );
    }
    // Metering: what went through, both ways, pushed by the gateway.
    let sent = 2 * (b"hello endpoint".len() + payload.len()) as i64;
    let metered = wait_metered(&s, &key, &cluster, &id, "the tunnels", sent);
    assert_eq!(metered, sent, "bytes metered equal the bytes sent");

    // DELETE cuts the open tunnel, and neither name reaches the backend afterwards.
    let (status, mut open) = connect_tunnel(&proxy, &format!("svc.internal.test:{port}"));
    assert_eq!(status, 200);
    assert_eq!(echo_through(&mut open, b"before"), b"before");
    // Metered while it stays open: the push meters live connections too.
    let sent = sent + 2 * b"before".len() as i64;
    let metered = wait_metered(&s, &key, &cluster, &id, "the open tunnel", sent);
    assert_eq!(metered, sent, "the open tunnel's bytes, metered once");
    let connections = seen.lock().unwrap().connections;
    ok(
        &s,
        &key,
        "DELETE",
        &format!("{}/{id}", endpoints_path(&cluster)),
        None,
    );
    wait_until("the endpoint to be gone", 30, || {
        api(
            &s,
            &key,
            "GET",
            &format!("{}/{id}", endpoints_path(&cluster)),
            None,
        )
        .0 == 404
    });
    let _ = open.write_all(b"after");
    let mut buf = [0u8; 16];
    let cut = closed(open.read(&mut buf));
    assert!(cut, "the open tunnel is cut once the endpoint is deleted");
    for target in [
        format!("{address}:{port}"),
        format!("svc.internal.test:{port}"),
    ] {
        let (status, _) = connect_tunnel(&proxy, &target);
        assert_eq!(status, 403, "{target} after deletion");
    }
    assert_eq!(
        seen.lock().unwrap().connections,
        connections,
        "no connection reached the backend after the deletion"
    );
    // The lock is released: another networking change goes through.
    let (st, b) = api(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{cluster}/networking/egress-rules"),
        Some(
            json!({"name": "after-endpoint", "type": "FQDN", "destination": "example.test", "ports": [443], "description": "after"}),
        ),
    );
    assert!((200..300).contains(&st), "{st} {b}");
}

#[test]
fn plain_service_by_address_and_domain_on_sqlite() {
    plain_service_lifecycle(&[]);
}

#[test]
fn plain_service_by_address_and_domain_on_postgresql() {
    let db = PgDatabase::create("perimeter_endpoints");
    plain_service_lifecycle(&["--database-url", &db.url]);
}

#[test]
fn acceptance_rejection_expiry_and_msk_on_sqlite() {
    acceptance_rejection_expiry_and_msk(&[]);
}

#[test]
fn acceptance_rejection_expiry_and_msk_on_postgresql() {
    let db = PgDatabase::create("perimeter_acceptance");
    acceptance_rejection_expiry_and_msk(&["--database-url", &db.url]);
}

fn acceptance_rejection_expiry_and_msk(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    let (cluster, _account, proxy) = create_cluster(&s, &key, "acceptance");
    let (backend, _seen) = echo_service(false);

    // Acceptance required, not auto-accepted: PENDING_ACCEPTANCE until the owner accepts.
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-needsaccept";
    let svc = register_service(
        &s,
        &key,
        json!({"service_name": service, "region": "us-east-1", "backends": [backend.to_string()], "allow_special_addresses": true,
               "acceptance_required": true}),
    );
    let svc_id = svc["id"].as_str().unwrap().to_string();
    let connections = |s: &Server| {
        ok(
            s,
            &key,
            "GET",
            &format!("/api/v1/endpoint-services/{svc_id}/connections"),
            None,
        )["connections"]
            .as_array()
            .unwrap()
            .clone()
    };
    let first = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    wait_state(&s, &key, &cluster, &first, "state", "PENDING_ACCEPTANCE");
    let conn = connections(&s)[0]["id"].as_str().unwrap().to_string();
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/endpoint-services/{svc_id}/connections/{conn}/accept"),
        None,
    );
    let ep = wait_state(&s, &key, &cluster, &first, "state", "AVAILABLE");
    let (status, mut t) = connect_tunnel(
        &proxy,
        &format!(
            "{}:{}",
            ep["endpoint_address"].as_str().unwrap(),
            backend.port()
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(echo_through(&mut t, b"accepted"), b"accepted");
    drop(t);
    ok(
        &s,
        &key,
        "DELETE",
        &format!("{}/{first}", endpoints_path(&cluster)),
        None,
    );
    wait_until("the first endpoint to be gone", 30, || {
        api(
            &s,
            &key,
            "GET",
            &format!("{}/{first}", endpoints_path(&cluster)),
            None,
        )
        .0 == 404
    });

    // Rejected by the owner.
    let second = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    wait_state(&s, &key, &cluster, &second, "state", "PENDING_ACCEPTANCE");
    let conn = connections(&s)
        .iter()
        .find(|c| c["egress_private_endpoint_id"] == second.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/endpoint-services/{svc_id}/connections/{conn}/reject"),
        None,
    );
    wait_state(&s, &key, &cluster, &second, "state", "REJECTED");

    // Not accepted in time.
    let slow = "com.amazonaws.vpce.us-east-1.vpce-svc-neveraccepted";
    register_service(
        &s,
        &key,
        json!({"service_name": slow, "region": "us-east-1", "backends": [backend.to_string()], "allow_special_addresses": true,
               "acceptance_required": true, "acceptance_timeout_seconds": 1}),
    );
    let third = create_endpoint(&s, &key, &cluster, slow, "PRIVATE_SERVICE");
    wait_state(&s, &key, &cluster, &third, "state", "EXPIRED");

    // The documentation's MSK example: its SASL/SCRAM broker port reaches the backend.
    let msk = "arn:aws:kafka:us-east-1:123456789012:cluster/msk-example/99bcd320-3af1-42cc-b8cc-example-7";
    register_service(
        &s,
        &key,
        json!({"service_name": msk, "region": "us-east-1", "backends": [backend.to_string()], "allow_special_addresses": true}),
    );
    let msk_ep = create_endpoint(&s, &key, &cluster, msk, "MSK_SASL_SCRAM");
    let ep = wait_state(&s, &key, &cluster, &msk_ep, "state", "AVAILABLE");
    let address = ep["endpoint_address"].as_str().unwrap();
    let (status, mut t) = connect_tunnel(&proxy, &format!("{address}:9096"));
    assert_eq!(status, 200);
    assert_eq!(echo_through(&mut t, b"scram"), b"scram");
    let (status, _) = connect_tunnel(&proxy, &format!("{address}:{}", backend.port()));
    assert_eq!(status, 403, "an MSK endpoint exposes its broker port only");

    // The documentation's CloudWatch example (its ".log" spelling), served by a registered
    // service: AVAILABLE, and reachable.
    let logs = "com.amazonaws.us-east-1.log";
    register_service(
        &s,
        &key,
        json!({"service_name": logs, "region": "us-east-1", "backends": [backend.to_string()], "allow_special_addresses": true}),
    );
    let logs_ep = create_endpoint(&s, &key, &cluster, logs, "PRIVATE_SERVICE");
    let ep = wait_state(&s, &key, &cluster, &logs_ep, "state", "AVAILABLE");
    let (status, mut logs_tunnel) = connect_tunnel(
        &proxy,
        &format!(
            "{}:{}",
            ep["endpoint_address"].as_str().unwrap(),
            backend.port()
        ),
    );
    assert_eq!(status, 200);
    assert_eq!(echo_through(&mut logs_tunnel, b"log line"), b"log line");

    // Deleting the cluster closes its forwarders and cuts their open connections.
    ok(
        &s,
        &key,
        "DELETE",
        &format!("/api/v1/clusters/{cluster}"),
        None,
    );
    let mut buf = [0u8; 16];
    let cut = closed(t.read(&mut buf));
    assert!(cut, "the open tunnel is cut once its cluster is deleted");
    assert!(
        closed(logs_tunnel.read(&mut buf)),
        "every endpoint's tunnel is cut"
    );
}

#[test]
fn no_live_gateway_fails_at_the_deadline_on_sqlite() {
    no_live_gateway_fails_at_the_deadline_and_releases_the_lock(&[]);
}

#[test]
fn no_live_gateway_fails_at_the_deadline_on_postgresql() {
    let db = PgDatabase::create("perimeter_no_gateway");
    no_live_gateway_fails_at_the_deadline_and_releases_the_lock(&["--database-url", &db.url]);
}

fn no_live_gateway_fails_at_the_deadline_and_releases_the_lock(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--no-embedded-gateways", "--provision-timeout-seconds", "2"];
    all.extend_from_slice(args);
    let s = Server::start(BIN, dir.path(), &all, &[]);
    let key = s.admin_key_file();
    let c = ok(
        &s,
        &key,
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "no-gateway", "provider": "AWS",
                    "spec": {"dedicated": {"region_nodes": {"us-east-1": 3}}}})),
    );
    let cluster = c["id"].as_str().unwrap().to_string();
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-nogateway";
    register_service(
        &s,
        &key,
        json!({"service_name": service, "region": "us-east-1", "backends": ["127.0.0.1:9"], "allow_special_addresses": true}),
    );
    let id = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    // While it waits for a gateway, the cluster is locked: another endpoint is a 409.
    let another = json!({"region": "us-east-1", "target_service_identifier": service, "target_service_type": "PRIVATE_SERVICE"});
    let (st, b) = api(
        &s,
        &key,
        "POST",
        &endpoints_path(&cluster),
        Some(another.clone()),
    );
    assert_eq!(st, 409, "{b}");
    let state = || {
        ok(
            &s,
            &key,
            "GET",
            &format!("/api/v1/clusters/{cluster}"),
            None,
        )["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        state(),
        "LOCKED",
        "the reference's state while the lock is held"
    );
    let failed = wait_state(&s, &key, &cluster, &id, "state", "FAILED");
    assert_eq!(state(), "CREATED", "the lock is released");
    assert_eq!(
        failed["endpoint_address"].as_str().map(str::is_empty),
        Some(false)
    );
    let (st, b) = api(&s, &key, "POST", &endpoints_path(&cluster), Some(another));
    assert!((200..300).contains(&st), "the lock is released: {st} {b}");
    let audit = ok(&s, &key, "GET", "/api/v1/auditlogevents?limit=1000", None);
    let text = audit.to_string();
    assert!(
        text.contains("no live gateway in region us-east-1"),
        "the reason is in the audit log: {text}"
    );
}

#[test]
fn plain_http_through_the_proxy_reaches_an_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &[], &[]);
    let key = s.admin_key_file();
    let (cluster, _account, proxy) = create_cluster(&s, &key, "plain-http");
    let port = perimeter_testkit::http_upstream();
    // Backends a forwarder never dials are refused at registration, naming the field.
    for (i, bad) in ["169.254.169.254:80", "[fe80::1]:80", "0.0.0.0:80"]
        .iter()
        .enumerate()
    {
        let (st, b) = api(
            &s,
            &key,
            "POST",
            "/api/v1/endpoint-services",
            Some(
                json!({"service_name": format!("com.amazonaws.vpce.us-east-1.vpce-svc-bad{i}"),
                        "region": "us-east-1", "backends": ["127.0.0.1:9", bad], "allow_special_addresses": true}),
            ),
        );
        assert_eq!(st, 400, "{bad}: {b}");
        assert!(b.contains("backends[1]"), "{bad}: {b}");
    }
    let service = "com.amazonaws.vpce.us-east-1.vpce-svc-plainhttp";
    register_service(
        &s,
        &key,
        json!({"service_name": service, "region": "us-east-1", "backends": [format!("127.0.0.1:{port}")], "allow_special_addresses": true}),
    );
    let id = create_endpoint(&s, &key, &cluster, service, "PRIVATE_SERVICE");
    let ep = wait_state(&s, &key, &cluster, &id, "state", "AVAILABLE");
    let address = ep["endpoint_address"].as_str().unwrap();
    // Absolute-form, as HTTP_PROXY clients send http:// URLs: no tunnel needed.
    let (code, body) = curl(&[
        "-sS",
        "--max-time",
        "10",
        "--proxy",
        &format!("http://{proxy}"),
        &format!("http://{address}:{port}/orders?id=7"),
    ]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("upstream-ok /orders?id=7"), "{body}");
    wait_metered(&s, &key, &cluster, &id, "the request", 1);
    // Another port of the endpoint's name is refused with the reason.
    let (code, body) = curl(&[
        "-sS",
        "-i",
        "--max-time",
        "10",
        "--proxy",
        &format!("http://{proxy}"),
        &format!("http://{address}:{}/", port.wrapping_add(1).max(1)),
    ]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("private_endpoint_port"), "{body}");
}
