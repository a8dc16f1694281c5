//! End to end through real network namespaces: `perimeter serve` + `perimeter gateway` as real
//! processes, driven with curl and `openssl s_client`, against upstreams that stand on ordinary
//! ("public") addresses inside a network namespace this file creates.
//!
//! Loopback is a special address, so FQDN rules can only be shown to work against upstreams on
//! addresses the guard does not refuse. DESIGN "Address guard" leaves the documentation ranges
//! off its list for exactly this: the upstreams stand on 198.51.100.0/24 and 203.0.113.0/24
//! (never 192.0.2.0/24 or fd00::/64, which are this machine's own network).
//!
//! # Fixture ([`Net`])
//!
//! The gateway, the control plane and the clients (curl, openssl) run in the root namespace; the
//! gateway listens on loopback. Each [`Net`] holds one *slot* `n` in 0..8 (an abstract Unix
//! socket is the lock, so concurrent test processes never share one, and a dead process frees
//! its slot) and owns, for that slot:
//!
//! ```text
//!  root namespace                            namespace pnt-<n>-u-<pid> ("upstreams")
//!  gateway, serve, curl, openssl             python upstream (HTTP :80, TLS :443)
//!  pnt<n>a<pid> 198.51.100.(16n+1)/28 ══════ pnt<n>b<pid> 198.51.100.(16n+2)/28
//!   routes (/32, via 198.51.100.(16n+2)):      allowed  198.51.100.(16n+10)/32
//!     203.0.113.(16n+10)  10.213.<n>.10          denied   203.0.113.(16n+10)/32
//!     [169.254.169.254, with the metadata lock]  private  10.213.<n>.10/32
//!                                                [metadata 169.254.169.254/32]
//!                                              no default route: nothing else is reachable
//!
//!  pnt<n>w<pid> 203.0.113.(16n+1)/30 ═══════ namespace pnt-<n>-w-<pid> ("workload", optional)
//!                                            pnt<n>x<pid> 203.0.113.(16n+2)/30
//!                                            default via 203.0.113.(16n+1): its only way out
//!                                            is the root namespace (for transparent mode)
//! ```
//!
//! Every address a test sends to is on loopback or routed into these namespaces by a /32 (or
//! the /28 of the link), so even a gateway that wrongly allowed something could not reach
//! beyond them. 169.254.169.254 is routed into the namespace only by a fixture that asked for
//! it, under a machine-wide lock; tests without it never name that address. The gateway
//! resolves with a hosts file and a DNS server on loopback made here (never the machine's).
//! Drop (also while unwinding from a panic) kills the upstream, deletes the routes, the veth
//! pairs and the namespaces; a slot's leftovers from a killed process are removed when the slot
//! is next taken.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Gateway, Server, api, header_value, json, ok, serve_supports, wait_until};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Namespace fixture

const SLOTS: u8 = 8;
const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// `аllowed.test` with a Cyrillic `а` (U+0430), as A-labels.
const HOMOGRAPH_PUNY: &str = "xn--llowed-2nf.test";
const HOMOGRAPH_UTF8: &str = "\u{430}llowed.test";

/// An exclusive, machine-wide lock: an abstract Unix socket, released when dropped or when the
/// process dies.
fn try_lock(name: &str) -> Option<UnixListener> {
    let addr = UnixAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixListener::bind_addr(&addr).ok()
}

fn lock_within(name: &str, secs: u64) -> UnixListener {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(l) = try_lock(name) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "could not take the lock {name} within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"))
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = run("ip", args);
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}\nthese tests need root and network namespaces (ip netns, veth)",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS`, failure ignored (cleanup).
fn ip_quiet(args: &[&str]) {
    let _ = run("ip", args);
}

/// Kill every process inside namespace `ns` (only ever one this file created).
fn kill_inside(ns: &str) {
    let out = run("ip", &["netns", "pids", ns]);
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let _ = run("kill", &["-KILL", pid]);
    }
}

/// Addresses of one slot.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    root_link: Ipv4Addr,
    ns_link: Ipv4Addr,
    /// Upstream of `allowed.test` (HTTP :80, TLS :443).
    allowed: Ipv4Addr,
    /// Upstream of `denied.test` (HTTP :80, TLS :443).
    denied: Ipv4Addr,
    /// A private (RFC 1918) upstream (HTTP :80, TLS :443).
    private: Ipv4Addr,
    workload_root: Ipv4Addr,
    workload: Ipv4Addr,
}

impl Addrs {
    fn of_slot(n: u8) -> Addrs {
        let b = 16 * n;
        Addrs {
            root_link: Ipv4Addr::new(198, 51, 100, b + 1),
            ns_link: Ipv4Addr::new(198, 51, 100, b + 2),
            allowed: Ipv4Addr::new(198, 51, 100, b + 10),
            denied: Ipv4Addr::new(203, 0, 113, b + 10),
            private: Ipv4Addr::new(10, 213, n, 10),
            workload_root: Ipv4Addr::new(203, 0, 113, b + 1),
            workload: Ipv4Addr::new(203, 0, 113, b + 2),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct NetOptions {
    /// Also stand an HTTP upstream on 169.254.169.254:80 in the namespace and route that /32
    /// there (under a machine-wide lock).
    metadata: bool,
    /// Also create the workload namespace.
    workload: bool,
}

/// The workload namespace: its only route leads to the root namespace.
struct Workload {
    ns: String,
    veth: String,
}

impl Workload {
    /// A command that runs inside the workload namespace.
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}

struct Net {
    slot: u8,
    a: Addrs,
    ns: String,
    veth: String,
    routes: Vec<String>,
    workload: Option<Workload>,
    upstream: Option<Child>,
    upstream_log: PathBuf,
    cert: PathBuf,
    hosts: PathBuf,
    dns: String,
    metadata: bool,
    dir: tempfile::TempDir,
    _metadata_lock: Option<UnixListener>,
    _slot_lock: UnixListener,
}

/// Remove what a killed process left behind in slot `n` (we hold its lock, so anything named
/// for it is stale).
fn remove_stale(n: u8) {
    let links = run("ip", &["-o", "link", "show"]);
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        let name = name.split('@').next().unwrap_or(name);
        if name.starts_with(&format!("pnt{n}a")) || name.starts_with(&format!("pnt{n}w")) {
            ip_quiet(&["link", "del", name]);
        }
    }
    let list = run("ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(&format!("pnt-{n}-")) {
            kill_inside(name);
            ip_quiet(&["netns", "del", name]);
        }
    }
}

impl Net {
    fn new(opts: NetOptions) -> Net {
        let deadline = Instant::now() + Duration::from_secs(120);
        let (slot, lock) = loop {
            if let Some(found) = (0..SLOTS)
                .find_map(|n| try_lock(&format!("perimeter-netns-slot-{n}")).map(|l| (n, l)))
            {
                break found;
            }
            assert!(Instant::now() < deadline, "no free namespace slot in 120 s");
            std::thread::sleep(Duration::from_millis(200));
        };
        remove_stale(slot);
        let pid = std::process::id();
        let dir = tempfile::tempdir().unwrap();
        let a = Addrs::of_slot(slot);
        let ns = format!("pnt-{slot}-u-{pid}");
        let veth = format!("pnt{slot}a{pid}");
        let peer = format!("pnt{slot}b{pid}");
        // Check first that namespaces work here: fail loudly, never pass silently.
        ip(&["netns", "add", &ns]);
        let mut net = Net {
            slot,
            a,
            ns: ns.clone(),
            veth: veth.clone(),
            routes: Vec::new(),
            workload: None,
            upstream: None,
            upstream_log: dir.path().join("upstream.log"),
            cert: dir.path().join("cert.pem"),
            hosts: dir.path().join("hosts"),
            dns: String::new(),
            metadata: false,
            dir,
            _metadata_lock: None,
            _slot_lock: lock,
        };
        let cidr = |addr: Ipv4Addr, len: u8| format!("{addr}/{len}");
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &ns,
        ]);
        ip(&["addr", "add", &cidr(a.root_link, 28), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "addr", "add", &cidr(a.ns_link, 28), "dev", &peer]);
        let mut hosted = vec![a.allowed, a.denied, a.private];
        if opts.metadata {
            net._metadata_lock = Some(lock_within("perimeter-netns-metadata", 120));
            net.metadata = true;
            hosted.push(METADATA);
        }
        for addr in &hosted {
            ip(&["-n", &ns, "addr", "add", &cidr(*addr, 32), "dev", &peer]);
        }
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        // Addresses outside the link's /28 reach the namespace by a /32 each.
        for addr in hosted.iter().filter(|h| **h != a.allowed) {
            let dst = cidr(*addr, 32);
            net.routes.push(dst.clone());
            let via = a.ns_link.to_string();
            ip(&["route", "replace", &dst, "via", &via, "dev", &veth]);
        }
        if opts.workload {
            net.add_workload();
        }
        net.make_cert();
        net.start_upstream();
        net.write_names();
        net
    }

    fn add_workload(&mut self) {
        let (n, pid) = (self.slot, std::process::id());
        let ns = format!("pnt-{n}-w-{pid}");
        let veth = format!("pnt{n}w{pid}");
        let peer = format!("pnt{n}x{pid}");
        ip(&["netns", "add", &ns]);
        self.workload = Some(Workload {
            ns: ns.clone(),
            veth: veth.clone(),
        });
        let root = format!("{}/30", self.a.workload_root);
        let inner = format!("{}/30", self.a.workload);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &ns,
        ]);
        ip(&["addr", "add", &root, "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "addr", "add", &inner, "dev", &peer]);
        ip(&["-n", &ns, "link", "set", &peer, "up"]);
        let via = self.a.workload_root.to_string();
        ip(&["-n", &ns, "route", "add", "default", "via", &via]);
    }

    fn make_cert(&self) {
        let key = self.dir.path().join("key.pem");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=allowed.test"])
            .args([
                "-addext",
                "subjectAltName=DNS:allowed.test,DNS:*.allowed.test,DNS:denied.test",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&self.cert)
            .stdin(Stdio::null())
            .output()
            .expect("openssl req");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start_upstream(&mut self) {
        let script = self.dir.path().join("upstream.py");
        std::fs::write(&script, UPSTREAM_PY).unwrap();
        let key = self.dir.path().join("key.pem");
        let mut specs = Vec::new();
        for addr in [self.a.allowed, self.a.denied, self.a.private] {
            specs.push(format!("http:{addr}:80"));
            specs.push(format!("tls:{addr}:443"));
            specs.push(format!("greet:{addr}:25"));
        }
        if self.metadata {
            specs.push(format!("http:{METADATA}:80"));
        }
        let err = std::fs::File::create(self.dir.path().join("upstream.err")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-u"])
            .arg(&script)
            .arg(&self.upstream_log)
            .arg(&self.cert)
            .arg(&key)
            .args(&specs)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("ip netns exec python3");
        self.upstream = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.events().iter().any(|e| e["kind"] == "ready") {
            let exited = self
                .upstream
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "the upstream in {} did not start ({exited:?}): {}",
                    self.ns,
                    std::fs::read_to_string(self.dir.path().join("upstream.err"))
                        .unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The hosts file and DNS server the gateways resolve with.
    fn write_names(&mut self) {
        let a = self.a;
        std::fs::write(
            &self.hosts,
            format!(
                "{allowed} allowed.test\n\
                 {denied} denied.test\n\
                 {allowed} {HOMOGRAPH_PUNY}\n\
                 127.0.0.1 loopback.allowed.test loopback.test localhost\n",
                allowed = a.allowed,
                denied = a.denied,
            ),
        )
        .unwrap();
        let mut records: HashMap<String, Vec<Ipv4Addr>> = HashMap::new();
        records.insert("dns.allowed.test".into(), vec![a.allowed]);
        records.insert("private.allowed.test".into(), vec![a.private]);
        records.insert("private.test".into(), vec![a.private]);
        records.insert("other.test".into(), vec![a.denied]);
        if self.metadata {
            records.insert("metadata.test".into(), vec![METADATA]);
            // Rebinding-style: a special address first, a public one after it.
            records.insert("multi.test".into(), vec![METADATA, a.private, a.allowed]);
        }
        self.dns = dns_server(records);
    }

    /// Every event the upstream logged, in order.
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.upstream_log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Wait (5 s at most) until every connection the upstream accepted has ended, then return
    /// its events.
    fn settled_events(&self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ev = self.events();
            let accepted = ev.iter().filter(|e| e["kind"] == "accept").count();
            let ended = ev
                .iter()
                .filter(|e| e["kind"] != "accept" && e["kind"] != "ready")
                .count();
            if accepted == ended || Instant::now() > deadline {
                return ev;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Events at upstream `addr`.
    fn events_at(&self, addr: Ipv4Addr) -> Vec<Value> {
        self.settled_events()
            .into_iter()
            .filter(|e| {
                e["local"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(&format!("{addr}:")))
            })
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut c) = self.upstream.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_inside(&self.ns);
        for r in &self.routes {
            ip_quiet(&["route", "del", r]);
        }
        ip_quiet(&["link", "del", &self.veth]);
        ip_quiet(&["netns", "del", &self.ns]);
        if let Some(w) = self.workload.take() {
            kill_inside(&w.ns);
            ip_quiet(&["link", "del", &w.veth]);
            ip_quiet(&["netns", "del", &w.ns]);
        }
    }
}

/// The upstream: one process in the namespace, listeners `kind:ip:port` (`http` or `tls`).
/// Logs one JSON line per accepted connection (`accept`) and one when it ends: `http` /
/// `https` (the raw request target, Host and SNI), `tcp-empty` (closed before sending a byte),
/// `tls-fail`, `https-nohead`. Answers `upstream <ip:port> <kind> path=... host=... sni=...`.
const UPSTREAM_PY: &str = r#"
import json, socket, ssl, sys, threading

log_path, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
specs = sys.argv[4:]
lock = threading.Lock()

def log(**kw):
    with lock:
        with open(log_path, "a") as f:
            f.write(json.dumps(kw) + "\n")

def read_head(conn):
    buf = b""
    while b"\r\n\r\n" not in buf and len(buf) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf

def parse(buf):
    text = buf.decode("latin-1")
    line, _, rest = text.partition("\r\n")
    parts = line.split(" ")
    target = parts[1] if len(parts) > 1 else ""
    host = ""
    for l in rest.split("\r\n"):
        k, _, v = l.partition(":")
        if k.strip().lower() == "host":
            host = v.strip()
    return target, host

def answer(conn, kind, local, target, host, sni):
    body = f"upstream {local} {kind} path={target} host={host} sni={sni}\n".encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body) + body)

snis = {}
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
def on_sni(sock, name, _ctx):
    snis[id(sock)] = name
ctx.sni_callback = on_sni

def handle(conn, kind, local):
    try:
        conn.settimeout(10)
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except OSError:
            first = b""
        if not first:
            log(kind="tcp-empty", local=local)
            return
        if kind == "http":
            target, host = parse(read_head(conn))
            log(kind="http", local=local, path=target, host=host)
            answer(conn, "http", local, target, host, None)
            return
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError) as e:
            log(kind="tls-fail", local=local, error=str(e))
            return
        sni = snis.pop(id(tls), None)
        head = read_head(tls)
        if not head:
            log(kind="https-nohead", local=local, sni=sni)
            return
        target, host = parse(head)
        log(kind="https", local=local, path=target, host=host, sni=sni)
        answer(tls, "https", local, target, host, sni)
        try:
            tls.unwrap()  # close_notify, so that clients see a clean end
        except (OSError, ssl.SSLError):
            pass
    except Exception as e:
        log(kind="error", local=local, error=repr(e))
    finally:
        try:
            conn.close()
        except OSError:
            pass

def greet(conn, local):
    # A server that speaks first, as SMTP does: greets, then answers each line.
    conn.settimeout(10)
    conn.sendall(f"220 {local} ready\r\n".encode())
    f = conn.makefile("rb")
    for line in f:
        log(kind="greet", local=local, line=line.decode("latin-1").rstrip("\r\n"))
        conn.sendall(b"250 " + line)
    conn.close()

def accept_loop(srv, kind, local):
    while True:
        conn, peer = srv.accept()
        log(kind="accept", local=local, peer=f"{peer[0]}:{peer[1]}")
        target = greet if kind == "greet" else handle
        args = (conn, local) if kind == "greet" else (conn, kind, local)
        threading.Thread(target=target, args=args, daemon=True).start()

threads = []
for spec in specs:
    kind, addr, port = spec.split(":")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(64)
    t = threading.Thread(target=accept_loop, args=(srv, kind, f"{addr}:{port}"), daemon=True)
    t.start()
    threads.append(t)
log(kind="ready")
for t in threads:
    t.join()
"#;

/// A DNS server on 127.0.0.1:0 answering A queries from `records` (names in lower case, no
/// trailing dot); other types of a known name get an empty answer, unknown names NXDOMAIN.
fn dns_server(records: HashMap<String, Vec<Ipv4Addr>>) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            let q = &buf[..n];
            if n < 17 || u16::from_be_bytes([q[4], q[5]]) != 1 {
                continue;
            }
            let mut labels = Vec::new();
            let mut i = 12;
            while i < n && q[i] != 0 {
                let len = q[i] as usize;
                if len > 63 || i + 1 + len > n {
                    break;
                }
                labels.push(String::from_utf8_lossy(&q[i + 1..i + 1 + len]).to_lowercase());
                i += 1 + len;
            }
            let end = i + 5;
            if end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let name = labels.join(".");
            let found = records.get(&name);
            let answers: Vec<Ipv4Addr> = match (found, qtype) {
                (Some(ips), 1) => ips.clone(),
                _ => Vec::new(),
            };
            let mut r = Vec::with_capacity(end + 16 * answers.len());
            r.extend_from_slice(&q[..2]);
            r.push(0x84 | (q[2] & 0x01)); // QR, AA, keep RD
            r.push(0x80 | if found.is_some() { 0 } else { 3 }); // RA, NOERROR/NXDOMAIN
            r.extend_from_slice(&[0, 1]);
            r.extend_from_slice(&(answers.len() as u16).to_be_bytes());
            r.extend_from_slice(&[0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]);
            for ip in answers {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4]);
                r.extend_from_slice(&ip.octets());
            }
            let _ = sock.send_to(&r, peer);
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// Clients

/// What curl saw through the proxy.
#[derive(Debug)]
struct Resp {
    /// Status of the (final) response; 0 when there was none (a refused CONNECT).
    code: u16,
    /// Status of the CONNECT response (0 without a tunnel).
    connect: u16,
    /// Response heads (the CONNECT one too) and body.
    text: String,
}

impl Resp {
    /// The status the gateway answered: the CONNECT response's for a tunnel, else the final.
    fn status(&self) -> u16 {
        if self.connect != 0 && self.connect != 200 {
            self.connect
        } else {
            self.code
        }
    }

    fn error(&self) -> Option<String> {
        header_value(&self.text, "x-perimeter-error")
    }
}

/// curl through `proxy`. Proxy environment variables are removed and `--noproxy ""` given,
/// so curl never talks to anything but the proxy.
fn curl_via(proxy: &str, extra: &[&str], url: &str) -> Resp {
    let out = Command::new("curl")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .args(["-s", "-i", "-m", "10", "--noproxy", ""])
        .args(["-x", &format!("http://{proxy}")])
        .args(["-w", "\n%{http_code} %{http_connect}"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, codes) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let mut codes = codes.split_whitespace().map(|c| c.parse().unwrap_or(0));
    Resp {
        code: codes.next().unwrap_or(0),
        connect: codes.next().unwrap_or(0),
        text: body.to_string(),
    }
}

/// `openssl s_client` through `proxy` to `connect` (`host:port`) with `servername` as SNI
/// (`None`: no SNI), verifying against `cafile`; sends `request` and returns (exit success,
/// stdout + stderr). 20 s at most.
fn s_client(
    proxy: &str,
    connect: &str,
    servername: Option<&str>,
    cafile: &Path,
    request: &str,
) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-proxy", proxy, "-connect", connect])
        .arg("-CAfile")
        .arg(cafile)
        .args(["-verify_return_error", "-quiet"]);
    match servername {
        Some(sni) => cmd.args(["-servername", sni]),
        None => cmd.arg("-noservername"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(request.as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "openssl s_client -connect {connect} -servername {servername:?} did not end in 20 s: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Send `request` raw to the proxy and return the response: for a refusal, its head and body
/// (the proxy may keep the connection open); for an established tunnel, everything until the
/// proxy closes it (10 s at most).
fn raw(proxy: &str, request: &[u8]) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_string();
            let tunnel = request.starts_with(b"CONNECT ") && head.starts_with("HTTP/1.1 200");
            let len: usize = header_value(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if !tunnel && out.len() >= end + 4 + len {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Send `request` raw to the proxy and return everything until it closes (10 s at most).
fn raw_all(proxy: &str, request: &[u8]) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// Assert a refusal: `status` and `x-perimeter-error: reason` (`None`: the header, if any, is
/// not checked).
#[track_caller]
fn assert_refused(what: &str, r: &Resp, status: u16, reason: Option<&str>) {
    assert_eq!(r.status(), status, "{what}: {r:?}");
    if let Some(reason) = reason {
        assert_eq!(r.error().as_deref(), Some(reason), "{what}: {r:?}");
    }
}

/// Assert a raw response's status line and `x-perimeter-error`.
#[track_caller]
fn assert_raw(what: &str, resp: &str, status: u16, reason: Option<&str>) {
    assert!(
        resp.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: expected {status}, got {resp:?}"
    );
    if let Some(reason) = reason {
        assert_eq!(
            header_value(resp, "x-perimeter-error").as_deref(),
            Some(reason),
            "{what}: {resp}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Control plane helpers

fn start_serve(dir: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<&str> = extra.to_vec();
    if serve_supports("--no-embedded-gateways") {
        args.push("--no-embedded-gateways");
    }
    Server::start(dir, &args, &[])
}

fn create_cluster(s: &Server, key: &str, name: &str, regions: &[&str]) -> String {
    let nodes: serde_json::Map<String, Value> =
        regions.iter().map(|r| (r.to_string(), json!(1))).collect();
    let c = ok(
        s,
        key,
        "POST",
        "/api/v1/clusters",
        Some(
            json!({"name": name, "provider": "AWS", "spec": {"dedicated": {"region_nodes": nodes}}}),
        ),
    );
    c["id"].as_str().unwrap().to_string()
}

fn gateway_token(s: &Server, key: &str, cid: &str, region: &str, name: &str) -> String {
    let g = ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/gateways"),
        Some(json!({"region": region, "name": name})),
    );
    g["token"].as_str().unwrap().to_string()
}

fn gateways(s: &Server, key: &str, cid: &str) -> Vec<Value> {
    let v = ok(
        s,
        key,
        "GET",
        &format!("/api/v1/clusters/{cid}/gateways"),
        None,
    );
    v["gateways"].as_array().cloned().unwrap_or_default()
}

/// Wait until every gateway of the cluster has applied some snapshot.
fn wait_gateways_applied(s: &Server, key: &str, cid: &str, count: usize) {
    wait_until("the gateways to apply a snapshot", 30, || {
        let g = gateways(s, key, cid);
        g.len() == count
            && g.iter()
                .all(|g| g["applied_version"].as_i64().unwrap_or(0) > 0)
    });
}

/// Set the traffic policy and wait until the cluster reads it (every gateway applied it).
fn set_policy(s: &Server, key: &str, cid: &str, allow_all: bool) {
    ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules/egress-traffic-policy"),
        Some(json!({"allow_all": allow_all})),
    );
    let want = if allow_all {
        "ALLOW_ALL"
    } else {
        "DEFAULT_DENY"
    };
    wait_until(&format!("the traffic policy to read {want}"), 30, || {
        ok(s, key, "GET", &format!("/api/v1/clusters/{cid}"), None)["egress_traffic_policy"] == want
    });
}

fn add_rule(s: &Server, key: &str, cid: &str, body: Value) -> Value {
    let r = ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        Some(body),
    );
    r["Rule"].clone()
}

fn rule_state(s: &Server, key: &str, cid: &str, rid: &str) -> String {
    let (st, b) = api(
        s,
        key,
        "GET",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
        None,
    );
    if st != 200 {
        return format!("HTTP {st}");
    }
    json(&b)["rule"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_rule_active(s: &Server, key: &str, cid: &str, rid: &str) {
    wait_until(&format!("rule {rid} to read ACTIVE"), 30, || {
        rule_state(s, key, cid, rid) == "ACTIVE"
    });
}

/// Non-canonical spellings of `addr`. Only spellings whose every plausible misreading (octal
/// read as decimal, decimal read as octal, hex, short forms) is `addr` itself or no address at
/// all, so that even a gateway that reinterpreted one would stay inside the namespaces.
fn non_canonical(addr: Ipv4Addr) -> Vec<(String, &'static str)> {
    let [a, b, c, d] = addr.octets();
    let n = u32::from(addr);
    let mut out = vec![
        (n.to_string(), "decimal"),
        (format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"), "hex parts"),
        (format!("0x{n:08x}"), "hex"),
        (format!("{a}.0x{b:x}.{c}.{d}"), "mixed hex"),
        (
            format!("{a}.{b}.{}", u32::from(c) * 256 + u32::from(d)),
            "three parts",
        ),
        (format!("{a}.{}", n & 0x00ff_ffff), "two parts"),
        (format!("{a}.{b}.{c}.{d}."), "trailing dot"),
    ];
    // Octal, when reading its parts as decimal gives no address.
    let octal = [a, b, c, d].map(|o| format!("0{o:o}"));
    if octal.iter().any(|p| p.parse::<u32>().unwrap_or(0) > 255) {
        out.push((octal.join("."), "octal"));
    }
    // Zero-padded: a zero part, or a first part with a digit that octal does not have.
    if let Some(i) = [a, b, c, d].iter().position(|o| *o == 0) {
        let mut parts = [a, b, c, d].map(|o| o.to_string());
        parts[i] = "000".into();
        out.push((parts.join("."), "zero-padded"));
    } else if a.to_string().contains(['8', '9']) {
        out.push((format!("0{a}.{b}.{c}.{d}"), "zero-padded"));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Explicit proxy under DEFAULT_DENY

#[test]
fn default_deny_allows_only_allowed_test_and_refuses_every_trick() {
    let net = Net::new(NetOptions::default());
    let a = net.a;
    let s = start_serve(&net.dir.path().join("cp"), &[]);
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "netns-deny", &["us-east-1"]);
    let token = gateway_token(&s, &key, &cid, "us-east-1", "gw-1");
    let gw = Gateway::start(
        net.dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &net.dir.path().join("gw-state"),
        &net.hosts,
        &net.dns,
    );
    wait_gateways_applied(&s, &key, &cid, 1);
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
    let cafile = net.cert.to_str().unwrap().to_string();
    let ca = ["--cacert", cafile.as_str()];
    let allowed_at = format!("{}:80", a.allowed);
    let allowed_tls_at = format!("{}:443", a.allowed);
    // Every path the allowed HTTP upstream is expected to serve, in order.
    let mut served: Vec<&str> = Vec::new();

    // --- Allowed destinations work: plain HTTP (absolute-form) and HTTPS through CONNECT.
    let r = curl_via(p, &[], "http://allowed.test/api/hello");
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.text.contains(&format!(
            "upstream {allowed_at} http path=/api/hello host=allowed.test"
        )),
        "{r:?}"
    );
    served.push("/api/hello");
    let r = curl_via(p, &ca, "https://allowed.test/secure");
    assert_eq!((r.connect, r.code), (200, 200), "{r:?}");
    assert!(
        r.text.contains(&format!(
            "upstream {allowed_tls_at} https path=/secure host=allowed.test sni=allowed.test"
        )),
        "{r:?}"
    );
    // A name below allowed.test, resolved over real DNS (not the hosts file).
    let r = curl_via(p, &[], "http://dns.allowed.test/x");
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.text.contains("host=dns.allowed.test"), "{r:?}");
    served.push("/x");
    // openssl s_client with the right SNI completes a verified handshake and gets the reply.
    let (ok_, out) = s_client(
        p,
        "allowed.test:443",
        Some("allowed.test"),
        &net.cert,
        "GET /s-client HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    );
    assert!(ok_, "s_client with the right SNI: {out}");
    assert!(
        out.contains("https path=/s-client host=allowed.test sni=allowed.test"),
        "{out}"
    );

    // --- IP literals in non-canonical spellings: 400, never reinterpreted.
    for (spelled, what) in non_canonical(a.allowed)
        .into_iter()
        .chain(non_canonical(Ipv4Addr::LOCALHOST))
        .chain([
            // Misread, these could name 177.0.0.1 or 87.0.0.1; harmless only because under
            // DEFAULT_DENY without a CIDR rule no literal is dialled. Not used under ALLOW_ALL.
            ("127.000.000.001".to_string(), "zero-padded loopback"),
            ("0177.0.0.1".to_string(), "octal loopback"),
            ("[::1%25lo]".to_string(), "zone id (URI form)"),
            ("[::1%lo]".to_string(), "zone id"),
        ])
    {
        let resp = raw(
            p,
            format!("GET http://{spelled}/api/x HTTP/1.1\r\nHost: {spelled}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_raw(
            &format!("GET {what} {spelled}"),
            &resp,
            400,
            Some("non_canonical_ip"),
        );
        let resp = raw(
            p,
            format!("CONNECT {spelled}:443 HTTP/1.1\r\nHost: {spelled}:443\r\n\r\n").as_bytes(),
        );
        assert_raw(
            &format!("CONNECT {what} {spelled}"),
            &resp,
            400,
            Some("non_canonical_ip"),
        );
    }

    // --- Canonical literals without a CIDR rule: 403. The allowed upstream's own address is
    // not allowed by the FQDN rule; special addresses are refused by the guard.
    for (url, reason) in [
        (
            format!("http://{}/api/x", a.allowed),
            "ip_literal_needs_cidr_rule",
        ),
        (
            format!("http://[::ffff:{}]/api/x", a.allowed),
            "ip_literal_needs_cidr_rule",
        ),
        (
            format!("http://{}/api/x", a.denied),
            "ip_literal_needs_cidr_rule",
        ),
        (format!("http://{}/api/x", a.private), "special_address"),
        ("http://127.0.0.1/api/x".to_string(), "special_address"),
        ("http://[::1]/api/x".to_string(), "special_address"),
        (
            "http://[::ffff:127.0.0.1]/api/x".to_string(),
            "special_address",
        ),
    ] {
        let r = curl_via(p, &[], &url);
        assert_refused(&url, &r, 403, Some(reason));
    }
    for target in [
        format!("{}:443", a.allowed),
        format!("[::ffff:{}]:443", a.allowed),
    ] {
        let resp = raw(
            p,
            format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
        );
        assert_raw(
            &format!("CONNECT {target}"),
            &resp,
            403,
            Some("ip_literal_needs_cidr_rule"),
        );
    }
    let r = curl_via(p, &ca, &format!("https://{}/", a.private));
    assert_refused("CONNECT private literal", &r, 403, Some("special_address"));

    // --- Names allowed by a rule that resolve to special addresses: refused by the guard.
    for url in [
        "http://private.allowed.test/api/x",
        "http://loopback.allowed.test/api/x",
    ] {
        let r = curl_via(p, &[], url);
        assert_refused(url, &r, 403, Some("special_address"));
    }
    let r = curl_via(p, &[], "http://private.allowed.test/");
    assert!(
        r.text.contains("private"),
        "the reason names the class: {r:?}"
    );
    for url in [
        "https://private.allowed.test/",
        "https://loopback.allowed.test/",
    ] {
        let r = curl_via(p, &ca, url);
        assert_refused(url, &r, 403, Some("special_address"));
    }

    // --- CONNECT to the allowed name with another SNI (or none): the tunnel is closed before
    // anything reaches the upstream.
    let before = net.events_at(a.allowed).len();
    for sni in [Some("denied.test"), Some("dns.allowed.test"), None] {
        let (ok_, out) = s_client(
            p,
            "allowed.test:443",
            sni,
            &net.cert,
            "GET /sni-mismatch HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
        );
        assert!(!ok_, "s_client with SNI {sni:?} must fail: {out}");
        assert!(
            !out.contains("upstream "),
            "SNI {sni:?} reached upstream: {out}"
        );
    }
    let after = net.events_at(a.allowed);
    for e in &after[before..] {
        // The gateway dials before it sees the ClientHello; the upstream may see a connection,
        // but never a byte of it.
        assert!(
            e["kind"] == "accept" || e["kind"] == "tcp-empty",
            "a tunnel with a mismatched SNI relayed bytes: {e}"
        );
    }
    // Same through curl: CONNECT allowed.test:443 but the TLS name (and SNI) is denied.test.
    let r = curl_via(
        p,
        &[
            "--cacert",
            &cafile,
            "--connect-to",
            "denied.test:443:allowed.test:443",
        ],
        "https://denied.test/",
    );
    assert_eq!(
        (r.connect, r.code),
        (200, 0),
        "tunnel set up, TLS refused: {r:?}"
    );
    assert!(!r.text.contains("upstream "), "{r:?}");

    // --- Host header differing from the target.
    let r = curl_via(p, &["-H", "Host: denied.test"], "http://allowed.test/api/x");
    assert_refused(
        "absolute-form Host: denied.test",
        &r,
        400,
        Some("host_mismatch"),
    );
    let r = curl_via(p, &["-H", "Host: allowed.test"], "http://denied.test/api/x");
    assert_refused(
        "absolute-form to denied.test, Host: allowed.test",
        &r,
        400,
        Some("host_mismatch"),
    );
    let r = curl_via(
        p,
        &["-H", "Host: allowed.test:8080"],
        "http://allowed.test/api/x",
    );
    assert_refused(
        "absolute-form Host with another port",
        &r,
        400,
        Some("host_mismatch"),
    );
    // user@host: the authority names denied.test, whatever the "user" part says.
    let resp = raw(
        p,
        b"GET http://allowed.test@denied.test/api/x HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    );
    assert_raw(
        "userinfo in the authority",
        &resp,
        400,
        Some("userinfo_in_authority"),
    );
    let resp = raw(
        p,
        b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n",
    );
    assert_raw(
        "CONNECT with Host: denied.test",
        &resp,
        400,
        Some("host_mismatch"),
    );
    // Plain HTTP inside a tunnel to allowed.test:443 naming another Host: closed, not relayed.
    let before = net.events_at(a.allowed).len();
    let resp = raw(
        p,
        b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\nGET / HTTP/1.1\r\nHost: denied.test\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(!resp.contains("upstream "), "{resp}");
    for e in &net.events_at(a.allowed)[before..] {
        assert!(
            e["kind"] == "accept" || e["kind"] == "tcp-empty",
            "a tunnel with a mismatched inner Host relayed bytes: {e}"
        );
    }

    // --- Path rule allowed.test/api/* on :80: percent-encoding and dot-segment tricks.
    for (path, status, reason) in [
        ("/secret", 403, Some("path_not_allowed")),
        ("/api/../secret", 403, Some("path_not_allowed")),
        ("/api/./../secret", 403, Some("path_not_allowed")),
        ("/api/%2e%2e/secret", 403, Some("path_not_allowed")),
        ("/api/%2E%2E/secret", 403, Some("path_not_allowed")),
        ("/api/.%2e/secret", 403, Some("path_not_allowed")),
        ("/%61pi/../secret", 403, Some("path_not_allowed")),
        ("/API/secret", 403, Some("path_not_allowed")),
        ("/secret?x=/api/", 403, Some("path_not_allowed")),
        ("/api/..%2fsecret", 400, None),
        ("/api/..%2Fsecret", 400, None),
        ("/api/%2e%2e%2fsecret", 400, None),
        ("/api/..%5csecret", 400, None),
        ("/api/..;x/secret", 400, None),
        ("/../secret", 400, None),
        ("/api/../../secret", 400, None),
    ] {
        let r = curl_via(p, &["--path-as-is"], &format!("http://allowed.test{path}"));
        assert_refused(&format!("path {path}"), &r, status, reason);
        if status == 400 {
            // A path that cannot be normalised is refused as the client's error, with a reason.
            assert!(r.error().is_some(), "path {path}: {r:?}");
        }
    }
    // Raw, so that no client tidies the path first.
    for path in [
        "/api/../secret",
        "/api/%2e%2e/secret",
        "/%61pi/%2E%2E/secret",
    ] {
        let resp = raw(
            p,
            format!("GET http://allowed.test{path} HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_raw(
            &format!("raw path {path}"),
            &resp,
            403,
            Some("path_not_allowed"),
        );
    }
    // Allowed after normalisation: the upstream is sent the normalised path.
    for (path, forwarded) in [
        ("/%61pi/ok", "/api/ok"),
        ("/api/x/../ok2", "/api/ok2"),
        ("/api/%252e%252e/secret", "/api/%252e%252e/secret"),
    ] {
        let r = curl_via(p, &["--path-as-is"], &format!("http://allowed.test{path}"));
        assert_eq!(r.code, 200, "path {path}: {r:?}");
        assert!(
            r.text.contains(&format!("path={forwarded} ")),
            "path {path}: {r:?}"
        );
        served.push(forwarded);
    }
    // Keep-alive: every request on one client connection is decided on its own.
    let resp = raw_all(
        p,
        b"GET http://allowed.test/api/first HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
          GET http://allowed.test/secret HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
          GET http://denied.test/api/x HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n",
    );
    let statuses: Vec<&str> = resp
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 403 Forbidden",
            "HTTP/1.1 403 Forbidden"
        ],
        "{resp}"
    );
    served.push("/api/first");
    // A tunnel would hide the path: CONNECT to the path-ruled port is refused.
    let r = curl_via(p, &["-p"], "http://allowed.test/api/x");
    assert_refused(
        "CONNECT allowed.test:80",
        &r,
        403,
        Some("path_needs_tls_inspection"),
    );

    // --- Trailing dots and mixed case: the same name as normalised.
    let r = curl_via(p, &[], "http://ALLOWED.Test./api/case");
    assert_eq!(r.code, 200, "{r:?}");
    served.push("/api/case");
    let r = curl_via(p, &ca, "https://Allowed.TEST./case");
    assert_eq!((r.connect, r.code), (200, 200), "{r:?}");
    for url in [
        "http://denied.test/api/x",
        "http://DENIED.test./api/x",
        "http://DeNiEd.TeSt/api/x",
        "http://other.test/api/x",
    ] {
        let r = curl_via(p, &[], url);
        assert_refused(url, &r, 403, Some("no_rule_for_destination"));
    }
    for url in ["https://denied.test/", "https://DENIED.TEST./"] {
        let r = curl_via(p, &ca, url);
        assert_refused(url, &r, 403, Some("no_rule_for_destination"));
    }
    for target in ["DENIED.test.:443", "denied.test.:443"] {
        let resp = raw(p, format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes());
        assert_raw(target, &resp, 403, Some("no_rule_for_destination"));
    }
    for target in [
        "allowed.test..:443",
        "denied.test..:443",
        ".allowed.test:443",
    ] {
        let resp = raw(p, format!("CONNECT {target} HTTP/1.1\r\n\r\n").as_bytes());
        assert_raw(target, &resp, 400, Some("invalid_hostname"));
    }

    // --- IDN homograph of allowed.test (Cyrillic а): another name, denied. The hosts file
    // points it at the allowed upstream, so a wrong allow would show there.
    for url in [
        format!("http://{HOMOGRAPH_PUNY}/api/x"),
        format!("http://{HOMOGRAPH_UTF8}/api/x"),
    ] {
        let r = curl_via(p, &[], &url);
        assert_refused(&url, &r, 403, Some("no_rule_for_destination"));
    }
    for url in [
        format!("https://{HOMOGRAPH_PUNY}/"),
        format!("https://{HOMOGRAPH_UTF8}/"),
    ] {
        let r = curl_via(p, &ca, &url);
        assert_refused(&url, &r, 403, Some("no_rule_for_destination"));
    }
    // Raw UTF-8 on the wire, and the homograph as SNI inside an allowed tunnel.
    let resp = raw(
        p,
        format!("CONNECT {HOMOGRAPH_UTF8}:443 HTTP/1.1\r\nHost: {HOMOGRAPH_UTF8}:443\r\n\r\n")
            .as_bytes(),
    );
    assert!(
        resp.starts_with("HTTP/1.1 403 ") || resp.starts_with("HTTP/1.1 400 "),
        "raw UTF-8 homograph: {resp}"
    );
    let (ok_, out) = s_client(
        p,
        "allowed.test:443",
        Some(HOMOGRAPH_PUNY),
        &net.cert,
        "GET /homograph HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    );
    assert!(!ok_ && !out.contains("upstream "), "homograph SNI: {out}");

    // --- Plaintext HTTP in a tunnel: every request must name the CONNECT target, not only
    // the first (else one tunnel fronts for any virtual host at the address).
    let resp = raw_all(
        p,
        b"CONNECT dns.allowed.test:80 HTTP/1.1\r\nHost: dns.allowed.test:80\r\n\r\n\
          GET /in-tunnel HTTP/1.1\r\nHost: dns.allowed.test\r\n\r\n\
          GET /fronted HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    assert!(
        resp.contains("path=/in-tunnel host=dns.allowed.test"),
        "{resp}"
    );
    assert!(
        resp.contains("HTTP/1.1 400 ") && resp.contains("x-perimeter-error: host_mismatch"),
        "the fronted request: {resp}"
    );
    assert!(!resp.contains("path=/fronted"), "{resp}");
    served.push("/in-tunnel");

    // --- What the upstreams saw: the allowed HTTP upstream served exactly the allowed
    // requests (never /secret in any spelling), nothing reached denied.test or the private
    // upstream, and no request named the homograph.
    let http: Vec<String> = net
        .events_at(a.allowed)
        .iter()
        .filter(|e| e["kind"] == "http")
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(http, served, "paths the allowed upstream served");
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

// ---------------------------------------------------------------------------------------------
// Explicit proxy under ALLOW_ALL: the address guard still holds

#[test]
fn allow_all_still_refuses_loopback_metadata_and_private_without_a_cidr_rule() {
    let net = Net::new(NetOptions {
        metadata: true,
        workload: false,
    });
    let a = net.a;
    // A loopback listener: it must never see a connection.
    let lo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    lo.set_nonblocking(true).unwrap();
    let lport = lo.local_addr().unwrap().port();

    let s = start_serve(&net.dir.path().join("cp"), &[]);
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "netns-allow", &["us-east-1"]);
    let token = gateway_token(&s, &key, &cid, "us-east-1", "gw-1");
    let gw = Gateway::start(
        net.dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &net.dir.path().join("gw-state"),
        &net.hosts,
        &net.dns,
    );
    wait_gateways_applied(&s, &key, &cid, 1);
    let c = ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None);
    assert_eq!(c["egress_traffic_policy"], "ALLOW_ALL");
    let p = gw.proxy.as_str();
    let cafile = net.cert.to_str().unwrap().to_string();
    let ca = ["--cacert", cafile.as_str()];

    // ALLOW_ALL really allows: ordinary addresses, by name, over HTTP and HTTPS.
    let r = curl_via(p, &[], "http://denied.test/anything");
    assert_eq!(r.code, 200, "{r:?}");
    assert!(r.text.contains("host=denied.test"), "{r:?}");
    let r = curl_via(p, &ca, "https://denied.test/tls");
    assert_eq!((r.connect, r.code), (200, 200), "{r:?}");
    // A name resolving to a metadata, a private and a public address: only the public one is
    // dialled.
    let r = curl_via(p, &[], "http://multi.test/first-allowed");
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.text.contains(&format!("upstream {}:80 ", a.allowed)),
        "{r:?}"
    );

    // Loopback, metadata and private stay refused without a CIDR rule.
    let loopback = [
        format!("http://127.0.0.1:{lport}/"),
        format!("http://127.0.0.2:{lport}/"),
        format!("http://[::1]:{lport}/"),
        format!("http://[::ffff:127.0.0.1]:{lport}/"),
        format!("http://[::ffff:7f00:1]:{lport}/"),
        format!("http://0.0.0.0:{lport}/"),
        format!("http://loopback.test:{lport}/"),
    ];
    let metadata = [
        format!("http://{METADATA}/latest/meta-data/"),
        format!("http://[::ffff:{METADATA}]/latest/meta-data/"),
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/".to_string(),
        "http://metadata.test/latest/meta-data/".to_string(),
    ];
    let private = [
        format!("http://{}/", a.private),
        "http://private.test/".to_string(),
        "http://private.allowed.test/".to_string(),
    ];
    for url in loopback.iter().chain(&metadata).chain(&private) {
        let r = curl_via(p, &[], url);
        assert_refused(url, &r, 403, Some("special_address"));
        let r = curl_via(p, &["-p"], url);
        assert_refused(&format!("CONNECT {url}"), &r, 403, Some("special_address"));
    }
    let r = curl_via(p, &[], "http://metadata.test/");
    assert!(
        r.text.contains("metadata"),
        "the reason names the class: {r:?}"
    );
    // A single label is not a hostname: refused before it is resolved (the hosts file would
    // say 127.0.0.1).
    let r = curl_via(p, &[], &format!("http://localhost:{lport}/"));
    assert_refused("localhost", &r, 400, Some("invalid_hostname"));
    // Non-canonical spellings are 400 under ALLOW_ALL too.
    for (spelled, what) in non_canonical(METADATA)
        .into_iter()
        .chain(non_canonical(Ipv4Addr::LOCALHOST))
    {
        let resp = raw(
            p,
            format!(
                "GET http://{spelled}/ HTTP/1.1\r\nHost: {spelled}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert_raw(
            &format!("{what} {spelled}"),
            &resp,
            400,
            Some("non_canonical_ip"),
        );
    }
    assert!(
        lo.accept().is_err(),
        "the loopback listener was connected to"
    );
    assert_eq!(net.events_at(METADATA), Vec::<Value>::new(), "metadata");
    assert_eq!(net.events_at(a.private), Vec::<Value>::new(), "private");

    // A CIDR rule naming the private address opens it, and only on its port.
    let rule = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "private-upstream", "type": "CIDR", "destination": format!("{}/32", a.private), "ports": [80], "description": "the private upstream"}),
    );
    wait_rule_active(&s, &key, &cid, rule["id"].as_str().unwrap());
    let r = curl_via(p, &[], "http://private.test/named");
    assert_eq!(r.code, 200, "{r:?}");
    assert!(
        r.text.contains(&format!("upstream {}:80 ", a.private)),
        "{r:?}"
    );
    let r = curl_via(p, &ca, "https://private.test/");
    assert_refused("private on another port", &r, 403, Some("special_address"));
    // Metadata and loopback are still refused.
    for url in [&metadata[0], &loopback[0]] {
        let r = curl_via(p, &[], url);
        assert_refused(url, &r, 403, Some("special_address"));
    }
    assert!(
        lo.accept().is_err(),
        "the loopback listener was connected to"
    );
    assert_eq!(net.events_at(METADATA), Vec::<Value>::new(), "metadata");
    gw.terminate();
}

// ---------------------------------------------------------------------------------------------
// Rule states with two gateways, and enforcement without the control plane

#[test]
fn rule_states_follow_two_gateways_and_enforcement_survives_the_control_plane() {
    let net = Net::new(NetOptions::default());
    let deadline_secs = 4u64;
    let s = start_serve(
        &net.dir.path().join("cp"),
        &["--propagation-deadline-seconds", &deadline_secs.to_string()],
    );
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "netns-states", &["us-east-1", "us-west-2"]);
    let t1 = gateway_token(&s, &key, &cid, "us-east-1", "gw-east");
    let t2 = gateway_token(&s, &key, &cid, "us-west-2", "gw-west");
    let state1 = net.dir.path().join("gw-east");
    let state2 = net.dir.path().join("gw-west");
    let start = |token: &str, region: &str, state: &Path, cp: &str| {
        Gateway::start(
            net.dir.path(),
            cp,
            token,
            region,
            state,
            &net.hosts,
            &net.dns,
        )
    };
    let g1 = start(&t1, "us-east-1", &state1, &s.url);
    let g2 = start(&t2, "us-west-2", &state2, &s.url);
    wait_gateways_applied(&s, &key, &cid, 2);
    set_policy(&s, &key, &cid, false);
    for g in [&g1, &g2] {
        let r = curl_via(&g.proxy, &[], "http://allowed.test/");
        assert_refused("before any rule", &r, 403, Some("no_rule_for_destination"));
    }

    // PENDING_CREATION, then ACTIVE once both gateways applied it.
    let rule = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "allowed", "type": "FQDN", "destination": "allowed.test", "ports": [80, 443], "description": "allowed"}),
    );
    assert_eq!(rule["state"], "PENDING_CREATION", "{rule}");
    let rid = rule["id"].as_str().unwrap().to_string();
    let mut seen = vec![rule["state"].as_str().unwrap().to_string()];
    wait_until("the rule to read ACTIVE", 30, || {
        let st = rule_state(&s, &key, &cid, &rid);
        if seen.last() != Some(&st) {
            seen.push(st.clone());
        }
        st == "ACTIVE"
    });
    assert_eq!(seen, ["PENDING_CREATION", "ACTIVE"], "states observed");
    let cafile = net.cert.to_str().unwrap().to_string();
    for g in [&g1, &g2] {
        let r = curl_via(&g.proxy, &[], "http://allowed.test/both");
        assert_eq!(r.code, 200, "{r:?}");
        let r = curl_via(
            &g.proxy,
            &["--cacert", &cafile],
            "https://allowed.test/both",
        );
        assert_eq!((r.connect, r.code), (200, 200), "{r:?}");
    }

    // One gateway stops: a new rule stays PENDING_CREATION (the stopped gateway still counts
    // as live), while the running one already enforces it; past the deadline INCONSISTENT.
    g2.terminate();
    let rule2 = add_rule(
        &s,
        &key,
        &cid,
        json!({"name": "denied-now-allowed", "type": "FQDN", "destination": "denied.test", "ports": [80], "description": "second"}),
    );
    let added = Instant::now();
    assert_eq!(rule2["state"], "PENDING_CREATION", "{rule2}");
    let rid2 = rule2["id"].as_str().unwrap().to_string();
    wait_until("the running gateway to enforce the new rule", 10, || {
        curl_via(&g1.proxy, &[], "http://denied.test/new").code == 200
    });
    let pending_seen_at = added.elapsed();
    let st = rule_state(&s, &key, &cid, &rid2);
    assert!(
        pending_seen_at < Duration::from_secs(deadline_secs),
        "the gateway took {pending_seen_at:?} to apply; cannot observe the pending state"
    );
    assert_eq!(
        st, "PENDING_CREATION",
        "applied by one of two live gateways"
    );
    let mut states = vec![st];
    wait_until("the rule to read INCONSISTENT", deadline_secs + 20, || {
        let st = rule_state(&s, &key, &cid, &rid2);
        if states.last() != Some(&st) {
            states.push(st.clone());
        }
        st == "INCONSISTENT"
    });
    let inconsistent_after = added.elapsed();
    assert_eq!(
        states,
        ["PENDING_CREATION", "INCONSISTENT"],
        "states observed"
    );
    // The deadline runs from the server's clock at the change, a little before `added`.
    assert!(
        inconsistent_after + Duration::from_millis(500) >= Duration::from_secs(deadline_secs),
        "INCONSISTENT after {inconsistent_after:?}, before the {deadline_secs} s deadline"
    );
    // The first rule is untouched.
    assert_eq!(rule_state(&s, &key, &cid, &rid), "ACTIVE");

    // The control plane dies: the running gateway keeps enforcing its last snapshot.
    s.kill9();
    let check = |g: &Gateway, denied_allowed: bool, what: &str| {
        let r = curl_via(&g.proxy, &[], "http://allowed.test/after");
        assert_eq!(r.code, 200, "{what}: {r:?}");
        let r = curl_via(
            &g.proxy,
            &["--cacert", &cafile],
            "https://allowed.test/after",
        );
        assert_eq!((r.connect, r.code), (200, 200), "{what}: {r:?}");
        let r = curl_via(&g.proxy, &[], "http://denied.test/after");
        if denied_allowed {
            assert_eq!(r.code, 200, "{what}: {r:?}");
        } else {
            assert_refused(what, &r, 403, Some("no_rule_for_destination"));
        }
        let r = curl_via(&g.proxy, &[], "http://other.test/after");
        assert_refused(what, &r, 403, Some("no_rule_for_destination"));
        let r = curl_via(&g.proxy, &[], "http://private.allowed.test/after");
        assert_refused(what, &r, 403, Some("no_rule_for_destination"));
    };
    check(&g1, true, "control plane down");
    std::thread::sleep(Duration::from_secs(3)); // More than one long-poll round.
    check(&g1, true, "control plane down, a while later");
    // The stopped gateway, restarted without a control plane, enforces the snapshot it had
    // applied: without the second rule.
    let dead_cp = format!("http://{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    });
    let g2 = start(&t2, "us-west-2", &state2, &dead_cp);
    check(&g2, false, "restarted from its last-known-good");
    let denied_events = net
        .events_at(net.a.denied)
        .iter()
        .filter(|e| e["kind"] == "http")
        .count();
    assert_eq!(
        denied_events, 3,
        "denied.test served exactly the allowed requests"
    );
    g1.terminate();
    g2.terminate();
}

// ---------------------------------------------------------------------------------------------
// The workload namespace (for transparent mode)

#[test]
fn workload_namespace_leaves_only_through_the_root_namespace() {
    let net = Net::new(NetOptions {
        metadata: false,
        workload: true,
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

// ---------------------------------------------------------------------------------------------
// Transparent mode
//
// The gateway's transparent listener stands on the root namespace's end of the workload link;
// a nat PREROUTING rule on that link (and only there) redirects every TCP connection of the
// workload to it. The workload knows nothing of a proxy: curl and openssl inside it connect
// straight to the upstreams' addresses, which they resolve themselves (`--resolve`), as a
// workload with its own DNS would.

/// The REDIRECT rule for the workload's link, deleted on drop.
struct Redirect {
    rule: Vec<String>,
}

impl Redirect {
    fn new(veth: &str, port: u16) -> Redirect {
        let rule: Vec<String> = [
            "PREROUTING",
            "-i",
            veth,
            "-p",
            "tcp",
            "-j",
            "REDIRECT",
            "--to-ports",
            &port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut args = vec!["-t", "nat", "-A"];
        args.extend(rule.iter().map(String::as_str));
        let out = run("iptables", &args);
        assert!(
            out.status.success(),
            "iptables {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Redirect { rule }
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        let mut args = vec!["-t", "nat", "-D"];
        args.extend(self.rule.iter().map(String::as_str));
        let _ = run("iptables", &args);
    }
}

/// curl inside the workload namespace, no proxy; `resolve` pins names as the workload's own
/// resolver would. Returns (status, `x-perimeter-error`, the whole output, exit success).
fn workload_curl(w: &Workload, args: &[&str]) -> (u16, Option<String>, String, bool) {
    let out = w
        .command("curl")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .args([
            "-s",
            "-i",
            "-m",
            "10",
            "--noproxy",
            "*",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl in the workload namespace");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text
        .rsplit_once('\n')
        .and_then(|(_, c)| c.trim().parse().ok())
        .unwrap_or(0);
    let reason = header_value(&text, "x-perimeter-error");
    (code, reason, text, out.status.success())
}

#[test]
fn transparent_listener_decides_on_sni_and_host_and_checks_the_original_address() {
    let net = Net::new(NetOptions {
        metadata: false,
        workload: true,
    });
    let a = net.a;
    let w = net.workload.as_ref().unwrap();
    let s = start_serve(&net.dir.path().join("cp"), &[]);
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, "netns-transparent", &["us-east-1"]);
    let token = gateway_token(&s, &key, &cid, "us-east-1", "gw-t");
    let listen = format!("{}:0", a.workload_root);
    let gw = Gateway::start_with(
        net.dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &net.dir.path().join("gw-state"),
        &net.hosts,
        &net.dns,
        &["--transparent-listen", &listen],
    );
    let tport: u16 = gw
        .transparent
        .as_deref()
        .and_then(|t| t.rsplit_once(':'))
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("no transparent listener announced: {}", gw.log_text()));
    wait_gateways_applied(&s, &key, &cid, 1);
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
    let pin = |name: &str, port: u16, ip: Ipv4Addr| format!("{name}:{port}:{ip}");

    // --- Allowed: HTTPS by SNI, dialled at the address the workload chose (one of the name's).
    let (code, _, text, _) = workload_curl(
        w,
        &[
            "--cacert",
            &cafile,
            "--resolve",
            &pin("allowed.test", 443, a.allowed),
            "https://allowed.test/t-secure",
        ],
    );
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains(&format!(
            "upstream {}:443 https path=/t-secure host=allowed.test sni=allowed.test",
            a.allowed
        )),
        "{text}"
    );
    // Plain HTTP by Host, path rules on every request of a keep-alive connection.
    let (code, _, text, _) = workload_curl(
        w,
        &[
            "--resolve",
            &pin("allowed.test", 80, a.allowed),
            "http://allowed.test/api/t1",
            "http://allowed.test/api/../t-secret",
            "http://allowed.test/api/t2",
        ],
    );
    assert!(text.contains("path=/api/t1"), "{text}");
    assert!(text.contains("path=/api/t2"), "{text}");
    assert!(
        text.contains("x-perimeter-error: path_not_allowed"),
        "{text}"
    );
    assert_eq!(code, 200, "the last request: {text}");
    let (code, reason, text, _) = workload_curl(
        w,
        &[
            "--resolve",
            &pin("allowed.test", 80, a.allowed),
            "http://allowed.test/t-secret",
        ],
    );
    assert_eq!(
        (code, reason.as_deref()),
        (403, Some("path_not_allowed")),
        "{text}"
    );

    // --- SNI allowed, but the workload dialled an address that is not the name's.
    let (code, _, text, ok_) = workload_curl(
        w,
        &[
            "--cacert",
            &cafile,
            "--resolve",
            &pin("allowed.test", 443, a.denied),
            "https://allowed.test/t-mismatch",
        ],
    );
    assert!(
        !ok_ && code == 0,
        "SNI allowed, address not the name's: {text}"
    );
    // The same with plain HTTP: the Host is allowed, the address is not its.
    let (code, reason, text, _) = workload_curl(
        w,
        &[
            "--resolve",
            &pin("allowed.test", 80, a.denied),
            "http://allowed.test/api/t-mismatch",
        ],
    );
    assert_eq!(
        (code, reason.as_deref()),
        (403, Some("original_destination_mismatch")),
        "{text}"
    );
    // A Host naming another port than the one dialled.
    let (code, reason, text, _) = workload_curl(
        w,
        &[
            "-H",
            "Host: allowed.test:8080",
            &format!("http://{}/api/t-port", a.allowed),
        ],
    );
    assert_eq!(
        (code, reason.as_deref()),
        (400, Some("host_mismatch")),
        "{text}"
    );

    // --- Names without a rule, and addresses without a CIDR rule, are refused.
    let (code, _, text, ok_) = workload_curl(
        w,
        &[
            "-k",
            "--resolve",
            &pin("denied.test", 443, a.denied),
            "https://denied.test/t-denied",
        ],
    );
    assert!(!ok_ && code == 0, "denied.test over TLS: {text}");
    let (code, reason, text, _) = workload_curl(
        w,
        &[
            "--resolve",
            &pin("denied.test", 80, a.denied),
            "http://denied.test/t-denied",
        ],
    );
    assert_eq!(
        (code, reason.as_deref()),
        (403, Some("no_rule_for_destination")),
        "{text}"
    );
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
    // The private upstream, by an allowed name's pinning: not the name's address either.
    let (code, _, text, ok_) = workload_curl(
        w,
        &[
            "--cacert",
            &cafile,
            "--resolve",
            &pin("allowed.test", 443, a.private),
            "https://allowed.test/t-private",
        ],
    );
    assert!(!ok_ && code == 0, "{text}");

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
    let log = gw.log_text();
    for reason in [
        "original_destination_mismatch",
        "not_redirected",
        "no_rule_for_destination",
    ] {
        assert!(
            log.contains(reason),
            "the decision events name {reason}:\n{log}"
        );
    }
    gw.terminate();
}
