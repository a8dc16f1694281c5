//! The namespace fixture ([`Net`]): one slot's namespaces, veth pairs and routes, the
//! upstreams inside them, the hosts file and the DNS server the gateways resolve with, and the
//! firewall redirect of the transparent listener. See the crate's documentation for the layout.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perimeter_testkit::dns::dns_server;
use perimeter_testkit::lock::{lock_within, try_lock};
use perimeter_testkit::netns::{ip, ip_quiet, kill_inside, run};
use serde_json::Value;

const SLOTS: u8 = 8;
pub const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// `аllowed.test` with a Cyrillic `а` (U+0430), as A-labels.
pub const HOMOGRAPH_PUNY: &str = "xn--llowed-2nf.test";
pub const HOMOGRAPH_UTF8: &str = "\u{430}llowed.test";
/// Events of the Python upstream that end one of its connections (each follows an `accept`).
const ENDS: [&str; 8] = [
    "http",
    "https",
    "tcp-empty",
    "tls-fail",
    "https-nohead",
    "error",
    "greet-end",
    "echo-end",
];

/// Addresses of one slot.
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub root_link: Ipv4Addr,
    pub ns_link: Ipv4Addr,
    /// Upstream of `allowed.test` (HTTP :80, TLS :443).
    pub allowed: Ipv4Addr,
    /// Upstream of `denied.test` (HTTP :80, TLS :443).
    pub denied: Ipv4Addr,
    /// A private (RFC 1918) upstream (HTTP :80, TLS :443).
    pub private: Ipv4Addr,
    pub workload_root: Ipv4Addr,
    pub workload: Ipv4Addr,
    /// Addresses of the slot's link that nothing uses, for a test to add to the root
    /// namespace's end of the link ([`Net::add_root_address`]).
    pub spare: [Ipv4Addr; 2],
}

impl Addrs {
    pub fn of_slot(n: u8) -> Addrs {
        let b = 16 * n;
        Addrs {
            root_link: Ipv4Addr::new(198, 51, 100, b + 1),
            ns_link: Ipv4Addr::new(198, 51, 100, b + 2),
            allowed: Ipv4Addr::new(198, 51, 100, b + 10),
            denied: Ipv4Addr::new(203, 0, 113, b + 10),
            private: Ipv4Addr::new(10, 213, n, 10),
            workload_root: Ipv4Addr::new(203, 0, 113, b + 1),
            workload: Ipv4Addr::new(203, 0, 113, b + 2),
            spare: [
                Ipv4Addr::new(198, 51, 100, b + 12),
                Ipv4Addr::new(198, 51, 100, b + 13),
            ],
        }
    }
}

/// Which server answers HTTP on the allowed upstream's port 80.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum HttpServer {
    /// The Python upstream's own small HTTP listener (`http` events, one request a connection).
    #[default]
    Plain,
    /// Python's `http.server`, a real and lenient HTTP/1.1 server (`request` events).
    Python,
    /// Node's `http` module (`request` events).
    Node,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct NetOptions {
    /// Also stand an HTTP upstream on 169.254.169.254:80 in the namespace and route that /32
    /// there (under a machine-wide lock).
    pub metadata: bool,
    /// Also create the workload namespace.
    pub workload: bool,
    /// The server on the allowed upstream's port 80.
    pub http: HttpServer,
}

/// The workload namespace: its only route leads to the root namespace.
pub struct Workload {
    pub ns: String,
    pub veth: String,
}

impl Workload {
    /// A command that runs inside the workload namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}

/// One slot's namespaces, links, routes, upstreams and names (see the crate documentation for
/// the layout). Drop, also while unwinding from a panic, removes everything it made.
pub struct Net {
    slot: u8,
    pub a: Addrs,
    pub ns: String,
    pub veth: String,
    routes: Vec<String>,
    pub workload: Option<Workload>,
    upstream: Option<Child>,
    upstream_log: PathBuf,
    node: Option<Child>,
    node_log: PathBuf,
    http: HttpServer,
    pub cert: PathBuf,
    pub hosts: PathBuf,
    pub dns: String,
    metadata: bool,
    pub dir: tempfile::TempDir,
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
    pub fn new(opts: NetOptions) -> Net {
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
            node: None,
            node_log: dir.path().join("node.log"),
            http: opts.http,
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
        let made = perimeter_testkit::certs::self_signed(
            self.dir.path(),
            &["allowed.test", "*.allowed.test", "denied.test"],
        );
        assert_eq!(made.cert, self.cert, "the fixture's certificate path");
    }

    fn start_upstream(&mut self) {
        let script = self.dir.path().join("upstream.py");
        std::fs::write(&script, UPSTREAM_PY).unwrap();
        let key = self.dir.path().join("key.pem");
        let mut specs = Vec::new();
        for addr in [self.a.allowed, self.a.denied, self.a.private] {
            match self.http {
                HttpServer::Python if addr == self.a.allowed => {
                    specs.push(format!("pyhttp:{addr}:80"))
                }
                HttpServer::Node if addr == self.a.allowed => {}
                _ => specs.push(format!("http:{addr}:80")),
            }
            specs.push(format!("tls:{addr}:443"));
            specs.push(format!("greet:{addr}:25"));
            specs.push(format!("echo:{addr}:7"));
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
        if self.http == HttpServer::Node {
            self.start_node();
        }
    }

    /// Node's HTTP server on the allowed upstream's port 80.
    fn start_node(&mut self) {
        let script = self.dir.path().join("upstream.js");
        std::fs::write(&script, UPSTREAM_JS).unwrap();
        let err = std::fs::File::create(self.dir.path().join("node.err")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "node"])
            .arg(&script)
            .arg(&self.node_log)
            .arg(format!("{}:80", self.a.allowed))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("ip netns exec node (Node.js is needed: apt-get install nodejs)");
        self.node = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.server_events().iter().any(|e| e["kind"] == "ready") {
            let exited = self.node.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "the node upstream in {} did not start ({exited:?}): {}",
                    self.ns,
                    std::fs::read_to_string(self.dir.path().join("node.err")).unwrap_or_default()
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
        // The root namespace's own end of the link: the gateway host's address.
        records.insert("gateway-host.test".into(), vec![a.root_link]);
        if self.metadata {
            records.insert("metadata.test".into(), vec![METADATA]);
            // Rebinding-style: a special address first, a public one after it.
            records.insert("multi.test".into(), vec![METADATA, a.private, a.allowed]);
        }
        self.dns = dns_server(records);
    }

    /// Every event the upstream logged, in order.
    pub fn events(&self) -> Vec<Value> {
        log_events(&self.upstream_log)
    }

    /// Wait (5 s at most) until every connection the upstream accepted has ended, then return
    /// its events.
    pub fn settled_events(&self) -> Vec<Value> {
        settled_log_events(&self.upstream_log)
    }

    /// What the real HTTP servers (Python's `http.server`, Node) logged, in order: `request`
    /// (method, path, host, version), `body` (a piece of a request body as it came),
    /// `client-error` (bytes the server could not parse, `raw`), and Node's `closed`.
    pub fn server_events(&self) -> Vec<Value> {
        let mut text = std::fs::read_to_string(&self.node_log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(&self.upstream_log).unwrap_or_default());
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| e.get("server").is_some())
            .collect()
    }

    /// Add `names` for `addr` to the hosts file the gateways resolve with. Only names added
    /// before a gateway starts count: it reads the file once.
    pub fn add_hosts(&self, addr: Ipv4Addr, names: &[&str]) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.hosts)
            .expect("open the hosts file");
        writeln!(f, "{addr} {}", names.join(" ")).expect("write the hosts file");
    }

    /// Another TLS upstream in the namespace: the fixture's Python upstream (its `tls` kind)
    /// on `addr:port` with its own certificate and key and its own event log, e.g. an upstream
    /// whose certificate has expired or comes from a CA nobody trusts. Stopped on drop.
    pub fn tls_upstream(
        &self,
        name: &str,
        addr: Ipv4Addr,
        port: u16,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> ExtraUpstream {
        let script = self.dir.path().join("upstream.py");
        let log = self.dir.path().join(format!("upstream-{name}.log"));
        let err_path = self.dir.path().join(format!("upstream-{name}.err"));
        let err = std::fs::File::create(&err_path).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-u"])
            .arg(&script)
            .arg(&log)
            .arg(cert)
            .arg(key)
            .arg(format!("tls:{addr}:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("ip netns exec python3");
        let mut up = ExtraUpstream { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !up.events().iter().any(|e| e["kind"] == "ready") {
            let exited = up.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "the {name} upstream in {} did not start ({exited:?}): {}",
                    self.ns,
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    }

    /// Add `addr`/32 to the root namespace's end of the link (the gateway host's interface),
    /// removed when the guard is dropped (and with the link, by the fixture).
    pub fn add_root_address(&self, addr: Ipv4Addr) -> RootAddress {
        let cidr = format!("{addr}/32");
        ip(&["addr", "add", &cidr, "dev", &self.veth]);
        RootAddress {
            cidr,
            dev: self.veth.clone(),
        }
    }

    /// Events at upstream `addr`.
    pub fn events_at(&self, addr: Ipv4Addr) -> Vec<Value> {
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
        for mut c in [self.upstream.take(), self.node.take()]
            .into_iter()
            .flatten()
        {
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

/// The upstream: one process in the namespace, listeners `kind:ip:port`:
///
/// - `http` and `tls`: log one JSON line per accepted connection (`accept`) and one when it
///   ends: `http` / `https` (the raw request target, Host and SNI), `tcp-empty` (closed before
///   sending a byte), `tls-fail`, `https-nohead`. They answer `upstream <ip:port> <kind>
///   path=... host=... sni=...`;
/// - `greet`: a server that speaks first, as SMTP does; logs each line it hears (`greet`) and
///   `greet-end`;
/// - `echo`: sends back what it receives; logs each piece (`echo-data`, with the bytes as
///   latin-1 when the piece is at most 1 KiB, so that a test can look for a marker) and
///   `echo-end` with the total;
/// - `pyhttp`: Python's `http.server` (HTTP/1.1, keep-alive), a real server and a lenient one;
///   logs `request` for every request it parsed (even one it then refuses, e.g. an unknown
///   method), `client-error` with the request line it could not parse, and `body` for each
///   piece of a request body as it reads it (chunked bodies chunk by chunk).
const UPSTREAM_PY: &str = r#"
import http.server, json, socket, ssl, sys, threading

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
    try:
        conn.settimeout(30)
        conn.sendall(f"220 {local} ready\r\n".encode())
        f = conn.makefile("rb")
        for line in f:
            log(kind="greet", local=local, line=line.decode("latin-1").rstrip("\r\n"))
            conn.sendall(b"250 " + line)
    except OSError:
        pass
    finally:
        log(kind="greet-end", local=local)
        conn.close()

def echo(conn, local):
    total = 0
    try:
        conn.settimeout(30)
        while True:
            data = conn.recv(65536)
            if not data:
                break
            total += len(data)
            text = data.decode("latin-1") if len(data) <= 1024 else None
            log(kind="echo-data", local=local, n=len(data), text=text)
            conn.sendall(data)
    except OSError:
        pass
    finally:
        log(kind="echo-end", local=local, bytes=total)
        conn.close()

class PyHttp(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def parse_request(self):
        ok = super().parse_request()
        local = self.server.local
        if ok:
            log(server="python", kind="request", local=local, method=self.command, path=self.path,
                host=self.headers.get("Host"), version=self.request_version)
        else:
            log(server="python", kind="client-error", local=local,
                raw=self.raw_requestline.decode("latin-1"))
        return ok

    def body(self):
        local = self.server.local
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    return
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline(1024)
                    return
                data = self.rfile.read(size)
                self.rfile.readline(1024)
                log(server="python", kind="body", local=local, path=self.path, data=data.decode("latin-1"))
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            data = self.rfile.read(n)
            log(server="python", kind="body", local=local, path=self.path, data=data.decode("latin-1"))

    def answer(self):
        self.body()
        host = self.headers.get("Host") or ""
        body = f"upstream {self.server.local} python path={self.path} host={host}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = answer

    def log_message(self, *args):
        pass

def accept_loop(srv, kind, local):
    while True:
        conn, peer = srv.accept()
        log(kind="accept", local=local, peer=f"{peer[0]}:{peer[1]}")
        target = {"greet": greet, "echo": echo}.get(kind, handle)
        args = (conn, local) if kind in ("greet", "echo") else (conn, kind, local)
        threading.Thread(target=target, args=args, daemon=True).start()

threads = []
for spec in specs:
    kind, addr, port = spec.split(":")
    if kind == "pyhttp":
        httpd = http.server.ThreadingHTTPServer((addr, int(port)), PyHttp)
        httpd.daemon_threads = True
        httpd.local = f"{addr}:{port}"
        t = threading.Thread(target=httpd.serve_forever, daemon=True)
        t.start()
        threads.append(t)
        continue
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

/// An upstream started by [`Net::tls_upstream`], killed on drop.
pub struct ExtraUpstream {
    child: Child,
    log: PathBuf,
}

impl ExtraUpstream {
    /// Every event it logged, in order (the kinds of the fixture's upstream: `accept`, then
    /// `https`, `tls-fail`, `https-nohead` ...).
    pub fn events(&self) -> Vec<Value> {
        log_events(&self.log)
    }

    /// Wait (5 s at most) until every connection it accepted has ended, then return its
    /// events.
    pub fn settled_events(&self) -> Vec<Value> {
        settled_log_events(&self.log)
    }
}

/// The JSON events of an upstream's log, in order.
fn log_events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// [`log_events`] once every connection the upstream accepted has ended (5 s at most).
fn settled_log_events(log: &Path) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ev = log_events(log);
        let accepted = ev.iter().filter(|e| e["kind"] == "accept").count();
        let ended = ev
            .iter()
            .filter(|e| ENDS.contains(&e["kind"].as_str().unwrap_or_default()))
            .count();
        if accepted == ended || Instant::now() > deadline {
            return ev;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for ExtraUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address on the root namespace's end of the link, deleted on drop.
pub struct RootAddress {
    cidr: String,
    dev: String,
}

impl Drop for RootAddress {
    fn drop(&mut self) {
        ip_quiet(&["addr", "del", &self.cidr, "dev", &self.dev]);
    }
}

/// The REDIRECT rule for the workload's link, deleted on drop.
pub struct Redirect {
    rule: Vec<String>,
}

impl Redirect {
    pub fn new(veth: &str, port: u16) -> Redirect {
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

/// Node's HTTP server (`node upstream.js LOG ip:port...`), with `requireHostHeader: false` as a
/// lenient deployment has it (a request without Host gets the default virtual host). Logs
/// `request` for every request it parsed, `body` for each piece of a body as it arrives,
/// `client-error` with the bytes it could not parse (`raw`), and `closed` for each connection.
/// Answers `upstream <ip:port> node path=... host=...` once the body has ended.
const UPSTREAM_JS: &str = r#"
const fs = require("fs");
const http = require("http");
const [logPath, ...specs] = process.argv.slice(2);
const log = (o) => fs.appendFileSync(logPath, JSON.stringify({ server: "node", ...o }) + "\n");
let listening = 0;
for (const spec of specs) {
  const [addr, port] = spec.split(":");
  const local = `${addr}:${port}`;
  const srv = http.createServer({ requireHostHeader: false }, (req, res) => {
    const host = req.headers.host ?? null;
    log({ kind: "request", local, method: req.method, path: req.url, host, version: req.httpVersion });
    req.on("data", (chunk) => log({ kind: "body", local, path: req.url, data: chunk.toString("latin1") }));
    req.on("end", () => {
      const body = `upstream ${local} node path=${req.url} host=${host ?? ""}\n`;
      res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(body) });
      res.end(body);
    });
  });
  srv.on("clientError", (err, sock) => {
    log({ kind: "client-error", local, code: err.code, raw: err.rawPacket ? err.rawPacket.toString("latin1") : "" });
    sock.destroy();
  });
  srv.on("connection", (sock) => sock.on("close", () => log({ kind: "closed", local })));
  srv.listen(Number(port), addr, () => {
    listening += 1;
    if (listening === specs.length) log({ kind: "ready" });
  });
}
"#;
