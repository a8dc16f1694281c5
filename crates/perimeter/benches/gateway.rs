//! The egress gateway against a direct connection and against Squid, in one run, on loopback:
//!
//! - bulk: MiB/s through one tunnel (client uploads, the sink discards), and the proxy's CPU
//!   seconds per GiB relayed (`/proc/<pid>/stat` utime + stime);
//! - tunnels: CONNECT, one small HTTP request and reply, close, by 32 concurrent clients; tunnels
//!   per second and the proxy's CPU per tunnel. Clients bind source addresses 127.0.0.1-8 and
//!   the sinks listen on 127.0.0.1-8, so no address pair runs out of ports;
//! - rule change to ACTIVE: a rule created through the API until it reads ACTIVE (every live
//!   gateway applied it), median of several.
//!
//! The gateway is the real binary (`perimeter serve` + `perimeter gateway`, separate processes)
//! with 10,000 FQDN rules loaded besides the CIDR rule that admits the sinks, under
//! DEFAULT_DENY, on one worker thread (`--worker-threads 1`). Squid (Debian package; installed
//! with apt-get when missing and this runs as root) is a plain CONNECT proxy with no cache, a
//! hosts file naming the loopback addresses (no reverse lookups), one worker, and its access
//! log in the temporary directory, as the gateway writes its decision log. Client, sinks and proxy share the machine's cores, the same
//! way for all three. Every process started here is killed on exit; traffic stays on loopback.
//!
//! Each round measures the three side by side (in a turning order) and the ratios are the
//! medians of the per-round ratios, which keeps a noisy neighbour from deciding a target.
//!
//! `cargo bench -p perimeter --bench gateway`. Environment: `BENCH_BULK_MIB` (default 4096; 0
//! skips bulk), `BENCH_TUNNEL_SECS` (default 3; 0 skips tunnels), `BENCH_ROUNDS` (default 5),
//! `BENCH_RULES` (default 10000), `BENCH_SQUID_ACCESS_LOG=0` (Squid without its access log).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const CLIENTS: usize = 32;
const ADDRS: u8 = 8;
const REQUEST_TAIL: &str = "\r\nuser-agent: bench\r\n\r\n";
const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loopback(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % ADDRS))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process, killed (and reaped) on drop.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let logf = std::fs::File::create(&log).expect("creating a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        Proc { name, child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) for a line of the log containing `marker`; returns what follows it.
    fn announced(&mut self, marker: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.log_text();
            if let Some(rest) = text.lines().find_map(|l| l.split(marker).nth(1)) {
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                panic!("{} did not announce {marker:?}; log:\n{text}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User + system CPU seconds of the process so far (all its threads).
    fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime from /proc/<pid>/stat, in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3; utime is field 14 and stime 15.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------------------
// Sinks (in this process)

struct Sinks {
    bulk: SocketAddr,
    /// One tunnel sink per loopback address 127.0.0.1-8.
    tunnel: Vec<SocketAddr>,
}

/// Bulk sink: reads a length (8 bytes LE) and that many bytes, discards them, answers the byte
/// count (8 bytes LE) and closes. (No half-close: Squid closes a tunnel on the first one.)
fn bulk_sink() -> SocketAddr {
    let l = TcpListener::bind((loopback(0), 0)).expect("binding the bulk sink");
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).is_err() {
                    return;
                }
                let want = u64::from_le_bytes(len);
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                while n < want {
                    let room = (want - n).min(buf.len() as u64) as usize;
                    match s.read(&mut buf[..room]) {
                        Ok(0) | Err(_) => break,
                        Ok(m) => n += m as u64,
                    }
                }
                let _ = s.write_all(&n.to_le_bytes());
            });
        }
    });
    addr
}

/// Tunnel sinks on 127.0.0.1-8, served by one thread: read a request head, answer, close.
fn tunnel_sinks() -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..ADDRS)
        .map(|i| TcpListener::bind((loopback(i), 0)).expect("binding a tunnel sink"))
        .collect();
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for l in listeners {
                l.set_nonblocking(true).unwrap();
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Ok((s, _)) = l.accept().await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        tokio::spawn(serve_one(s));
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    addrs
}

async fn serve_one(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 1024];
    let mut n = 0;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => return,
                Ok(m) => n += m,
            }
            if n == buf.len() {
                return;
            }
        }
        let _ = s.write_all(REPLY).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Proxy(SocketAddr),
}

/// Send `CONNECT target` on `s` and read the answer's head; Err unless it is a 200.
fn connect_std(s: &mut TcpStream, target: SocketAddr) -> std::io::Result<()> {
    write!(s, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")?;
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b)?;
        if n == 0 || head.len() > 8192 {
            return Err(std::io::Error::other(
                "proxy closed before answering CONNECT",
            ));
        }
        head.extend_from_slice(&b[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
        return Err(std::io::Error::other(format!(
            "CONNECT refused: {}",
            String::from_utf8_lossy(&head)
        )));
    }
    Ok(())
}

struct Bulk {
    bytes: u64,
    secs: f64,
    proxy_cpu: f64,
    /// This process (client and sink).
    bench_cpu: f64,
    /// Share of the machine's CPU time that was busy, 0..1.
    busy: f64,
}

/// Upload `total` bytes through `via` to the bulk sink.
fn bulk(via: Via, sink: SocketAddr, total: u64, proxy: Option<&Proc>) -> Bulk {
    let cpu0 = proxy.map(Proc::cpu_seconds).unwrap_or(0.0);
    let bench0 = cpu_seconds(std::process::id());
    let ticks0 = machine_ticks();
    let start = Instant::now();
    let mut s = TcpStream::connect(match via {
        Via::Direct => sink,
        Via::Proxy(p) => p,
    })
    .expect("connecting for bulk");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    if let Via::Proxy(_) = via {
        connect_std(&mut s, sink).expect("CONNECT to the bulk sink");
    }
    s.write_all(&total.to_le_bytes())
        .expect("writing the length");
    let chunk = vec![0u8; 1024 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).expect("writing bulk data");
        sent += n as u64;
    }
    let mut count = [0u8; 8];
    if let Err(e) = s.read_exact(&mut count) {
        let log = proxy.map(Proc::log_text).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        panic!("the sink's byte count after {sent} bytes: {e}; proxy log ends:\n{tail:#?}");
    }
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_le_bytes(count);
    assert_eq!(got, sent, "the sink received other than what was sent");
    Bulk {
        bytes: got,
        secs,
        proxy_cpu: proxy.map(Proc::cpu_seconds).unwrap_or(0.0) - cpu0,
        bench_cpu: cpu_seconds(std::process::id()) - bench0,
        busy: busy_since(ticks0),
    }
}

struct Tunnels {
    done: u64,
    errors: u64,
    secs: f64,
    proxy_cpu: f64,
    /// This process (clients and sinks).
    bench_cpu: f64,
    /// Share of the machine's CPU time that was busy, 0..1.
    busy: f64,
    first_error: Option<String>,
}

/// (busy, total) clock ticks of all CPUs, from /proc/stat.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPU time that was busy since `ticks0` ([`machine_ticks`]), 0..1.
fn busy_since(ticks0: (u64, u64)) -> f64 {
    let t = machine_ticks();
    (t.0 - ticks0.0) as f64 / ((t.1 - ticks0.1).max(1)) as f64
}

/// One tunnel: (CONNECT,) request, reply, close.
async fn one_tunnel(
    via: Via,
    source: Ipv4Addr,
    sink: SocketAddr,
    request: &[u8],
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4()?;
    // The port is picked at connect time, by the 4-tuple: cheap, and no source address runs
    // out of ports for binding.
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)?;
    sock.bind(SocketAddr::new(source.into(), 0))?;
    let mut s = sock
        .connect(match via {
            Via::Direct => sink,
            Via::Proxy(p) => p,
        })
        .await?;
    s.set_nodelay(true)?;
    let mut buf = [0u8; 1024];
    if let Via::Proxy(_) = via {
        let head = format!("CONNECT {sink} HTTP/1.1\r\nHost: {sink}\r\n\r\n");
        s.write_all(head.as_bytes()).await?;
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            let m = s.read(&mut buf[n..]).await?;
            if m == 0 || n + m == buf.len() {
                return Err(std::io::Error::other(format!(
                    "CONNECT answered: {}",
                    String::from_utf8_lossy(&buf[..n + m])
                )));
            }
            n += m;
        }
        if !buf.starts_with(b"HTTP/1.1 200") && !buf.starts_with(b"HTTP/1.0 200") {
            return Err(std::io::Error::other(format!(
                "CONNECT refused: {}",
                String::from_utf8_lossy(&buf[..n])
            )));
        }
    }
    s.write_all(request).await?;
    let mut n = 0;
    loop {
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 {
            break;
        }
        n += m;
        if n == buf.len() {
            break;
        }
    }
    if &buf[..n] != REPLY {
        return Err(std::io::Error::other(format!(
            "unexpected reply: {:?}",
            String::from_utf8_lossy(&buf[..n])
        )));
    }
    Ok(())
}

/// 32 clients on one thread, each looping over tunnels until `secs` pass or `max` are done.
fn tunnels(via: Via, sinks: &[SocketAddr], secs: f64, max: u64, proxy: Option<&Proc>) -> Tunnels {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let requests: Vec<Vec<u8>> = sinks
        .iter()
        .map(|s| format!("GET / HTTP/1.1\r\nHost: {s}{REQUEST_TAIL}").into_bytes())
        .collect();
    let requests = Arc::new(requests);
    let sinks: Arc<Vec<SocketAddr>> = Arc::new(sinks.to_vec());
    let cpu0 = proxy.map(Proc::cpu_seconds).unwrap_or(0.0);
    let bench0 = cpu_seconds(std::process::id());
    let ticks0 = machine_ticks();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..CLIENTS {
            let (done, errors, stop, first_error) = (
                done.clone(),
                errors.clone(),
                stop.clone(),
                first_error.clone(),
            );
            let (sinks, requests) = (sinks.clone(), requests.clone());
            tasks.push(tokio::spawn(async move {
                let source = loopback(c as u8);
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    k = k.wrapping_add(1);
                    let j = k % sinks.len();
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        one_tunnel(via, source, sinks[j], &requests[j]),
                    )
                    .await;
                    match r {
                        Ok(Ok(())) => {
                            if done.fetch_add(1, Ordering::Relaxed) + 1 >= max
                                || Instant::now() >= deadline
                            {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                        other => {
                            let e = match other {
                                Ok(Err(e)) => e.to_string(),
                                _ => "tunnel timed out after 10 s".to_string(),
                            };
                            first_error.lock().unwrap().get_or_insert(e);
                            if errors.fetch_add(1, Ordering::Relaxed) > 1000
                                || Instant::now() >= deadline
                            {
                                stop.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let first_error = first_error.lock().unwrap().take();
    Tunnels {
        done: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        secs,
        proxy_cpu: proxy.map(Proc::cpu_seconds).unwrap_or(0.0) - cpu0,
        bench_cpu: cpu_seconds(std::process::id()) - bench0,
        busy: busy_since(ticks0),
        first_error,
    }
}

// ---------------------------------------------------------------------------------------------
// Perimeter: control plane, rules, gateway

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        for attempt in 0..20 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key);
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let v = r.json::<Value>().await.unwrap_or(Value::Null);
                    if status == 429 || status == 503 {
                        tokio::time::sleep(Duration::from_millis(50 * (attempt + 1))).await;
                        continue;
                    }
                    return (status, v);
                }
                Err(e) if attempt < 19 => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
        panic!("{method} {path}: still refused after 20 attempts");
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (st, v) = self.call(method.clone(), path, body).await;
        assert!((200..300).contains(&st), "{method} {path}: {st} {v}");
        v
    }

    async fn rule_state(&self, cid: &str, rid: &str) -> String {
        let v = self
            .ok(
                reqwest::Method::GET,
                &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
                None,
            )
            .await;
        v["rule"]["state"].as_str().unwrap_or("").to_string()
    }

    async fn add_rule(&self, cid: &str, body: Value) -> String {
        let v = self
            .ok(
                reqwest::Method::POST,
                &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
                Some(body),
            )
            .await;
        v["Rule"]["id"].as_str().expect("rule id").to_string()
    }
}

struct Perimeter {
    _serve: Proc,
    gateway: Proc,
    proxy: SocketAddr,
    api: Api,
    cluster: String,
}

fn start_perimeter(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    sink_ports: &[u16],
    rules: u64,
) -> Perimeter {
    let data = dir.join("cp");
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--durability",
        "normal",
        "--data-dir",
    ])
    .arg(&data)
    .env_remove("PERIMETER_ADMIN_API_KEY")
    .env_remove("PERIMETER_DATABASE_URL")
    .env_remove("PERIMETER_LISTEN")
    .env_remove("PERIMETER_DATA_DIR")
    .env_remove("PERIMETER_LOG")
    // The gateway measured is the separate process; none runs inside serve.
    .arg("--no-embedded-gateways");
    let mut serve = Proc::spawn("perimeter serve", &mut cmd, dir.join("serve.log"));
    let base = serve.announced("control plane listening on ", 60);
    let key = std::fs::read_to_string(data.join("admin-api-key"))
        .expect("admin-api-key")
        .trim()
        .to_string();
    let api = Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(16)
            .build()
            .unwrap(),
        base,
        key,
    };
    use reqwest::Method;
    let (cluster, token) = rt.block_on(async {
        let c = api
            .ok(
                Method::POST,
                "/api/v1/clusters",
                Some(json!({"name": "gateway-bench", "provider": "AWS",
                    "spec": {"dedicated": {"region_nodes": {"us-east-1": 1}}}})),
            )
            .await;
        let cid = c["id"].as_str().expect("cluster id").to_string();
        api.ok(
            Method::POST,
            &format!("/api/v1/clusters/{cid}/networking/egress-rules/egress-traffic-policy"),
            Some(json!({"allow_all": false})),
        )
        .await;
        api.add_rule(
            &cid,
            json!({"name": "loopback-sinks", "type": "CIDR", "destination": "127.0.0.0/8",
                "ports": sink_ports, "description": "bench sinks"}),
        )
        .await;
        // The FQDN rules: exact names and wildcards, 16 requests at a time.
        let started = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(16));
        let api = &api;
        let mut futs = Vec::new();
        for i in 0..rules {
            let sem = sem.clone();
            let cid = cid.clone();
            futs.push(async move {
                let _p = sem.acquire().await.unwrap();
                let destination = if i % 2 == 0 {
                    format!("svc-{i}.team{}.bench.example.com", i % 97)
                } else {
                    format!("*.svc-{i}.team{}.bench.example.net", i % 89)
                };
                api.add_rule(
                    &cid,
                    json!({"name": format!("fqdn-{i:05}"), "type": "FQDN",
                        "destination": destination, "ports": [443],
                        "description": "bench rule"}),
                )
                .await;
            });
        }
        futures_join_all(futs).await;
        eprintln!(
            "bench: {rules} FQDN rules created in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let g = api
            .ok(
                Method::POST,
                &format!("/api/v1/clusters/{cid}/gateways"),
                Some(json!({"region": "us-east-1", "name": "bench-gw"})),
            )
            .await;
        (cid, g["token"].as_str().expect("gateway token").to_string())
    });

    let hosts = dir.join("gateway-hosts");
    std::fs::write(&hosts, "").unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["gateway", "--control-plane", &api.base, "--token", &token])
        .args(["--listen", "127.0.0.1:0", "--region", "us-east-1"])
        // One thread, as Squid runs one worker: the same CPU budget for both proxies.
        .args(["--worker-threads", "1"])
        .arg("--state-dir")
        .arg(dir.join("gw-state"))
        .arg("--hosts-file")
        .arg(&hosts)
        .env_remove("PERIMETER_CONTROL_PLANE")
        .env_remove("PERIMETER_GATEWAY_TOKEN")
        .env_remove("PERIMETER_LOG");
    let mut gateway = Proc::spawn("perimeter gateway", &mut cmd, dir.join("gateway.log"));
    let proxy: SocketAddr = gateway
        .announced("perimeter: gateway listening on ", 60)
        .parse()
        .expect("the gateway's address");
    Perimeter {
        _serve: serve,
        gateway,
        proxy,
        api,
        cluster,
    }
}

/// Await every future, polling them together (no extra dependency for join_all).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    std::future::poll_fn(move |cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// Rule creation until ACTIVE, `n` times; the durations.
fn rule_to_active(p: &Perimeter, rt: &tokio::runtime::Runtime, n: usize) -> Vec<Duration> {
    rt.block_on(async {
        let mut out = Vec::new();
        for k in 0..n {
            let started = Instant::now();
            let rid = p
                .api
                .add_rule(
                    &p.cluster,
                    json!({"name": format!("change-{k}"), "type": "FQDN",
                        "destination": format!("change-{k}.bench.example.org"), "ports": [443],
                        "description": "rule change"}),
                )
                .await;
            loop {
                let state = p.api.rule_state(&p.cluster, &rid).await;
                if state == "ACTIVE" {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "rule change-{k} is still {state} after 60 s"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            out.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        out
    })
}

// ---------------------------------------------------------------------------------------------
// Squid

fn squid_binary() -> Result<PathBuf, String> {
    let bin = PathBuf::from("/usr/sbin/squid");
    if bin.exists() {
        return Ok(bin);
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Err(
            "/usr/sbin/squid is missing and this is not root: apt-get install squid".into(),
        );
    }
    eprintln!("bench: installing squid (apt-get install -y squid) ...");
    let st = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "squid"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match st {
        Ok(s) if s.success() && bin.exists() => Ok(bin),
        _ => Err("apt-get install squid failed".into()),
    }
}

fn start_squid(dir: &Path, bin: &Path, sink_ports: &[u16]) -> Result<(Proc, SocketAddr), String> {
    use std::os::unix::fs::PermissionsExt;
    let sdir = dir.join("squid");
    std::fs::create_dir_all(&sdir).unwrap();
    // Squid drops root for its `proxy` user: it must reach and write its directory.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o777));
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut hosts = String::new();
    for i in 0..ADDRS {
        hosts.push_str(&format!("{} sink{}.bench.test\n", loopback(i), i + 1));
    }
    std::fs::write(sdir.join("hosts"), hosts).unwrap();
    let ports = sink_ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let d = sdir.display();
    // Like the gateway's decision log, one line per connection; BENCH_SQUID_ACCESS_LOG=0 turns
    // it off.
    let access_log = if std::env::var("BENCH_SQUID_ACCESS_LOG").as_deref() == Ok("0") {
        "none".to_string()
    } else {
        format!("stdio:{}/access.log", sdir.display())
    };
    let conf = format!(
        "http_port 127.0.0.1:{port}
acl sink_ports port {ports}
acl CONNECT method CONNECT
http_access deny CONNECT !sink_ports
http_access allow all
cache deny all
cache_mem 8 MB
workers 1
hosts_file {d}/hosts
dns_nameservers 127.0.0.1
ipcache_size 64
fqdncache_size 64
access_log {access_log}
cache_log {d}/cache.log
cache_store_log none
pid_filename {d}/squid.pid
coredump_dir {d}
shutdown_lifetime 0 seconds
client_db off
forwarded_for delete
via off
visible_hostname perimeter-bench
"
    );
    let conf_path = sdir.join("squid.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-N").arg("-f").arg(&conf_path);
    let squid = Proc::spawn("squid", &mut cmd, sdir.join("stderr.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            let cache = std::fs::read_to_string(sdir.join("cache.log")).unwrap_or_default();
            return Err(format!(
                "squid did not listen on {addr}; stderr:\n{}\ncache.log:\n{cache}",
                squid.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((squid, addr))
}

// ---------------------------------------------------------------------------------------------
// Report

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[derive(Default)]
struct Figures {
    bulk_mibs: Vec<f64>,
    cpu_per_gib: Vec<f64>,
    bench_cpu_per_gib: Vec<f64>,
    bulk_busy: Vec<f64>,
    tunnels_per_s: Vec<f64>,
    cpu_us_per_tunnel: Vec<f64>,
    bench_us_per_tunnel: Vec<f64>,
    busy: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

struct Setting {
    cores: usize,
    rules: u64,
    bulk_mib: u64,
    tunnel_secs: f64,
    rounds: usize,
}

/// Median over rounds of `a[r] / b[r]` (each ratio from figures measured side by side).
fn ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

fn report(figs: &[(&str, &Figures)], set: Setting, changes: &[Duration], change_ms: f64) {
    let none = Figures::default();
    let get = |name: &str| {
        figs.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
            .unwrap_or(&none)
    };
    let (direct, perimeter, sq) = (get("direct"), get("perimeter"), get("squid"));
    let have_squid = figs.iter().any(|(n, _)| *n == "squid");
    let have_bulk = !direct.bulk_mibs.is_empty();
    let have_tunnels = !direct.tunnels_per_s.is_empty();
    let cell = |v: &[f64], prec: usize| {
        if v.is_empty() {
            format!("{:>12}", "-")
        } else {
            format!("{:>12.*}", prec, median(v.to_vec()))
        }
    };
    let row =
        |label: &str, prec: usize, pick: &dyn Fn(&Figures) -> &Vec<f64>, proxies_only: bool| {
            println!(
                "{label:<34}{}{}{}",
                if proxies_only {
                    format!("{:>12}", "-")
                } else {
                    cell(pick(direct), prec)
                },
                cell(pick(perimeter), prec),
                cell(pick(sq), prec)
            );
        };
    println!();
    println!(
        "gateway bench: {} cores, {} FQDN rules + 1 CIDR rule (DEFAULT_DENY), gateway and Squid \
         on one worker each, bulk {} MiB upload per run, tunnels: {CLIENTS} clients x {} s; \
         medians of {} rounds",
        set.cores, set.rules, set.bulk_mib, set.tunnel_secs, set.rounds
    );
    // The host's TCP congestion control: with `bbr` (paced in TCP without the fq qdisc), the
    // gateway relays bulk towards a loopback peer with `cubic` instead (see relay.rs).
    let cc = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    println!("host TCP congestion control: {cc}");
    println!(
        "{:<34}{:>12}{:>12}{:>12}",
        "", "direct", "perimeter", "squid"
    );
    row("bulk MiB/s (one tunnel)", 0, &|f| &f.bulk_mibs, false);
    row("proxy CPU s per GiB", 3, &|f| &f.cpu_per_gib, true);
    row(
        "client+sink CPU s per GiB",
        3,
        &|f| &f.bench_cpu_per_gib,
        false,
    );
    row("machine busy % (bulk)", 0, &|f| &f.bulk_busy, false);
    row("tunnels/s (32 clients)", 0, &|f| &f.tunnels_per_s, false);
    row(
        "proxy CPU us per tunnel",
        1,
        &|f| &f.cpu_us_per_tunnel,
        true,
    );
    row(
        "client+sinks CPU us per tunnel",
        1,
        &|f| &f.bench_us_per_tunnel,
        false,
    );
    row("machine busy % (tunnels)", 0, &|f| &f.busy, false);
    println!(
        "{:<34}{:>12}{:>12}{:>12}",
        "tunnel errors",
        direct.errors,
        perimeter.errors,
        if have_squid {
            sq.errors.to_string()
        } else {
            "-".into()
        }
    );
    println!(
        "{:<34}{:>12.0} ms median (runs: {})",
        "rule change to ACTIVE",
        change_ms,
        changes
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, f) in figs {
        if let Some(e) = &f.first_error {
            println!("  first {name} error: {e}");
        }
    }
    let list = |v: &Vec<f64>, prec: usize| {
        v.iter()
            .map(|x| format!("{x:.prec$}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("per round:");
    for (name, f) in figs {
        println!(
            "  {name:<10} MiB/s [{}]  CPU s/GiB [{}]  tunnels/s [{}]  CPU us/tunnel [{}]",
            list(&f.bulk_mibs, 0),
            list(&f.cpu_per_gib, 3),
            list(&f.tunnels_per_s, 0),
            list(&f.cpu_us_per_tunnel, 1)
        );
    }

    // Ratios: per round, of figures measured side by side, then the median.
    println!();
    println!("ratios (median of per-round ratios):");
    let bulk_ratio = ratio(&perimeter.bulk_mibs, &direct.bulk_mibs);
    if have_bulk {
        println!("  perimeter bulk / direct            {bulk_ratio:.2}x");
    }
    let mut squid_ratios = None;
    if have_squid {
        let gib = ratio(&perimeter.cpu_per_gib, &sq.cpu_per_gib);
        let tps = ratio(&perimeter.tunnels_per_s, &sq.tunnels_per_s);
        let cpu = ratio(&perimeter.cpu_us_per_tunnel, &sq.cpu_us_per_tunnel);
        if have_bulk {
            println!(
                "  squid bulk / direct                {:.2}x",
                ratio(&sq.bulk_mibs, &direct.bulk_mibs)
            );
            println!("  perimeter / squid CPU per GiB      {gib:.2}x");
        }
        if have_tunnels {
            println!("  perimeter / squid tunnels/s        {tps:.2}x");
            println!("  perimeter / squid CPU per tunnel   {cpu:.2}x");
        }
        squid_ratios = Some((gib, tps, cpu));
    }
    if have_tunnels {
        println!(
            "  perimeter / direct tunnels/s       {:.2}x",
            ratio(&perimeter.tunnels_per_s, &direct.tunnels_per_s)
        );
    }
    println!();
    println!("targets:");
    if have_bulk {
        check(
            "bulk >= 0.7x direct",
            bulk_ratio >= 0.7,
            format!("{bulk_ratio:.2}x"),
        );
    }
    match squid_ratios {
        Some((gib, tps, cpu)) => {
            if have_bulk {
                check(
                    "CPU per GiB <= 0.5x squid",
                    gib <= 0.5,
                    format!("{gib:.2}x"),
                );
            }
            if have_tunnels {
                check("tunnels/s >= 2x squid", tps >= 2.0, format!("{tps:.2}x"));
                check(
                    "CPU per tunnel <= 0.5x squid",
                    cpu <= 0.5,
                    format!("{cpu:.2}x"),
                );
            }
        }
        None => println!("  squid targets: SKIPPED (no squid)"),
    }
    check(
        "rule change to ACTIVE <= 1 s",
        change_ms <= 1000.0,
        format!("{change_ms:.0} ms"),
    );
}

fn check(name: &str, ok: bool, detail: String) {
    println!(
        "  {:<52} {}  ({detail})",
        name,
        if ok { "PASS" } else { "MISS" }
    );
}

fn main() {
    // `cargo bench` passes --bench; a test harness run passes other flags. Run only as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bulk_bytes = env_u64("BENCH_BULK_MIB", 4096) * 1024 * 1024;
    let tunnel_secs = env_u64("BENCH_TUNNEL_SECS", 3) as f64;
    let rounds = env_u64("BENCH_ROUNDS", 5).max(1) as usize;
    let rules = env_u64("BENCH_RULES", 10_000);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);

    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    let sinks = Sinks {
        bulk: bulk_sink(),
        tunnel: tunnel_sinks(),
    };
    let mut sink_ports: Vec<u16> = sinks.tunnel.iter().map(|a| a.port()).collect();
    sink_ports.push(sinks.bulk.port());
    sink_ports.sort_unstable();
    sink_ports.dedup();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = Instant::now();
    let p = start_perimeter(dir, &rt, &sink_ports, rules);
    // The gateway holds the policy once a tunnel to a sink goes through (60 s at most).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = rt.block_on(one_tunnel(
            Via::Proxy(p.proxy),
            loopback(0),
            sinks.tunnel[0],
            format!("GET / HTTP/1.1\r\nHost: {}{REQUEST_TAIL}", sinks.tunnel[0]).as_bytes(),
        ));
        match r {
            Ok(()) => break,
            Err(e) if Instant::now() > deadline => panic!(
                "no tunnel through the gateway after 60 s: {e}; gateway log:\n{}",
                p.gateway.log_text()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    eprintln!(
        "bench: perimeter ready with {rules} FQDN rules + 1 CIDR rule in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let squid = squid_binary().and_then(|bin| start_squid(dir, &bin, &sink_ports));
    if let Err(e) = &squid {
        println!("squid: SKIPPED: {e}");
    }

    let mut figs: Vec<(&str, Via, Option<&Proc>, Figures)> = vec![
        ("direct", Via::Direct, None, Figures::default()),
        (
            "perimeter",
            Via::Proxy(p.proxy),
            Some(&p.gateway),
            Figures::default(),
        ),
    ];
    if let Ok((proc_, addr)) = &squid {
        figs.push(("squid", Via::Proxy(*addr), Some(proc_), Figures::default()));
    }
    let max_tunnels = 500_000;
    for round in 0..rounds {
        eprint!("bench: round {}/{rounds}:", round + 1);
        // The order turns each round, so no one always runs first or last.
        let n = figs.len();
        let order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
        if bulk_bytes > 0 {
            for &i in &order {
                let (name, via, proc_, fig) = &mut figs[i];
                eprint!(" bulk {name}");
                let b = bulk(*via, sinks.bulk, bulk_bytes, *proc_);
                let gib = b.bytes as f64 / (1u64 << 30) as f64;
                fig.bulk_mibs
                    .push(b.bytes as f64 / (1 << 20) as f64 / b.secs);
                fig.cpu_per_gib.push(b.proxy_cpu / gib);
                fig.bench_cpu_per_gib.push(b.bench_cpu / gib);
                fig.bulk_busy.push(b.busy * 100.0);
            }
        }
        for &i in order.iter().filter(|_| tunnel_secs > 0.0) {
            let (name, via, proc_, fig) = &mut figs[i];
            eprint!(" tunnels {name}");
            // Warm up, then measure.
            let _ = tunnels(*via, &sinks.tunnel, 0.3, max_tunnels, *proc_);
            let t = tunnels(*via, &sinks.tunnel, tunnel_secs, max_tunnels, *proc_);
            let done = t.done.max(1) as f64;
            fig.tunnels_per_s.push(t.done as f64 / t.secs);
            fig.cpu_us_per_tunnel.push(t.proxy_cpu * 1e6 / done);
            fig.bench_us_per_tunnel.push(t.bench_cpu * 1e6 / done);
            fig.busy.push(t.busy * 100.0);
            fig.errors += t.errors;
            if fig.first_error.is_none() {
                fig.first_error = t.first_error;
            }
        }
        eprintln!();
    }
    let changes = rule_to_active(&p, &rt, 5);
    let change_ms = median(changes.iter().map(|d| d.as_secs_f64() * 1e3).collect());
    report(
        &figs
            .iter()
            .map(|(name, _, _, f)| (*name, f))
            .collect::<Vec<_>>(),
        Setting {
            cores,
            rules,
            bulk_mib: bulk_bytes >> 20,
            tunnel_secs,
            rounds,
        },
        &changes,
        change_ms,
    );
    drop(figs);
    drop(squid);
    drop(p);
    drop(rt);
}
