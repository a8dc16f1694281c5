//! The bypasses and wrong answers found when the gateway was attacked from inside (issue 8,
//! findings 1 to 7), each a named case that asserts the verdict, the reason, and that nothing
//! of a refused request reached the upstream (judged from the upstreams' own logs).
//!
//! A refusal before a tunnel opens carries `x-perimeter-error`; a refusal inside an open tunnel
//! is either an answer inside it (with `x-perimeter-error`) or the tunnel closed, whose reason
//! is read from the gateway's decision log (`--log-format json`): the event whose `source` is
//! the test's own connection.
//!
//! Each scenario collects the failures of all its cases and reports them together, so a run
//! on a gateway that lacks a fix lists every case the fix must turn.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use perimeter_testkit::api::{add_rule, delete_rule_applied, set_traffic_policy, wait_rule_active};
use perimeter_testkit::{Gateway, Server};
use serde_json::{Value, json};

use crate::case::{self, Reason, case, curl, curl_with, raw_bytes, tls};
use crate::clients::{Conn, Reply, curl_via};
use crate::fixture::{Addrs, HOMOGRAPH_UTF8, HttpServer, Net, NetOptions};
use crate::{Perimeter, start_perimeter};

/// Seconds to wait for a decision event, for a tunnel to close, for an upstream's event.
const WAIT: u64 = 5;

// ---------------------------------------------------------------------------------------------
// One scenario: a namespace fixture, a control plane, a gateway logging JSON.

struct Env {
    // Dropped in this order: the gateway, the control plane, then the namespaces.
    gw: Gateway,
    s: Server,
    key: String,
    cid: String,
    /// Rule ids by name.
    rules: HashMap<String, String>,
    net: Net,
}

/// A scenario under `policy` with the rules `rules` makes of the slot's addresses.
fn env(
    cluster: &str,
    opts: NetOptions,
    policy: &str,
    rules: impl FnOnce(Addrs) -> Vec<Value>,
) -> Env {
    let net = Net::new(opts);
    let Perimeter { s, key, cid, gw } =
        start_perimeter(&net, cluster, "gw-1", &["--log-format", "json"]);
    set_traffic_policy(&s, &key, &cid, policy);
    let mut ids = HashMap::new();
    for body in rules(net.a) {
        let name = body["name"].as_str().unwrap().to_string();
        let rule = add_rule(&s, &key, &cid, body);
        let id = rule["id"].as_str().unwrap().to_string();
        wait_rule_active(&s, &key, &cid, &id);
        ids.insert(name, id);
    }
    Env {
        gw,
        s,
        key,
        cid,
        rules: ids,
        net,
    }
}

impl Env {
    fn proxy(&self) -> &str {
        &self.gw.proxy
    }

    /// How many decision events the gateway has logged so far.
    fn decisions_so_far(&self) -> usize {
        self.gw.decisions().len()
    }

    /// The first decision event after the first `since` that `pick` accepts, waiting [`WAIT`]
    /// s for it.
    fn decision_where(
        &self,
        since: usize,
        what: &str,
        pick: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + Duration::from_secs(WAIT);
        loop {
            let all = self.gw.decisions();
            if let Some(e) = all.iter().skip(since).find(|e| pick(e)) {
                return Ok(e.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("no decision event {what} in {WAIT} s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The decision event of the client connection `c` with `reason`, logged after the first
    /// `since`.
    fn decision(&self, c: &Conn, since: usize, reason: &str) -> Result<Value, String> {
        let source = c.source.as_str();
        self.decision_where(since, &format!("with reason {reason}"), |e| {
            e["source"] == source && e["reason"] == reason
        })
        .map_err(|why| {
            let mine: Vec<Value> = self
                .gw
                .decisions()
                .into_iter()
                .skip(since)
                .filter(|e| e["source"] == source)
                .collect();
            format!("{why}; the connection's events: {mine:?}")
        })
    }

    /// Delete the rule `name` and wait until the API no longer has it: the gateway applied it.
    fn delete_rule(&self, name: &str) {
        delete_rule_applied(&self.s, &self.key, &self.cid, &self.rules[name]);
    }
}

/// Record `result` of the case `name`.
fn check(failures: &mut Vec<String>, name: &str, result: Result<(), String>) {
    if let Err(why) = result {
        failures.push(format!("{name}: {why}"));
    }
}

/// Poll `f` every 50 ms for `secs` at most; its first `Some`.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether an upstream event mentions `text` anywhere (path, Host, raw bytes, body).
fn mentions(e: &Value, text: &str) -> bool {
    e.to_string().contains(text)
}

// ---------------------------------------------------------------------------------------------
// Findings 1 and 4: HTTP inside CONNECT tunnels, as real servers parse it.

/// How a request is spelled.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    /// An empty line before the request line (RFC 9112 section 2.2 lets servers skip it).
    LeadingEmptyLine,
    /// Lines ended by LF alone.
    BareLf,
    /// The method in lower case.
    LowerCaseMethod,
    /// A space before the method.
    LeadingSpace,
    /// A tab between the method and the target.
    TabAfterMethod,
}

impl Spelling {
    /// Spellings that servers read one way only: the gateway serves them request by request.
    const LENIENT: [Spelling; 3] = [
        Spelling::LeadingEmptyLine,
        Spelling::BareLf,
        Spelling::LowerCaseMethod,
    ];
    /// Spellings that servers read differently: the gateway closes the tunnel.
    const AMBIGUOUS: [Spelling; 2] = [Spelling::LeadingSpace, Spelling::TabAfterMethod];

    fn name(self) -> &'static str {
        match self {
            Spelling::LeadingEmptyLine => "a leading empty line",
            Spelling::BareLf => "bare LF line ends",
            Spelling::LowerCaseMethod => "a lower-case method",
            Spelling::LeadingSpace => "a space before the method",
            Spelling::TabAfterMethod => "a tab after the method",
        }
    }

    /// `GET path HTTP/1.1` with `Host: host`, so spelled.
    fn request(self, path: &str, host: &str) -> Vec<u8> {
        match self {
            Spelling::LeadingEmptyLine => {
                format!("\r\nGET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
            }
            Spelling::BareLf => format!("GET {path} HTTP/1.1\nHost: {host}\n\n"),
            Spelling::LowerCaseMethod => format!("get {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            Spelling::LeadingSpace => format!(" GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            Spelling::TabAfterMethod => format!("GET\t{path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        }
        .into_bytes()
    }
}

/// What must come of an [`Exchange`].
#[derive(Debug)]
enum Expect {
    /// The gateway answers (inside the tunnel) with `status` and `reason`; its decision event
    /// records `host` as the Host sent; nothing reaches the upstream.
    Answered {
        status: u16,
        reason: &'static str,
        host: &'static str,
    },
    /// The tunnel is closed with `reason` in the decision log; nothing reaches the upstream.
    Closed(&'static str),
    /// The request reaches the upstream, with this Host when given.
    Reaches(Option<&'static str>),
}

/// Bytes sent to the gateway, in a tunnel or not, and what must come of them.
#[derive(Debug)]
struct Exchange {
    name: String,
    /// CONNECT this target first; `None`: the bytes go to the proxy as they are.
    tunnel: Option<&'static str>,
    bytes: Vec<u8>,
    /// A path found in this exchange's request only, to find it in the upstream's log.
    marker: String,
    expect: Expect,
}

/// The exchanges of findings 1 and 4 against the server named `server`.
/// The rules: `allowed.test` port 80 paths `/api/*`, and `*.allowed.test` port 80 (no paths).
fn tunnel_exchanges(server: &str) -> Vec<Exchange> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut marker = |prefix: &str| {
        n += 1;
        format!("{prefix}/{server}-{n}")
    };
    let mut push = |name: String, tunnel, bytes: Vec<u8>, marker: String, expect| {
        out.push(Exchange {
            name,
            tunnel: Some(tunnel),
            bytes,
            marker,
            expect,
        })
    };
    // 1. A tunnel to the path-ruled allowed.test:80 is never opened (`paths.rs`: CONNECT to a
    // port whose only rules carry paths is `path_needs_tls_inspection`), so path rules cannot
    // be bypassed through one. A tunnel to a name without path rules: every request of it is
    // checked, whatever its spelling.
    let t = "dns.allowed.test:80";
    for sp in Spelling::LENIENT {
        let m = marker("/api");
        let name = format!("1. CONNECT {t}, {}: an allowed request", sp.name());
        push(
            name,
            t,
            sp.request(&m, "dns.allowed.test"),
            m,
            Expect::Reaches(None),
        );
        let m = marker("/api");
        let name = format!(
            "1. CONNECT {t}, {}: Host of another virtual host",
            sp.name()
        );
        let expect = Expect::Answered {
            status: 400,
            reason: "host_mismatch",
            host: "vhost.test",
        };
        push(name, t, sp.request(&m, "vhost.test"), m, expect);
    }
    for sp in Spelling::AMBIGUOUS {
        let m = marker("/api");
        let name = format!(
            "1. CONNECT {t}, {}: Host of another virtual host",
            sp.name()
        );
        let bytes = sp.request(&m, "vhost.test");
        push(name, t, bytes, m, Expect::Closed("invalid_http_request"));
    }
    let m = marker("/secret");
    let bytes = format!("GET {m}\r\n").into_bytes();
    let name = format!("1. CONNECT {t}, HTTP/0.9");
    push(name, t, bytes, m, Expect::Closed("http09_request"));
    let m = marker("/api");
    let bytes = format!("GET {m}\r\nHost: vhost.test\r\n\r\n").into_bytes();
    let name = format!("1. CONNECT {t}, HTTP/0.9 with a Host header");
    push(name, t, bytes, m, Expect::Closed("http09_request"));

    // 4. `Connection: host` never removes the Host the decision used.
    for (t, host, connection) in [
        ("dns.allowed.test:80", "dns.allowed.test", "host"),
        (
            "dns.allowed.test:80",
            "dns.allowed.test",
            "Host, keep-alive",
        ),
    ] {
        let m = marker("/api");
        let bytes = format!("GET {m} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n");
        let name = format!("4. CONNECT {t}, Connection: {connection}");
        push(name, t, bytes.into_bytes(), m, Expect::Reaches(Some(host)));
    }
    for connection in ["host", "Host, keep-alive"] {
        let m = marker("/api");
        out.push(Exchange {
            name: format!("4. absolute-form, Connection: {connection}"),
            tunnel: None,
            bytes: format!(
                "GET http://allowed.test{m} HTTP/1.1\r\nHost: allowed.test\r\nConnection: {connection}\r\n\r\n"
            )
            .into_bytes(),
            marker: m,
            expect: Expect::Reaches(Some("allowed.test")),
        });
    }
    out
}

/// Run one exchange; why it failed, if it did.
fn exchange(env: &Env, x: &Exchange) -> Result<(), String> {
    let since = env.decisions_so_far();
    let mut c = Conn::open(env.proxy());
    if let Some(t) = x.tunnel {
        c.connect(t)
            .map_err(|head| format!("CONNECT {t} answered {head:?}"))?;
    }
    let _ = c.send(&x.bytes);
    let events = || env.net.server_events();
    match x.expect {
        Expect::Answered {
            status,
            reason,
            host,
        } => {
            match c.response(10) {
                Reply::Response {
                    status: s,
                    reason: Some(r),
                    ..
                } if s == status && r == reason => {}
                other => {
                    return Err(format!(
                        "expected {status} {reason} from the gateway, got {}",
                        other.describe()
                    ));
                }
            }
            let e = env.decision(&c, since, reason)?;
            if e["sni_or_host"] != host {
                return Err(format!(
                    "the decision event records Host {} instead of the {host} sent",
                    e["sni_or_host"]
                ));
            }
        }
        Expect::Closed(reason) => {
            match c.until_closed(WAIT) {
                Err(text) => {
                    return Err(format!(
                        "the tunnel was still open after {WAIT} s; it had sent {text:?}"
                    ));
                }
                Ok(text) if !text.is_empty() && !text.contains("x-perimeter-error") => {
                    return Err(format!("an answer came back before the close: {text:?}"));
                }
                Ok(_) => {}
            }
            env.decision(&c, since, reason)?;
        }
        Expect::Reaches(host) => {
            let reply = c.response(WAIT);
            let pick = |e: &Value| mentions(e, &x.marker);
            let Some(_) = poll(WAIT, || events().into_iter().find(pick)) else {
                return Err(format!(
                    "the upstream never got it; the client got {}",
                    reply.describe()
                ));
            };
            if let Some(host) = host {
                let all = events();
                let request = all
                    .iter()
                    .find(|e| e["kind"] == "request" && e["path"] == x.marker.as_str());
                match request {
                    Some(e) if e["host"] == host => {}
                    Some(e) => {
                        return Err(format!(
                            "the upstream got Host {} instead of {host}: {e}",
                            e["host"]
                        ));
                    }
                    None => return Err("the upstream parsed no such request".into()),
                }
            }
            return Ok(());
        }
    }
    match events().into_iter().find(|e| mentions(e, &x.marker)) {
        Some(e) => Err(format!("it reached the upstream: {e}")),
        None => Ok(()),
    }
}

fn http_in_tunnels(server: HttpServer, label: &str) {
    let e = env(
        &format!("bypass-tunnel-{label}"),
        NetOptions {
            http: server,
            ..NetOptions::default()
        },
        "DEFAULT_DENY",
        |_| {
            vec![
                json!({"name": "allowed-api", "type": "FQDN", "destination": "allowed.test", "ports": [80], "paths": ["/api/*"], "description": "allowed's API over HTTP"}),
                json!({"name": "below-allowed", "type": "FQDN", "destination": "*.allowed.test", "ports": [80], "description": "names below allowed.test"}),
            ]
        },
    );
    let mut failures = Vec::new();
    for x in tunnel_exchanges(label) {
        let r = exchange(&e, &x);
        check(&mut failures, &x.name, r);
    }
    // Overall: no refused request reached the server, in any spelling.
    for ev in e.net.server_events() {
        if mentions(&ev, "/secret") || mentions(&ev, "vhost.test") {
            failures.push(format!(
                "the {label} upstream logged a refused request: {ev}"
            ));
        }
    }
    case::assert_passed(&format!("HTTP in tunnels, {label} upstream"), &failures);
}

#[test]
fn http_in_tunnels_is_checked_request_by_request_python() {
    http_in_tunnels(HttpServer::Python, "python");
}

#[test]
fn http_in_tunnels_is_checked_request_by_request_node() {
    http_in_tunnels(HttpServer::Node, "node");
}

// ---------------------------------------------------------------------------------------------
// Finding 2: deleting a rule stops the traffic it allowed, in flight.

/// One chunk of a chunked body.
fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

/// A chunked upload to `host`'s `/api/upload-<tag>` (absolute-form, or in a tunnel to
/// `tunnel`), the rule `rule` deleted between two chunks: the second (`AFTER-REVOKE-<tag>`) must never reach the
/// upstream, and the connection is closed.
fn upload_after_revocation(
    e: &Env,
    tunnel: Option<&str>,
    host: &str,
    rule: &str,
    tag: &str,
) -> Result<(), String> {
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    let target = match tunnel {
        Some(t) => {
            c.connect(t)
                .map_err(|h| format!("CONNECT {t} answered {h:?}"))?;
            format!("/api/upload-{tag}")
        }
        None => format!("http://{host}/api/upload-{tag}"),
    };
    let (before, after) = (
        format!("BEFORE-REVOKE-{tag}"),
        format!("AFTER-REVOKE-{tag}"),
    );
    let head =
        format!("POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n");
    let _ = c.send(head.as_bytes());
    let _ = c.send(&chunk(&before));
    let body_has = |text: &str| {
        e.net
            .server_events()
            .into_iter()
            .find(|ev| ev["kind"] == "body" && mentions(ev, text))
    };
    if poll(10, || body_has(&before)).is_none() {
        return Err(format!(
            "the upload never started: the upstream got no first chunk; events {:?}",
            e.net.server_events()
        ));
    }
    let closed_before = |ev: &Value| ev["kind"] == "closed";
    let closes = e
        .net
        .server_events()
        .into_iter()
        .filter(closed_before)
        .count();
    e.delete_rule(rule);
    let _ = c.send(&chunk(&after));
    let closed = c.until_closed(WAIT);
    // The upstream's side of the upload ends too (bounded; its absence is judged below).
    poll(WAIT, || {
        let now = e
            .net
            .server_events()
            .into_iter()
            .filter(closed_before)
            .count();
        (now > closes).then_some(())
    });
    if let Some(ev) = body_has(&after) {
        return Err(format!(
            "a chunk sent after the deletion was applied reached the upstream: {ev}"
        ));
    }
    if let Err(text) = closed {
        return Err(format!(
            "the gateway kept the upload open after the deletion; it had sent {text:?}"
        ));
    }
    e.decision(&c, since, "policy_revoked").map(drop)
}

/// Server-first: the upstream greets, the rule is deleted, then the client speaks.
fn server_first_after_revocation(e: &Env) -> Result<(), String> {
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:25")
        .map_err(|h| format!("CONNECT allowed.test:25 answered {h:?}"))?;
    if !c.read_until(b"220 ", 10) {
        return Err(format!("no greeting: {:?}", c.take_text()));
    }
    c.take_bytes();
    e.delete_rule("greet");
    let _ = c.send(b"AFTER-REVOKE\r\n");
    let closed = c.until_closed(WAIT);
    let heard = |ev: &Value| ev["kind"] == "greet" && ev["line"] == "AFTER-REVOKE";
    poll(WAIT, || {
        e.net
            .events()
            .into_iter()
            .find(|ev| ev["kind"] == "greet-end")
    });
    if let Some(ev) = e.net.events().into_iter().find(heard) {
        return Err(format!(
            "a line sent after the deletion was applied reached the upstream: {ev}"
        ));
    }
    if let Err(text) = closed {
        return Err(format!(
            "the gateway kept the tunnel open after the deletion; it had sent {text:?}"
        ));
    }
    e.decision(&c, since, "policy_revoked").map(drop)
}

/// An established raw tunnel relaying bytes both ways, the rule deleted between two writes.
fn relay_after_revocation(e: &Env) -> Result<(), String> {
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:7")
        .map_err(|h| format!("CONNECT allowed.test:7 answered {h:?}"))?;
    let _ = c.send(b"BEFORE-REVOKE\n");
    if !c.read_until(b"BEFORE-REVOKE\n", 10) {
        return Err(format!("the tunnel relayed nothing: {:?}", c.take_text()));
    }
    c.take_bytes();
    e.delete_rule("echo");
    let _ = c.send(b"AFTER-REVOKE\n");
    let closed = c.until_closed(WAIT);
    poll(WAIT, || {
        e.net
            .events()
            .into_iter()
            .find(|ev| ev["kind"] == "echo-end")
    });
    let heard = |ev: &Value| ev["kind"] == "echo-data" && mentions(ev, "AFTER-REVOKE");
    if let Some(ev) = e.net.events().into_iter().find(heard) {
        return Err(format!(
            "bytes sent after the deletion was applied reached the upstream: {ev}"
        ));
    }
    match closed {
        Err(text) => Err(format!(
            "the gateway kept the tunnel open after the deletion; it had sent {text:?}"
        )),
        Ok(text) if text.contains("AFTER-REVOKE") => Err(format!(
            "the upstream echoed bytes sent after the deletion: {text:?}"
        )),
        Ok(_) => e.decision(&c, since, "policy_revoked").map(drop),
    }
}

#[test]
fn rule_deletion_stops_traffic_in_flight() {
    let e = env(
        "bypass-revocation",
        NetOptions {
            http: HttpServer::Node,
            ..NetOptions::default()
        },
        "DEFAULT_DENY",
        |_| {
            vec![
                json!({"name": "upload", "type": "FQDN", "destination": "allowed.test", "ports": [80], "paths": ["/api/*"], "description": "uploads"}),
                json!({"name": "tunnel", "type": "FQDN", "destination": "dns.allowed.test", "ports": [80], "description": "HTTP in a tunnel"}),
                json!({"name": "greet", "type": "FQDN", "destination": "allowed.test", "ports": [25], "description": "a server that speaks first"}),
                json!({"name": "echo", "type": "FQDN", "destination": "allowed.test", "ports": [7], "description": "a raw protocol"}),
            ]
        },
    );
    let mut failures = Vec::new();
    check(
        &mut failures,
        "2a. absolute-form chunked upload, rule deleted between chunks",
        upload_after_revocation(&e, None, "allowed.test", "upload", "a"),
    );
    check(
        &mut failures,
        "2b. server-first tunnel, rule deleted before the client speaks",
        server_first_after_revocation(&e),
    );
    check(
        &mut failures,
        "2c. raw tunnel relaying, rule deleted between writes",
        relay_after_revocation(&e),
    );
    check(
        &mut failures,
        "2d. chunked upload in a CONNECT tunnel, rule deleted between chunks",
        upload_after_revocation(
            &e,
            Some("dns.allowed.test:80"),
            "dns.allowed.test",
            "tunnel",
            "d",
        ),
    );
    case::assert_passed("rule deletion", &failures);
}

// ---------------------------------------------------------------------------------------------
// Findings 3 and 5: the gateway host's own addresses; binary first bytes.

/// A listener on 0.0.0.0:0 in the root namespace (where the gateway runs), answering
/// `root-listener` and recording the address each connection was made to. Stopped on drop.
struct RootListener {
    port: u16,
    reached: Arc<Mutex<Vec<IpAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RootListener {
    fn start() -> RootListener {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let reached = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, st) = (reached.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let Ok((mut s, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                if let Ok(local) = s.local_addr() {
                    r.lock().unwrap().push(local.ip());
                }
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\nconnection: close\r\n\r\nroot-listener\n",
                );
            }
        });
        RootListener {
            port,
            reached,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections were made to `addr`.
    fn reached_at(&self, addr: Ipv4Addr) -> usize {
        let all = self.reached.lock().unwrap();
        all.iter().filter(|a| **a == IpAddr::V4(addr)).count()
    }
}

impl Drop for RootListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Finding 3: the root namespace's link address (and a name for it) under `policy`: refused.
fn own_link_address(e: &Env, l: &RootListener, policy: &str) -> Vec<String> {
    let a = e.net.a;
    let port = l.port;
    let mut cases = Vec::new();
    for url in [
        format!("http://{}:{port}/own", a.root_link),
        format!("http://gateway-host.test:{port}/own"),
    ] {
        cases.push(
            case(format!("3. {policy}: {url}"), curl(url.clone())).refused(403, "special_address"),
        );
        cases.push(
            case(
                format!("3. {policy}: CONNECT for {url}"),
                curl_with(&["-p"], url),
            )
            .refused(403, "special_address"),
        );
    }
    let mut failures = case::run(&e.net, e.proxy(), cases);
    let reached = l.reached_at(a.root_link);
    if reached > 0 {
        failures.push(format!(
            "3. {policy}: the listener on 0.0.0.0 was reached {reached} time(s) at {}",
            a.root_link
        ));
    }
    failures
}

/// Finding 3: an address added to the gateway host's interface after the gateway started is
/// refused once the gateway noticed it (20 s at most), and never reached after that.
fn address_added_later(e: &Env, l: &RootListener, policy: &str, addr: Ipv4Addr) -> Vec<String> {
    let name = format!("3. {policy}: an address added after the gateway started ({addr})");
    let _added = e.net.add_root_address(addr);
    let url = format!("http://{addr}:{}/added", l.port);
    let refused = |r: &crate::clients::Resp| {
        r.status() == 403 && r.error().as_deref() == Some("special_address")
    };
    let mut last = None;
    let noticed = poll(20, || {
        let r = curl_via(e.proxy(), &[], &url);
        let ok = refused(&r);
        last = Some(r);
        ok.then_some(())
    });
    if noticed.is_none() {
        return vec![format!(
            "{name}: not refused within 20 s; the last answer {last:?}"
        )];
    }
    let before = l.reached_at(addr);
    let mut failures = Vec::new();
    for _ in 0..3 {
        let r = curl_via(e.proxy(), &[], &url);
        if !refused(&r) {
            failures.push(format!("{name}: refused, then answered {r:?}"));
        }
    }
    if l.reached_at(addr) != before {
        failures.push(format!("{name}: reached after it was refused"));
    }
    failures
}

/// 256 KiB of pseudo-random bytes whose first byte is `first`, and whose third is not 0x01
/// (the SSLv2 ClientHello message type).
fn binary(first: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(first);
    let mut data: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    data[0] = first;
    if data[2] == 0x01 {
        data[2] = 0x02;
    }
    data
}

/// Finding 5: a binary protocol whose first byte is >= 0x80, through CONNECT to the echo
/// upstream.
fn binary_echo(e: &Env, first: u8) -> Result<(), String> {
    let data = binary(first);
    let before = e.net.events().len();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:7")
        .map_err(|h| format!("CONNECT allowed.test:7 answered {h:?}"))?;
    let mut w = c.writer();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&sent);
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let back = c.bytes_until_closed(20);
    let _ = writer.join();
    let back = match back {
        Ok(b) => b,
        Err(b) => return Err(format!("still open after 20 s, {} bytes back", b.len())),
    };
    if back != data {
        let same = back.iter().zip(&data).take_while(|(a, b)| a == b).count();
        return Err(format!(
            "{} of {} bytes echoed back ({same} matching from the start)",
            back.len(),
            data.len()
        ));
    }
    let got = poll(WAIT, || {
        e.net.events()[before..]
            .iter()
            .find(|ev| ev["kind"] == "echo-end")
            .cloned()
    });
    match got {
        Some(ev) if ev["bytes"] == data.len() => Ok(()),
        other => Err(format!("the upstream's account: {other:?}")),
    }
}

/// A real SSLv2 ClientHello (the SSLv2 record header, then CLIENT-HELLO), for `version`.
fn sslv2_client_hello(version: [u8; 2]) -> Vec<u8> {
    // SSL_CK_RC4_128_WITH_MD5, SSL_CK_DES_192_EDE3_CBC_WITH_MD5, TLS_RSA_WITH_AES_128_CBC_SHA.
    let ciphers = [0x01, 0x00, 0x80, 0x07, 0x00, 0xc0, 0x00, 0x00, 0x2f];
    let challenge = [0x42u8; 16];
    let mut msg = vec![0x01, version[0], version[1]];
    msg.extend_from_slice(&(ciphers.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0u16.to_be_bytes()); // session id length
    msg.extend_from_slice(&(challenge.len() as u16).to_be_bytes());
    msg.extend_from_slice(&ciphers);
    msg.extend_from_slice(&challenge);
    let mut record = vec![0x80 | (msg.len() >> 8) as u8, msg.len() as u8];
    record.extend_from_slice(&msg);
    record
}

/// Finding 5: a real SSLv2 ClientHello is still refused: closed with `tls_sslv2_hello`.
fn sslv2_refused(e: &Env, version: [u8; 2]) -> Result<(), String> {
    let before = e.net.events().len();
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:7")
        .map_err(|h| format!("CONNECT allowed.test:7 answered {h:?}"))?;
    let _ = c.send(&sslv2_client_hello(version));
    match c.until_closed(WAIT) {
        Err(text) => return Err(format!("the tunnel was still open: {text:?}")),
        Ok(text) if !text.is_empty() => return Err(format!("bytes came back: {text:?}")),
        Ok(_) => {}
    }
    e.decision(&c, since, "tls_sslv2_hello")?;
    let relayed: Vec<Value> = e.net.events()[before..]
        .iter()
        .filter(|ev| ev["kind"] == "echo-data")
        .cloned()
        .collect();
    if relayed.is_empty() {
        Ok(())
    } else {
        Err(format!("it reached the upstream: {relayed:?}"))
    }
}

#[test]
fn own_addresses_are_refused_and_binary_first_bytes_pass() {
    let e = env(
        "bypass-own-addresses",
        NetOptions::default(),
        "ALLOW_ALL",
        |_| Vec::new(),
    );
    let l = RootListener::start();
    let a = e.net.a;
    let mut failures = Vec::new();

    failures.extend(own_link_address(&e, &l, "ALLOW_ALL"));
    failures.extend(address_added_later(&e, &l, "ALLOW_ALL", a.spare[0]));
    for first in [0x80, 0xa5, 0xff] {
        let name = format!("5. CONNECT, 256 KiB of binary starting with {first:#04x}, echoed");
        check(&mut failures, &name, binary_echo(&e, first));
    }
    for (version, what) in [([0x00, 0x02], "SSL 2.0"), ([0x03, 0x01], "TLS 1.0")] {
        let name = format!("5. CONNECT, an SSLv2 ClientHello for {what}");
        check(&mut failures, &name, sslv2_refused(&e, version));
    }

    set_traffic_policy(&e.s, &e.key, &e.cid, "REPORT_ONLY");
    failures.extend(own_link_address(&e, &l, "REPORT_ONLY"));
    failures.extend(address_added_later(&e, &l, "REPORT_ONLY", a.spare[1]));

    // A CIDR rule naming the address opens it.
    let rule = add_rule(
        &e.s,
        &e.key,
        &e.cid,
        json!({"name": "gateway-host", "type": "CIDR", "destination": format!("{}/32", a.root_link), "ports": [l.port], "description": "a service on the gateway host"}),
    );
    wait_rule_active(&e.s, &e.key, &e.cid, rule["id"].as_str().unwrap());
    let table = vec![
        case(
            "3. REPORT_ONLY: the link address, named by a CIDR rule",
            curl(format!("http://{}:{}/named", a.root_link, l.port)),
        )
        .allowed(200)
        .contains("root-listener"),
    ];
    failures.extend(case::run(&e.net, e.proxy(), table));
    case::assert_passed("own addresses and binary first bytes", &failures);
}

// ---------------------------------------------------------------------------------------------
// Findings 6 and 7: malformed authorities; the SNI of a CONNECT to an IP literal.

/// Finding 6: malformed authorities are refused with a reason (400 and `x-perimeter-error`),
/// in CONNECT and in absolute form.
fn malformed_authorities() -> Vec<case::Case> {
    let mut cases = Vec::new();
    let homograph_443 = format!("{HOMOGRAPH_UTF8}:443");
    for (what, authority) in [
        ("a non-ASCII host (raw UTF-8)", homograph_443.as_str()),
        (
            "full-width port digits",
            "allowed.test:\u{ff14}\u{ff14}\u{ff13}",
        ),
        ("two ports", "allowed.test:443:443"),
    ] {
        cases.push(
            case(
                format!("6. CONNECT with {what}: {authority}"),
                raw_bytes(format!(
                    "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
                )),
            )
            .refused_with(400, Reason::Present),
        );
    }
    for (what, authority) in [
        ("a non-ASCII host (raw UTF-8)", HOMOGRAPH_UTF8),
        ("full-width port digits", "allowed.test:\u{ff18}\u{ff10}"),
        ("two ports", "allowed.test:80:80"),
    ] {
        cases.push(
            case(
                format!("6. absolute-form with {what}: {authority}"),
                raw_bytes(format!(
                    "GET http://{authority}/api/x HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
                )),
            )
            .refused_with(400, Reason::Present),
        );
    }
    cases
}

/// SNIs that the policy does not allow on the allowed upstream's address and port 443.
const SNI_NOT_ALLOWED: [&str; 2] = ["denied.test", "unknown.example"];

/// Finding 7: in a CONNECT to the allowed upstream's IP literal (a CIDR rule admits it), the
/// SNI must be a name the policy allows there.
fn sni_on_an_ip_literal(allowed: Ipv4Addr) -> Vec<case::Case> {
    let target = format!("{allowed}:443");
    let mut cases: Vec<case::Case> = SNI_NOT_ALLOWED
        .into_iter()
        .map(|sni| {
            let request =
                format!("GET /sni-{sni} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
            case(
                format!("7. CONNECT {target} with SNI {sni}"),
                tls(&target, Some(sni), &request),
            )
            .closed()
        })
        .collect();
    cases.push(
        case(
            format!("7. CONNECT {target} with SNI allowed.test, which resolves there"),
            tls(
                &target,
                Some("allowed.test"),
                "GET /sni-allowed HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
            ),
        )
        .allowed(200)
        .contains("https path=/sni-allowed host=allowed.test sni=allowed.test")
        .serves(["/sni-allowed"]),
    );
    cases
}

#[test]
fn malformed_authorities_and_sni_on_ip_literals() {
    let e = env(
        "bypass-authorities",
        NetOptions::default(),
        "DEFAULT_DENY",
        |a| {
            vec![
                json!({"name": "allowed-address-tls", "type": "CIDR", "destination": format!("{}/32", a.allowed), "ports": [443], "description": "the allowed upstream's address over TLS"}),
                json!({"name": "allowed-http", "type": "FQDN", "destination": "allowed.test", "ports": [80], "description": "allowed over HTTP"}),
            ]
        },
    );
    let mut failures = case::run(&e.net, e.proxy(), malformed_authorities());
    failures.extend(case::run(
        &e.net,
        e.proxy(),
        sni_on_an_ip_literal(e.net.a.allowed),
    ));
    for sni in SNI_NOT_ALLOWED {
        let logged = e.decision_where(
            0,
            &format!("for SNI {sni} with reason sni_not_allowed"),
            |ev| ev["sni_or_host"] == sni && ev["reason"] == "sni_not_allowed",
        );
        let logged = logged.map_err(|why| {
            let mine: Vec<Value> =
                e.gw.decisions()
                    .into_iter()
                    .filter(|ev| ev["sni_or_host"] == sni)
                    .collect();
            format!("{why}; the events with that SNI: {mine:?}")
        });
        check(
            &mut failures,
            &format!("7. the decision event for SNI {sni}"),
            logged.map(drop),
        );
    }
    let target = format!("{}:443", e.net.a.allowed);
    check(
        &mut failures,
        &format!("10. CONNECT {target} with an encrypted_client_hello (outer SNI allowed.test)"),
        ech_refused(&e, &target),
    );
    case::assert_passed("malformed authorities and SNI on IP literals", &failures);
}

/// A TLS 1.3 ClientHello naming `sni`, carrying an `encrypted_client_hello` extension (0xfe0d,
/// an outer-type payload as clients send it: the real name is inside the encryption).
fn client_hello_with_ech(sni: &str) -> Vec<u8> {
    fn vec16(b: &[u8]) -> Vec<u8> {
        [&(b.len() as u16).to_be_bytes()[..], b].concat()
    }
    let server_name = vec16(&[&[0u8][..], &vec16(sni.as_bytes())].concat());
    let ech = [
        &[0u8][..],        // outer ClientHello
        &[0, 1, 0, 1],     // HPKE KDF and AEAD
        &[0x2a],           // config id
        &vec16(&[7; 32]),  // encapsulated key
        &vec16(&[9; 128]), // payload
    ]
    .concat();
    let extensions = [
        &0u16.to_be_bytes()[..],
        &vec16(&server_name),
        &0x002bu16.to_be_bytes(), // supported_versions: TLS 1.3
        &vec16(&[2, 3, 4]),
        &0xfe0du16.to_be_bytes(),
        &vec16(&ech),
    ]
    .concat();
    let body = [
        &[3u8, 3][..],
        &[1; 32],
        &[0],
        &vec16(&[0x13, 0x01]),
        &[1, 0],
        &vec16(&extensions),
    ]
    .concat();
    let len = (body.len() as u32).to_be_bytes();
    let handshake = [&[1u8, len[1], len[2], len[3]][..], &body].concat();
    [&[0x16u8, 3, 1][..], &vec16(&handshake)].concat()
}

/// Finding 10: under DEFAULT_DENY a ClientHello with `encrypted_client_hello` is closed with
/// `tls_encrypted_client_hello` (the name the server routes on is hidden), and nothing of it
/// reaches the upstream.
fn ech_refused(e: &Env, target: &str) -> Result<(), String> {
    let before = e.net.events().len();
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect(target)
        .map_err(|h| format!("CONNECT {target} answered {h:?}"))?;
    let _ = c.send(&client_hello_with_ech("allowed.test"));
    match c.until_closed(WAIT) {
        Err(text) => return Err(format!("the tunnel was still open: {text:?}")),
        Ok(text) if !text.is_empty() => return Err(format!("bytes came back: {text:?}")),
        Ok(_) => {}
    }
    e.decision(&c, since, "tls_encrypted_client_hello")?;
    let reached: Vec<Value> = e.net.events()[before..]
        .iter()
        .filter(|ev| ev["kind"] != "accept" && ev["kind"] != "tcp-empty")
        .cloned()
        .collect();
    if reached.is_empty() {
        Ok(())
    } else {
        Err(format!("it reached the upstream: {reached:?}"))
    }
}
