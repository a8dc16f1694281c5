//! Private ingress end to end: `perimeter serve` with its embedded gateways, TCP echo workloads
//! on loopback, real TCP clients bound to distinct loopback sources. On SQLite and PostgreSQL:
//!
//! - **The Rockset flow.** The public path (an allowlisted source on `sql_ingress_address`) and
//!   the private path (a PROXY v2 header naming a registered endpoint id, as an AWS NLB sends
//!   it, on `private_ingress_address`) both reach the workload; the allowlist is emptied and the
//!   public path is refused while the private path still works; an entry re-added for one
//!   source lets only that source in. Unknown ids, headers without the TLV and connections
//!   without a header are refused. A trusted-owner list that does not name the endpoint's
//!   owner rejects its connection (`STATUS_REJECTED`) and cuts it; deleting the connection cuts
//!   it too.
//! - **The CockroachDB flow.** `network_visibility: PRIVATE` (a locked, audited PATCH) closes
//!   the public listeners (the address fields read `""`, the port refuses, open connections are
//!   cut) while private access continues; `PUBLIC` opens them again on the same port.
//! - **Cluster to cluster.** Cluster A's egress private endpoint to cluster B's private endpoint
//!   service reaches B's workload through B's private ingress listener, with A's endpoint
//!   connection id in the PROXY v2 header; B's trusted owners decide whether A gets in.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use perimeter_testkit::clients::{closed, connect_from, echoes};
use perimeter_testkit::pg::PgDatabase;
use perimeter_testkit::{Server, api, connect_tunnel, ok, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const REGION: &str = "us-east-1";

/// A TCP echo workload on loopback; counts the connections it accepted.
fn echo_workload() -> (SocketAddr, Arc<Mutex<usize>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            *count.lock().unwrap() += 1;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
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

/// A PROXY protocol v2 header (PROXY, TCP over IPv4) as an AWS NLB sends it: with the VPC
/// endpoint TLV (0xEA, subtype 0x01) when `vpce` is given.
fn proxy_v2(source: SocketAddrV4, destination: SocketAddrV4, vpce: Option<&str>) -> Vec<u8> {
    let tlv = vpce.map_or(0, |id| 3 + 1 + id.len());
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11]);
    h.extend_from_slice(&((12 + tlv) as u16).to_be_bytes());
    h.extend_from_slice(&source.ip().octets());
    h.extend_from_slice(&destination.ip().octets());
    h.extend_from_slice(&source.port().to_be_bytes());
    h.extend_from_slice(&destination.port().to_be_bytes());
    if let Some(id) = vpce {
        h.push(0xEA);
        h.extend_from_slice(&((1 + id.len()) as u16).to_be_bytes());
        h.push(0x01);
        h.extend_from_slice(id.as_bytes());
    }
    h
}

/// A connection to the private ingress listener from `from`, opened with `header`.
fn private_connection(from: Ipv4Addr, to: SocketAddr, header: &[u8]) -> TcpStream {
    let mut c = connect_from(from, to).unwrap();
    c.write_all(header).unwrap();
    c
}

fn nlb_header(to: SocketAddr, vpce: Option<&str>) -> Vec<u8> {
    let SocketAddr::V4(to) = to else { panic!() };
    proxy_v2("198.51.100.20:51000".parse().unwrap(), to, vpce)
}

fn cluster(s: &Server, key: &str, cid: &str) -> Value {
    ok(s, key, "GET", &format!("/api/v1/clusters/{cid}"), None)
}

fn region_address(s: &Server, key: &str, cid: &str, field: &str) -> String {
    cluster(s, key, cid)["regions"][0][field]
        .as_str()
        .unwrap()
        .to_string()
}

fn networking(cid: &str, what: &str) -> String {
    format!("/api/v1/clusters/{cid}/networking/{what}")
}

fn wait_allowlist_settled(s: &Server, key: &str, cid: &str) {
    wait_until("the allowlist to stop propagating", 30, || {
        ok(s, key, "GET", &networking(cid, "allowlist"), None)["propagating"] == false
    });
}

/// Create the cluster's private endpoint service and wait for it to be served.
fn create_service(s: &Server, key: &str, cid: &str) -> Value {
    let created = ok(
        s,
        key,
        "POST",
        &networking(cid, "private-endpoint-services"),
        Some(json!({})),
    );
    assert_eq!(created["services"][0]["status"], "CREATING", "{created}");
    let mut svc = Value::Null;
    wait_until("the private endpoint service to be AVAILABLE", 30, || {
        svc = ok(
            s,
            key,
            "GET",
            &networking(cid, "private-endpoint-services"),
            None,
        )["services"][0]
            .clone();
        svc["status"] == "AVAILABLE"
    });
    let name = svc["name"].as_str().unwrap();
    let id = svc["endpoint_service_id"].as_str().unwrap();
    assert!(id.starts_with("vpce-svc-") && id.len() == 26, "{svc}");
    assert_eq!(name, format!("com.amazonaws.vpce.{REGION}.{id}"));
    assert_eq!(svc["aws"]["service_name"], name);
    svc
}

fn connection_status(s: &Server, key: &str, cid: &str, endpoint_id: &str) -> String {
    let all = ok(
        s,
        key,
        "GET",
        &networking(cid, "private-endpoint-connections"),
        None,
    );
    all["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["endpoint_id"] == endpoint_id)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn wait_connection(s: &Server, key: &str, cid: &str, endpoint_id: &str, want: &str) {
    wait_until(&format!("connection {endpoint_id} {want}"), 30, || {
        connection_status(s, key, cid, endpoint_id) == want
    });
}

fn set_workload(s: &Server, key: &str, cid: &str, sql: SocketAddr) {
    ok(
        s,
        key,
        "PUT",
        &format!("/api/v1/clusters/{cid}/workload"),
        Some(json!({"regions": {REGION: {"sql": sql.to_string(), "ui": ""}}})),
    );
}

fn allow(s: &Server, key: &str, cid: &str, ip: &str) {
    ok(
        s,
        key,
        "POST",
        &networking(cid, "allowlist"),
        Some(json!({"cidr_ip": ip, "cidr_mask": 32, "name": ip, "sql": true, "ui": false})),
    );
    wait_allowlist_settled(s, key, cid);
}

fn disallow(s: &Server, key: &str, cid: &str, ip: &str) {
    ok(
        s,
        key,
        "DELETE",
        &format!("{}/{ip}/32", networking(cid, "allowlist")),
        None,
    );
    wait_allowlist_settled(s, key, cid);
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const VPCE: &str = "vpce-0a1b2c3d4e5f67890";

fn rockset_flow(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    let cid = api::create_cluster(&s, &key, "rockset-1", &[REGION]);
    let (workload, accepted) = echo_workload();
    set_workload(&s, &key, &cid, workload);
    api::wait_gateways_applied(&s, &key, &cid, 1);
    let public_client = Ipv4Addr::new(127, 0, 0, 2);
    let other_client = Ipv4Addr::new(127, 0, 0, 3);
    let private_client = Ipv4Addr::new(127, 0, 0, 4);
    allow(&s, &key, &cid, "127.0.0.2");

    // Private side: the service, then the customer's endpoint registered.
    create_service(&s, &key, &cid);
    let private = addr(&region_address(&s, &key, &cid, "private_ingress_address"));
    assert!(private.ip().is_loopback());
    let c = ok(
        &s,
        &key,
        "POST",
        &networking(&cid, "private-endpoint-connections"),
        Some(json!({"endpoint_id": VPCE})),
    );
    assert_eq!(c["status"], "STATUS_PENDING", "{c}");
    wait_connection(&s, &key, &cid, VPCE, "STATUS_AVAILABLE");
    // The what-if agrees with the listener.
    let check = |id: &str| {
        ok(
            &s,
            &key,
            "POST",
            &networking(&cid, "ingress-check"),
            Some(json!({"listener": "private", "endpoint_id": id})),
        )
    };
    assert_eq!(check(VPCE)["reason"], "private_endpoint");
    assert_eq!(check("vpce-0ffffffffffffffff")["admitted"], false);

    // 1. Both paths reach the workload.
    let sql = addr(&region_address(&s, &key, &cid, "sql_ingress_address"));
    let mut public = connect_from(public_client, sql).unwrap();
    assert!(echoes(&mut public, "public\n"), "the allowlisted source");
    let mut privately =
        private_connection(private_client, private, &nlb_header(private, Some(VPCE)));
    assert!(
        echoes(&mut privately, "private\n"),
        "the registered endpoint"
    );
    assert_eq!(*accepted.lock().unwrap(), 2);

    // What the private listener refuses, with nothing reaching the workload.
    let refusals: [(&str, Vec<u8>); 4] = [
        (
            "an unknown endpoint id",
            nlb_header(private, Some("vpce-0ffffffffffffffff")),
        ),
        ("a header without the TLV", nlb_header(private, None)),
        (
            "a v1 header",
            b"PROXY TCP4 198.51.100.20 127.0.0.1 51000 26257\r\n".to_vec(),
        ),
        ("no header", b"SELECT 1;\n".to_vec()),
    ];
    for (what, header) in refusals {
        let mut c = private_connection(private_client, private, &header);
        assert!(closed(&mut c), "{what} is refused");
    }
    // The allowlist does not open the private side to an allowlisted source either.
    let mut c = private_connection(public_client, private, b"hello\n");
    assert!(closed(&mut c), "no header from an allowlisted source");
    assert_eq!(
        *accepted.lock().unwrap(),
        2,
        "refusals never reach the workload"
    );

    // 2. The customer empties the allowlist: 3. public refused, private still works.
    disallow(&s, &key, &cid, "127.0.0.2");
    assert!(closed(&mut public), "the open public connection is cut");
    let mut c = connect_from(public_client, sql).unwrap();
    assert!(closed(&mut c), "an empty allowlist admits no one");
    assert!(
        echoes(&mut privately, "still private\n"),
        "the open private connection stands"
    );
    let mut again = private_connection(private_client, private, &nlb_header(private, Some(VPCE)));
    assert!(
        echoes(&mut again, "new private\n"),
        "a new private connection"
    );

    // 4. An entry re-added for one source: only that source gets in.
    allow(&s, &key, &cid, "127.0.0.3");
    let mut c = connect_from(other_client, sql).unwrap();
    assert!(echoes(&mut c, "re-added\n"), "the re-added source");
    let mut c = connect_from(public_client, sql).unwrap();
    assert!(closed(&mut c), "the removed source stays out");

    // Trusted owners that do not name the endpoint's owner reject its connection.
    let owner = ok(
        &s,
        &key,
        "POST",
        &networking(&cid, "private-endpoint-trusted-owners"),
        Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": "123456789012"})),
    );
    wait_connection(&s, &key, &cid, VPCE, "STATUS_REJECTED");
    let cut = |c: &mut TcpStream| {
        let mut ok = false;
        wait_until("the private connection to be cut", 30, || {
            ok = closed(c);
            ok
        });
    };
    cut(&mut privately);
    let mut c = private_connection(private_client, private, &nlb_header(private, Some(VPCE)));
    assert!(closed(&mut c), "a rejected endpoint is refused");
    let owner_id = owner["trusted_owner"]["id"].as_str().unwrap();
    ok(
        &s,
        &key,
        "DELETE",
        &format!(
            "{}/{owner_id}",
            networking(&cid, "private-endpoint-trusted-owners")
        ),
        None,
    );
    wait_connection(&s, &key, &cid, VPCE, "STATUS_AVAILABLE");
    let mut privately =
        private_connection(private_client, private, &nlb_header(private, Some(VPCE)));
    assert!(echoes(&mut privately, "trusted again\n"));

    // Deleting the connection cuts what it carries.
    ok(
        &s,
        &key,
        "DELETE",
        &format!(
            "{}/{VPCE}",
            networking(&cid, "private-endpoint-connections")
        ),
        None,
    );
    cut(&mut privately);
    let mut c = private_connection(private_client, private, &nlb_header(private, Some(VPCE)));
    assert!(closed(&mut c), "a deleted connection admits nothing");

    // Decision events are written by the log's own thread: wait for them.
    for needle in [
        "private_endpoint",
        "unknown_endpoint",
        "no_endpoint_id",
        "proxy_header_missing",
        "REVOKED",
    ] {
        wait_until(&format!("the log to show {needle}"), 10, || {
            s.log_text().contains(needle)
        });
    }
}

fn cockroach_flow(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    let cid = api::create_cluster(&s, &key, "crdb-vis-1", &[REGION]);
    let (workload, _) = echo_workload();
    set_workload(&s, &key, &cid, workload);
    api::wait_gateways_applied(&s, &key, &cid, 1);
    allow(&s, &key, &cid, "127.0.0.2");
    create_service(&s, &key, &cid);
    ok(
        &s,
        &key,
        "POST",
        &networking(&cid, "private-endpoint-connections"),
        Some(json!({"endpoint_id": VPCE})),
    );
    wait_connection(&s, &key, &cid, VPCE, "STATUS_AVAILABLE");
    let private = addr(&region_address(&s, &key, &cid, "private_ingress_address"));
    let mut sql_text = String::new();
    wait_until("the public listener to be shown", 30, || {
        sql_text = region_address(&s, &key, &cid, "sql_ingress_address");
        !sql_text.is_empty()
    });
    let sql = addr(&sql_text);
    let client = Ipv4Addr::new(127, 0, 0, 2);
    let mut public = connect_from(client, sql).unwrap();
    assert!(echoes(&mut public, "public\n"));
    let mut privately = private_connection(client, private, &nlb_header(private, Some(VPCE)));
    assert!(echoes(&mut privately, "private\n"));

    // 1. PRIVATE closes the public side: a networking change under the cluster lock.
    let patched = ok(
        &s,
        &key,
        "PATCH",
        &format!("/api/v1/clusters/{cid}"),
        Some(json!({"dedicated": {"network_visibility": "PRIVATE"}})),
    );
    assert_eq!(patched["network_visibility"], "PRIVATE");
    assert_eq!(patched["regions"][0]["sql_ingress_address"], "");
    wait_until("the visibility change to be observed", 30, || {
        cluster(&s, &key, &cid)["state"] == "CREATED"
    });
    let c = cluster(&s, &key, &cid);
    assert_eq!(c["regions"][0]["sql_ingress_address"], "", "{c}");
    assert_eq!(c["regions"][0]["ui_ingress_address"], "", "{c}");
    assert!(closed(&mut public), "the open public connection is cut");
    wait_until("the public port to refuse", 30, || {
        connect_from(client, sql).is_err()
    });
    // 2. Private access continues.
    assert!(echoes(&mut privately, "still private\n"));
    let mut again = private_connection(client, private, &nlb_header(private, Some(VPCE)));
    assert!(echoes(&mut again, "new private\n"));
    let audit = ok(&s, &key, "GET", "/api/v1/auditlogevents?limit=200", None);
    let visibility_changes = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "AUDIT_LOG_ACTION_UPDATE_CLUSTER"
                && e["payload"].to_string().contains("network_visibility")
        })
        .count();
    assert_eq!(visibility_changes, 1, "{audit}");

    // 3. PUBLIC opens it again, on the same port.
    ok(
        &s,
        &key,
        "PATCH",
        &format!("/api/v1/clusters/{cid}"),
        Some(json!({"dedicated": {"network_visibility": "PUBLIC"}})),
    );
    wait_until("the public listener to be shown again", 30, || {
        let c = cluster(&s, &key, &cid);
        c["state"] == "CREATED" && c["regions"][0]["sql_ingress_address"] == sql_text.as_str()
    });
    let mut public = connect_from(client, sql).unwrap();
    assert!(echoes(&mut public, "public again\n"));

    // A cluster created PRIVATE never shows a public address.
    let created = ok(
        &s,
        &key,
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "crdb-private-1", "provider": "AWS",
            "spec": {"dedicated": {"region_nodes": {REGION: 1}, "network_visibility": "PRIVATE"}}})),
    );
    let pid = created["id"].as_str().unwrap();
    api::wait_gateways_applied(&s, &key, pid, 1);
    let c = cluster(&s, &key, pid);
    assert_eq!(c["network_visibility"], "PRIVATE");
    assert_eq!(c["regions"][0]["sql_ingress_address"], "", "{c}");
    assert_ne!(c["regions"][0]["private_ingress_address"], "", "{c}");
}

fn cluster_to_cluster(args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), args, &[]);
    let key = s.admin_key_file();
    // B: the service side, public side closed (an empty allowlist).
    let b = api::create_cluster(&s, &key, "cluster-b-1", &[REGION]);
    let (workload, accepted) = echo_workload();
    set_workload(&s, &key, &b, workload);
    api::wait_gateways_applied(&s, &key, &b, 1);
    let svc = create_service(&s, &key, &b);
    let private = addr(&region_address(&s, &key, &b, "private_ingress_address"));
    // The service is a `local` endpoint service with PROXY protocol v2.
    let services = ok(&s, &key, "GET", "/api/v1/endpoint-services", None);
    let registered = services["endpoint_services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["service_name"] == svc["name"])
        .cloned()
        .unwrap_or_else(|| panic!("{services}"));
    assert_eq!(registered["proxy_protocol"], true, "{registered}");

    // A: a DEFAULT_DENY cluster whose egress private endpoint targets B's service.
    let a = ok(
        &s,
        &key,
        "POST",
        "/api/v1/clusters",
        Some(json!({"name": "cluster-a-1", "provider": "AWS",
            "spec": {"dedicated": {"region_nodes": {REGION: 1}, "restrict_egress_traffic": true}}})),
    );
    let a_id = a["id"].as_str().unwrap().to_string();
    let a_account = a["account_id"].as_str().unwrap().to_string();
    api::wait_gateways_applied(&s, &key, &a_id, 1);
    let proxy = region_address(&s, &key, &a_id, "egress_proxy_address");
    let ep = ok(
        &s,
        &key,
        "POST",
        &networking(&a_id, "egress-private-endpoints"),
        Some(
            json!({"region": REGION, "target_service_identifier": svc["name"],
            "target_service_type": "PRIVATE_SERVICE"}),
        ),
    );
    let ep_id = ep["id"].as_str().unwrap().to_string();
    let mut ep = Value::Null;
    wait_until("A's endpoint to be AVAILABLE", 30, || {
        ep = ok(
            &s,
            &key,
            "GET",
            &format!("{}/{ep_id}", networking(&a_id, "egress-private-endpoints")),
            None,
        );
        ep["state"] == "AVAILABLE"
    });
    let connection_id = ep["endpoint_connection_id"].as_str().unwrap().to_string();
    let endpoint_address = ep["endpoint_address"].as_str().unwrap().to_string();
    // Reached on CockroachDB's SQL port, whatever port B's private ingress listener has.
    let target = format!("{endpoint_address}:26257");
    assert_ne!(private.port(), 26257);

    // Not registered with B yet: B's private ingress refuses A.
    let (status, mut t) = connect_tunnel(&proxy, &target);
    assert_eq!(status, 200);
    assert!(closed(&mut t), "an unregistered endpoint is refused by B");

    // B registers A's endpoint: A reaches B's workload.
    ok(
        &s,
        &key,
        "POST",
        &networking(&b, "private-endpoint-connections"),
        Some(json!({"endpoint_id": connection_id})),
    );
    wait_connection(&s, &key, &b, &connection_id, "STATUS_AVAILABLE");
    let (status, mut t) = connect_tunnel(&proxy, &target);
    assert_eq!(status, 200);
    assert!(echoes(&mut t, "from cluster a\n"), "A reaches B's workload");
    assert_eq!(*accepted.lock().unwrap(), 1);

    // B trusts only another owner: A's connection is rejected and cut.
    let other = if a_account == "123456789012" {
        "210987654321"
    } else {
        "123456789012"
    };
    let owner = ok(
        &s,
        &key,
        "POST",
        &networking(&b, "private-endpoint-trusted-owners"),
        Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": other})),
    );
    wait_connection(&s, &key, &b, &connection_id, "STATUS_REJECTED");
    wait_until("A's tunnel to be cut", 30, || closed(&mut t));
    // B trusts A's account as well: admitted again.
    ok(
        &s,
        &key,
        "POST",
        &networking(&b, "private-endpoint-trusted-owners"),
        Some(json!({"type": "AWS_ACCOUNT_ID", "external_owner_id": a_account})),
    );
    wait_connection(&s, &key, &b, &connection_id, "STATUS_AVAILABLE");
    let (status, mut t) = connect_tunnel(&proxy, &target);
    assert_eq!(status, 200);
    assert!(echoes(&mut t, "trusted\n"));
    assert!(owner["trusted_owner"]["id"].is_string());
}

#[test]
fn rockset_flow_on_sqlite() {
    rockset_flow(&[]);
}

#[test]
fn rockset_flow_on_postgresql() {
    let db = PgDatabase::create("perimeter_private_rockset");
    rockset_flow(&["--database-url", &db.url]);
}

#[test]
fn cockroach_visibility_flow_on_sqlite() {
    cockroach_flow(&[]);
}

#[test]
fn cockroach_visibility_flow_on_postgresql() {
    let db = PgDatabase::create("perimeter_private_crdb");
    cockroach_flow(&["--database-url", &db.url]);
}

#[test]
fn cluster_to_cluster_on_sqlite() {
    cluster_to_cluster(&[]);
}

#[test]
fn cluster_to_cluster_on_postgresql() {
    let db = PgDatabase::create("perimeter_private_c2c");
    cluster_to_cluster(&["--database-url", &db.url]);
}
