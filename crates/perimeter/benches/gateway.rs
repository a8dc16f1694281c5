//! The egress gateway against a direct connection and against Squid, in one run, on loopback.
//!
//! **Setup: the path workloads take.** The gateway is the real binary (`perimeter serve` and
//! `perimeter gateway`, separate processes) under DEFAULT_DENY with `BENCH_RULES` FQDN rules
//! (default 100,000) loaded through the API. One of them, `*.bench.test` on the sinks' ports,
//! names the sinks; the others are exact names and wildcards elsewhere. The sinks stay on
//! loopback, a special address the guard refuses unless a CIDR rule names it, so one CIDR rule
//! names 127.0.0.0/8 on the sinks' ports. The API has no bulk call: the rules go in as single
//! POSTs, 32 at a time, and the bench prints how long that took. Names resolve through one hosts
//! file (`sink-N.bench.test` -> 127.0.0.N): the gateway's `--hosts-file` and Squid's
//! `hosts_file`; neither knows a DNS server but 127.0.0.1.
//!
//! **Side by side, same conditions.** One worker each (`--worker-threads 1`, Squid `workers 1`),
//! both logging as deployed (the gateway's decision log at info level into its log file, Squid's
//! access log into its file, each written by the proxy itself), 32 concurrent clients. Squid
//! (Debian package; installed with apt-get when missing and this runs as root) is a plain CONNECT
//! proxy with no cache and no reverse lookups. Client, sinks and proxy share the machine's cores,
//! the same way for all three. Each round measures direct, gateway and Squid one after the other
//! (in a turning order), and every ratio is the median of the per-round ratios, which keeps a
//! noisy neighbour from deciding a target.
//!
//! - **Tunnels**, on two paths: 32 clients, each looping on CONNECT, first bytes, the sink's
//!   answer, close; tunnels per second and the proxy's CPU µs per tunnel (`/proc/<pid>/stat`
//!   utime + stime). Clients bind 127.0.0.1-8 and the sinks listen on 127.0.0.1-8, so no address
//!   pair runs out of ports.
//!   - *IP path*: `CONNECT 127.0.0.N:PORT` (the CIDR rule admits it), one small HTTP request
//!     (`connection: close`) and reply. The gateway checks HTTP inside a tunnel request by
//!     request, so it forwards this one as a request of its own.
//!   - *Name path*: `CONNECT sink-N.bench.test:PORT`, resolved by the proxy, then a TLS 1.3
//!     ClientHello whose SNI is that name (built once per name, laid out as OpenSSL's) and a
//!     7-byte TLS alert back from the sink. The gateway checks the SNI against the name; the
//!     bench makes sure a mismatch closes the tunnel before it measures.
//! - **Bulk**: MiB/s through one tunnel (the client uploads, the sink discards) and the proxy's
//!   CPU per GiB, with one congestion control for all three: the gateway alone switches its
//!   sockets sending to a loopback peer from `bbr` to `cubic` (`unpaced_on_loopback` in the
//!   relay), so on a `bbr` host the bench sets `net.ipv4.tcp_congestion_control` to `cubic` for
//!   these runs (and puts the host's back after each, on exit, on a panic and on SIGINT/SIGTERM).
//!   Every socket then runs `cubic` and the tweak has nothing to do. The same runs under the
//!   host's own setting show the tweak's effect, printed on a line of its own and never in the
//!   ratio.
//! - **Idle tunnels**: `BENCH_IDLE_TUNNELS` (default 10,000) tunnels held open through the
//!   gateway (name path: CONNECT, ClientHello, the sink's answer, then nothing), and the same
//!   through Squid; memory per idle tunnel is the growth of the proxy's resident set
//!   (`/proc/<pid>/status` VmRSS) over the tunnels held, read once the count settled (the proxy
//!   holds two more descriptors per tunnel, the sinks one) and the figure holds still. A held
//!   tunnel takes four descriptors: two in the proxy, one client here, one at the idle sinks,
//!   which run as a process of their own (this binary with `--idle-sinks`). The bench raises
//!   RLIMIT_NOFILE (the proxies inherit it) as far as the hard limit lets it (raising that needs
//!   CAP_SYS_RESOURCE), and the gateway's `--max-connections` above the count; where a process
//!   has no room for the count, it holds as many as fit and says so.
//! - **Rule change to ACTIVE**: a rule created through the API until it reads ACTIVE (every live
//!   gateway applied it), with all the rules above loaded; median of five.
//!
//! Every process started here is killed on exit; traffic stays on loopback; every wait is
//! bounded.
//!
//! `cargo bench -p perimeter --bench gateway` (as root: Squid's install, the congestion control,
//! descriptors). Environment: `BENCH_ROUNDS` (default 5), `BENCH_TUNNEL_SECS` (default 3; 0
//! skips tunnels), `BENCH_BULK_MIB` (default 4096; 0 skips bulk), `BENCH_RULES` (default
//! 100000), `BENCH_IDLE_TUNNELS` (default 10000; 0 skips), `BENCH_SQUID_ACCESS_LOG=0` (Squid
//! without its access log).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const CLIENTS: usize = 32;
const ADDRS: u8 = 8;
/// How many API requests create rules at once.
const RULE_CONCURRENCY: usize = 32;
/// How many idle tunnels are being opened at once.
const IDLE_CONCURRENCY: usize = 64;
/// The request closes its connection: one request per tunnel. (The gateway forwards HTTP inside
/// a tunnel request by request and would keep the client's connection open otherwise.)
const REQUEST_TAIL: &str = "\r\nuser-agent: bench\r\nconnection: close\r\n\r\n";
const REPLY: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
/// The sinks' answer to a ClientHello: a TLS alert record (fatal, handshake_failure).
const TLS_ANSWER: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28];
/// The sinks' names are `sink-N.bench.test`; one FQDN rule names them all.
const SINK_DOMAIN: &str = "bench.test";
const CC_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_congestion_control";
/// The congestion control the gateway's tweak uses towards loopback peers, and the bench's
/// common one on a `bbr` host.
const SAME_CC: &str = "cubic";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loopback(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % ADDRS))
}

fn sink_name(i: u8) -> String {
    format!("sink-{}.{SINK_DOMAIN}", 1 + (i % ADDRS))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

// ---------------------------------------------------------------------------------------------
// Cleanup: what the bench changed on the host, undone on exit, on a panic and on a signal

/// The child processes alive and the host's congestion control to put back, for the signal
/// handler (drops do the same on a normal exit or a panic).
static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup {
    pids: Vec::new(),
    cc: None,
    dir: None,
});

struct Cleanup {
    pids: Vec<u32>,
    cc: Option<String>,
    /// The temporary directory (logs, the control plane's data, Squid's files).
    dir: Option<PathBuf>,
}

/// On SIGINT or SIGTERM: kill every child, restore the congestion control, remove the temporary
/// directory, exit.
fn cleanup_on_signal(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let c = CLEANUP.lock().unwrap_or_else(|e| e.into_inner());
        for &pid in &c.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(cc) = &c.cc {
            let _ = std::fs::write(CC_SYSCTL, cc);
        }
        if let Some(dir) = &c.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        eprintln!("bench: interrupted; children killed, congestion control restored");
        std::process::exit(130);
    });
}

/// The host's congestion control and the ones it offers.
fn host_cc() -> (String, Vec<String>) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let cc = read(CC_SYSCTL);
    let available = read("/proc/sys/net/ipv4/tcp_available_congestion_control")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (if cc.is_empty() { "unknown".into() } else { cc }, available)
}

/// The host's congestion control set to another for the life of this value.
struct CcOverride {
    original: String,
}

impl CcOverride {
    fn set(cc: &str) -> std::io::Result<CcOverride> {
        let (original, _) = host_cc();
        CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).cc = Some(original.clone());
        if let Err(e) = std::fs::write(CC_SYSCTL, cc) {
            CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).cc = None;
            return Err(e);
        }
        Ok(CcOverride { original })
    }
}

impl Drop for CcOverride {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(CC_SYSCTL, &self.original) {
            eprintln!(
                "bench: could not restore net.ipv4.tcp_congestion_control={}: {e}",
                self.original
            );
        }
        CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).cc = None;
    }
}

/// Raise RLIMIT_NOFILE (children inherit it) to hold `idle` tunnels; returns the soft limit.
fn raise_nofile(idle: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // The proxy holds two descriptors per idle tunnel (client and upstream), this process and
    // the idle sinks one each, besides their own.
    let want = (2 * idle + 8192).max(65_536);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if soft >= want {
        return soft;
    }
    // Raising the hard limit needs root (CAP_SYS_RESOURCE); else the soft one goes up to it.
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_ok() {
        return want;
    }
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s)
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
        CLEANUP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .push(child.id());
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
        let pid = self.child.id();
        CLEANUP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .retain(|&p| p != pid);
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

/// Resident set of a process, in KiB (VmRSS of /proc/<pid>/status).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The resident set once it holds still: two readings 250 ms apart within 64 KiB (10 s at most).
async fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid);
        if now.abs_diff(last) <= 64 {
            return now;
        }
        last = now;
    }
    last
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---------------------------------------------------------------------------------------------
// First bytes: a TLS ClientHello

/// A TLS 1.3 ClientHello for `sni`, one record, laid out as OpenSSL 3.0's `s_client
/// -servername <sni> -alpn h2,http/1.1` sends it (the capture
/// `crates/perimeter-gateway/src/tls/testdata/openssl_tls13_sni_alpn.bin`): the same cipher
/// suites and extensions in the same order, an x25519 key share. Random, session id and key
/// share are fixed bytes: nobody completes this handshake.
fn client_hello(sni: &str) -> Vec<u8> {
    fn u16be(n: usize) -> [u8; 2] {
        (n as u16).to_be_bytes()
    }
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&u16be(body.len()));
        out.extend_from_slice(body);
    }
    let filler = |seed: u8, n: usize| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(73).wrapping_add(seed))
            .collect()
    };
    let name = sni.as_bytes();
    let mut exts = Vec::new();
    // server_name: list length, host_name (0), name length, name.
    let mut sn = Vec::new();
    sn.extend_from_slice(&u16be(name.len() + 3));
    sn.push(0);
    sn.extend_from_slice(&u16be(name.len()));
    sn.extend_from_slice(name);
    ext(&mut exts, 0x0000, &sn);
    ext(&mut exts, 0x000b, &[3, 0, 1, 2]); // ec_point_formats
    ext(
        &mut exts,
        0x000a, // supported_groups
        &[
            0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00,
            0x01, 0x01, 0x01, 0x02, 0x01, 0x03, 0x01, 0x04,
        ],
    );
    ext(&mut exts, 0x0023, &[]); // session_ticket
    ext(&mut exts, 0x0010, b"\x00\x0c\x02h2\x08http/1.1"); // ALPN
    ext(&mut exts, 0x0016, &[]); // encrypt_then_mac
    ext(&mut exts, 0x0017, &[]); // extended_master_secret
    ext(
        &mut exts,
        0x000d, // signature_algorithms
        &[
            0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09,
            0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01,
            0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
        ],
    );
    ext(
        &mut exts,
        0x002b, // supported_versions: TLS 1.3, 1.2, 1.1, 1.0
        &[0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01],
    );
    ext(&mut exts, 0x002d, &[0x01, 0x01]); // psk_key_exchange_modes: psk_dhe_ke
    let mut ks = vec![0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]; // key_share: x25519, 32 bytes
    ks.extend(filler(0x5a, 32));
    ext(&mut exts, 0x0033, &ks);

    let suites: &[u16] = &[
        0x1302, 0x1303, 0x1301, 0xc02c, 0xc030, 0x009f, 0xcca9, 0xcca8, 0xccaa, 0xc02b, 0xc02f,
        0x009e, 0xc024, 0xc028, 0x006b, 0xc023, 0xc027, 0x0067, 0xc00a, 0xc014, 0x0039, 0xc009,
        0xc013, 0x0033, 0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x00ff,
    ];
    let mut body = vec![0x03, 0x03]; // legacy_version TLS 1.2
    body.extend(filler(0x11, 32)); // random
    body.push(32);
    body.extend(filler(0x97, 32)); // legacy_session_id
    body.extend_from_slice(&u16be(suites.len() * 2));
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend_from_slice(&u16be(exts.len()));
    body.extend(exts);

    let mut hs = vec![0x01]; // client_hello
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01]; // handshake, TLS 1.0 record version
    record.extend_from_slice(&u16be(hs.len()));
    record.extend(hs);
    record
}

// ---------------------------------------------------------------------------------------------
// Sinks

/// The bulk sink and the tunnel sinks, in this process.
struct Sinks {
    bulk: SocketAddr,
    /// One tunnel sink per loopback address 127.0.0.1-8: answers and closes.
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

/// The bulk sink, and tunnel sinks on 127.0.0.1-8 served by one thread.
fn sinks() -> Sinks {
    let listeners: Vec<TcpListener> = (0..ADDRS)
        .map(|i| TcpListener::bind((loopback(i), 0)).expect("binding a tunnel sink"))
        .collect();
    let sinks = Sinks {
        bulk: bulk_sink(),
        tunnel: listeners.iter().map(|l| l.local_addr().unwrap()).collect(),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve_sinks(listeners, false));
    });
    sinks
}

/// Accept on every listener and serve each connection ([`serve_one`]).
async fn serve_sinks(listeners: Vec<TcpListener>, hold: bool) {
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
                tokio::spawn(serve_one(s, hold));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Read the client's first bytes (a TLS record, or an HTTP request head) and answer them: the
/// TLS alert or the HTTP reply. Then close; or, for an idle sink (`hold`), wait for the peer to
/// close first.
async fn serve_one(mut s: tokio::net::TcpStream, hold: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let answer = loop {
            match s.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => return false,
                Ok(m) => n += m,
            }
            if buf[0] == 0x16 {
                if n >= 5 && n >= 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize {
                    break TLS_ANSWER;
                }
            } else if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break REPLY;
            }
            if n == buf.len() {
                return false;
            }
        };
        s.write_all(answer).await.is_ok()
    })
    .await;
    if hold && answered == Ok(true) {
        // Until the peer closes; bounded, as every wait here.
        let _ = tokio::time::timeout(Duration::from_secs(600), async {
            while let Ok(m) = s.read(&mut buf[..1]).await {
                if m == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// The idle sinks: this bench's binary again (`--idle-sinks`), as a process of its own, so that
/// neither it nor this one needs more descriptors than a process may have. One listener per
/// loopback address 127.0.0.1-8; each answers the first bytes and holds the connection until
/// the peer closes it.
struct IdleSinks {
    proc_: Proc,
    addrs: Vec<SocketAddr>,
}

const IDLE_SINKS_MARKER: &str = "idle sinks listening on ";

fn start_idle_sinks(dir: &Path) -> IdleSinks {
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut proc_ = Proc::spawn(
        "idle sinks",
        Command::new(exe).arg("--idle-sinks"),
        dir.join("idle-sinks.log"),
    );
    let addrs = proc_
        .announced(IDLE_SINKS_MARKER, 30)
        .split(',')
        .map(|a| a.parse().expect("an idle sink's address"))
        .collect();
    IdleSinks { proc_, addrs }
}

/// `--idle-sinks`: serve the idle sinks until killed, or until the bench that started this is
/// gone (checked every second; an hour at most).
fn idle_sinks_main() {
    let listeners: Vec<TcpListener> = (0..ADDRS)
        .map(|i| TcpListener::bind((loopback(i), 0)).expect("binding an idle sink"))
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    eprintln!("{IDLE_SINKS_MARKER}{}", addrs.join(","));
    let parent = std::os::unix::process::parent_id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(serve_sinks(listeners, true));
        for _ in 0..3600 {
            if std::os::unix::process::parent_id() != parent {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Clients

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Proxy(SocketAddr),
}

/// Where a tunnel goes and what it says there.
struct Dest {
    /// The sink's address (dialled directly; for a proxy, named by `authority`).
    addr: SocketAddr,
    /// The CONNECT target: `127.0.0.N:PORT` or `sink-N.bench.test:PORT`.
    authority: String,
    /// The client's first bytes in the tunnel.
    first: Vec<u8>,
    /// What the sink answers them.
    answer: &'static [u8],
}

impl Dest {
    /// Whether `got` is the sink's answer. An HTTP reply may come back with other headers (the
    /// gateway forwards it request by request: hop-by-hop headers go, a date comes); its status
    /// and body are the sink's.
    fn answered(&self, got: &[u8]) -> Result<(), std::io::Error> {
        let ok = if self.answer == REPLY {
            got.starts_with(b"HTTP/1.1 200 ") && got.ends_with(b"\r\n\r\nok")
        } else {
            got == self.answer
        };
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "unexpected answer: {:?}",
                String::from_utf8_lossy(got)
            )))
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PathKind {
    /// CONNECT to an IP literal, an HTTP request.
    Ip,
    /// CONNECT to a name, a ClientHello with that name.
    Name,
}

impl PathKind {
    fn label(self) -> &'static str {
        match self {
            PathKind::Ip => "IP path",
            PathKind::Name => "name path",
        }
    }
}

fn dests(path: PathKind, sinks: &[SocketAddr]) -> Vec<Dest> {
    sinks
        .iter()
        .enumerate()
        .map(|(i, &addr)| match path {
            PathKind::Ip => Dest {
                addr,
                authority: addr.to_string(),
                first: format!("GET / HTTP/1.1\r\nHost: {addr}{REQUEST_TAIL}").into_bytes(),
                answer: REPLY,
            },
            PathKind::Name => {
                let name = sink_name(i as u8);
                Dest {
                    addr,
                    authority: format!("{name}:{}", addr.port()),
                    first: client_hello(&name),
                    answer: TLS_ANSWER,
                }
            }
        })
        .collect()
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

/// A connection from `source` to `dest`, through `via` (CONNECT answered 200).
async fn open(via: Via, source: Ipv4Addr, dest: &Dest) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4()?;
    // The port is picked at connect time, by the 4-tuple: cheap, and no source address runs
    // out of ports for binding.
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::IpBindAddressNoPort, &true)?;
    sock.bind(SocketAddr::new(source.into(), 0))?;
    let mut s = sock
        .connect(match via {
            Via::Direct => dest.addr,
            Via::Proxy(p) => p,
        })
        .await?;
    s.set_nodelay(true)?;
    if let Via::Proxy(_) = via {
        let a = &dest.authority;
        s.write_all(format!("CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = [0u8; 1024];
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            let m = s.read(&mut buf[n..]).await?;
            if m == 0 || n + m == buf.len() {
                return Err(std::io::Error::other(format!(
                    "CONNECT answered: {:?}",
                    String::from_utf8_lossy(&buf[..n + m])
                )));
            }
            n += m;
        }
        if !buf.starts_with(b"HTTP/1.1 200") && !buf.starts_with(b"HTTP/1.0 200") {
            return Err(std::io::Error::other(format!(
                "CONNECT refused: {:?}",
                String::from_utf8_lossy(&buf[..n])
            )));
        }
    }
    Ok(s)
}

/// Read until the peer closes (at most 1 KiB).
async fn read_to_close(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    loop {
        let m = s.read(&mut buf[n..]).await?;
        if m == 0 || n + m == buf.len() {
            buf.truncate(n + m);
            return Ok(buf);
        }
        n += m;
    }
}

/// One tunnel: (CONNECT,) first bytes, the sink's answer, close.
async fn one_tunnel(via: Via, source: Ipv4Addr, dest: &Dest) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut s = open(via, source, dest).await?;
    s.write_all(&dest.first).await?;
    let got = read_to_close(&mut s).await?;
    dest.answered(&got)
}

/// One tunnel held open: (CONNECT,) first bytes, the sink's answer; then the stream.
async fn idle_tunnel(
    via: Via,
    source: Ipv4Addr,
    dest: &Dest,
) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = open(via, source, dest).await?;
    s.write_all(&dest.first).await?;
    let mut got = vec![0u8; dest.answer.len()];
    s.read_exact(&mut got).await?;
    dest.answered(&got)?;
    Ok(s)
}

/// 32 clients on one thread, each looping over tunnels until `secs` pass or `max` are done.
fn tunnels(via: Via, dests: &Arc<Vec<Dest>>, secs: f64, max: u64, proxy: Option<&Proc>) -> Tunnels {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(Mutex::new(None::<String>));
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
            let dests = dests.clone();
            tasks.push(tokio::spawn(async move {
                let source = loopback(c as u8);
                let mut k = c;
                while !stop.load(Ordering::Relaxed) {
                    k = k.wrapping_add(1);
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        one_tunnel(via, source, &dests[k % dests.len()]),
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

/// Idle tunnels held through a proxy and what they cost it in memory.
struct Idle {
    /// `BENCH_IDLE_TUNNELS`.
    requested: u64,
    /// What the descriptor limit left room for (at most `requested`).
    wanted: u64,
    held: u64,
    open_secs: f64,
    rss_before_kib: u64,
    rss_after_kib: u64,
    /// Descriptors of the proxy before and while the tunnels were held.
    fds_before: u64,
    fds_held: u64,
    first_error: Option<String>,
}

impl Idle {
    fn kib_per_tunnel(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.held.max(1) as f64
    }
}

/// Open descriptors of a process (entries of /proc/<pid>/fd).
fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Open `requested` tunnels (fewer if a process's descriptor limit `nofile` leaves no room)
/// through `proxy` to the idle sinks, 64 being opened at a time and 120 s at most, each up to
/// its sink's answer. The proxy's resident set is read before, and again once the count
/// settled (the proxy holds two more descriptors per tunnel, the sinks one) and the figure
/// holds still; then every tunnel is closed and the proxy and the sinks are seen to let them
/// go (bounded).
fn idle_tunnels(
    via: Via,
    dests: &Arc<Vec<Dest>>,
    requested: u64,
    proxy: &Proc,
    sinks: &Proc,
    nofile: u64,
) -> Idle {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pid, spid) = (proxy.pid(), sinks.pid());
    let (fds0, sfds0) = (fds(pid), fds(spid));
    // Room in each process, with a margin for its own descriptors (and Squid's reserve).
    let room = |used: u64, per_tunnel: u64| nofile.saturating_sub(used + 128) / per_tunnel;
    let n = requested
        .min(room(fds0, 2))
        .min(room(sfds0, 1))
        .min(room(fds(std::process::id()), 1));
    rt.block_on(async {
        let rss_before_kib = settled_rss_kib(pid).await;
        let next = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(Mutex::new(None::<String>));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        let mut tasks = Vec::new();
        for _ in 0..IDLE_CONCURRENCY {
            let (next, errors, first_error, dests) = (
                next.clone(),
                errors.clone(),
                first_error.clone(),
                dests.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n || Instant::now() > deadline || errors.load(Ordering::Relaxed) > 100 {
                        return mine;
                    }
                    let i = k as usize;
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        idle_tunnel(via, loopback(i as u8), &dests[i % dests.len()]),
                    )
                    .await;
                    match r {
                        Ok(Ok(s)) => mine.push(s),
                        other => {
                            let e = match other {
                                Ok(Err(e)) => e.to_string(),
                                _ => "idle tunnel not open after 10 s".to_string(),
                            };
                            first_error.lock().unwrap().get_or_insert(e);
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let mut streams = Vec::new();
        for t in tasks {
            streams.extend(t.await.unwrap_or_default());
        }
        let open_secs = started.elapsed().as_secs_f64();
        let count = streams.len() as u64;
        // The count settles: every tunnel held has its two descriptors in the proxy and its
        // one at the sinks (10 s at most).
        let settle = Instant::now() + Duration::from_secs(10);
        while (fds(pid) < fds0 + 2 * count || fds(spid) < sfds0 + count) && Instant::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fds_held = fds(pid);
        let rss_after_kib = settled_rss_kib(pid).await;
        drop(streams);
        let gone = Instant::now() + Duration::from_secs(30);
        while (fds(pid) > fds0 + 16 || fds(spid) > sfds0) && Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first_error = first_error.lock().unwrap().take();
        Idle {
            requested,
            wanted: n,
            held: count,
            open_secs,
            rss_before_kib,
            rss_after_kib,
            fds_before: fds0,
            fds_held,
            first_error,
        }
    })
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
    /// Time to create the FQDN rules through the API.
    rules_load: Duration,
}

fn start_perimeter(
    dir: &Path,
    rt: &tokio::runtime::Runtime,
    sink_ports: &[u16],
    rules: u64,
    hosts: &Path,
    max_connections: u64,
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
            .pool_max_idle_per_host(RULE_CONCURRENCY)
            .build()
            .unwrap(),
        base,
        key,
    };
    use reqwest::Method;
    let (cluster, token, rules_load) = rt.block_on(async {
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
        // Loopback is special: only a CIDR rule naming it lets the gateway dial the sinks.
        api.add_rule(
            &cid,
            json!({"name": "loopback-sinks", "type": "CIDR", "destination": "127.0.0.0/8",
                "ports": sink_ports, "description": "bench sinks"}),
        )
        .await;
        // The FQDN rules: the one naming the sinks, then exact names and wildcards elsewhere,
        // RULE_CONCURRENCY requests at a time (the API creates one rule per request).
        let started = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(RULE_CONCURRENCY));
        let api = &api;
        let mut futs = Vec::new();
        for i in 0..rules {
            let sem = sem.clone();
            let cid = cid.clone();
            futs.push(async move {
                let _p = sem.acquire().await.unwrap();
                let body = if i == 0 {
                    json!({"name": "bench-sinks", "type": "FQDN",
                        "destination": format!("*.{SINK_DOMAIN}"), "ports": sink_ports,
                        "description": "the sinks' names"})
                } else {
                    let destination = if i % 2 == 0 {
                        format!("svc-{i}.team{}.bench.example.com", i % 97)
                    } else {
                        format!("*.svc-{i}.team{}.bench.example.net", i % 89)
                    };
                    json!({"name": format!("fqdn-{i:06}"), "type": "FQDN",
                        "destination": destination, "ports": [443],
                        "description": "bench rule"})
                };
                api.add_rule(&cid, body).await;
            });
        }
        futures_join_all(futs).await;
        let rules_load = started.elapsed();
        eprintln!(
            "bench: {rules} FQDN rules created in {:.1} s",
            rules_load.as_secs_f64()
        );
        let g = api
            .ok(
                Method::POST,
                &format!("/api/v1/clusters/{cid}/gateways"),
                Some(json!({"region": "us-east-1", "name": "bench-gw"})),
            )
            .await;
        (
            cid,
            g["token"].as_str().expect("gateway token").to_string(),
            rules_load,
        )
    });

    let mut cmd = Command::new(BIN);
    cmd.args(["gateway", "--control-plane", &api.base, "--token", &token])
        .args(["--listen", "127.0.0.1:0", "--region", "us-east-1"])
        // One thread, as Squid runs one worker: the same CPU budget for both proxies.
        .args(["--worker-threads", "1"])
        // Room for the idle tunnels (the default is 4096).
        .args(["--max-connections", &max_connections.to_string()])
        .arg("--state-dir")
        .arg(dir.join("gw-state"))
        .arg("--hosts-file")
        .arg(hosts)
        // Names outside the hosts file go to nobody on loopback, as for Squid.
        .args(["--dns-server", "127.0.0.1"])
        .env_remove("PERIMETER_CONTROL_PLANE")
        .env_remove("PERIMETER_GATEWAY_TOKEN")
        .env_remove("PERIMETER_LOG_FORMAT")
        // The decision log as deployed: the default filter (info), text, to stderr: its file.
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
        rules_load,
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

/// Wait (60 s at most) until a tunnel of `path` goes through the gateway: it then holds the
/// policy.
fn wait_ready(p: &Perimeter, rt: &tokio::runtime::Runtime, dest: &Dest) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rt.block_on(one_tunnel(Via::Proxy(p.proxy), loopback(0), dest)) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!(
                "no tunnel to {} through the gateway after 60 s: {e}; gateway log:\n{}",
                dest.authority,
                p.gateway.log_text()
            ),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The SNI is checked: a ClientHello naming another host than the CONNECT closes the tunnel
/// without the sink's answer.
fn sni_mismatch_refused(p: &Perimeter, rt: &tokio::runtime::Runtime, dest: &Dest) {
    use tokio::io::AsyncWriteExt;
    let got = rt.block_on(async {
        let mut s = open(Via::Proxy(p.proxy), loopback(0), dest).await?;
        s.write_all(&client_hello(&format!("other.{SINK_DOMAIN}")))
            .await?;
        tokio::time::timeout(Duration::from_secs(10), read_to_close(&mut s))
            .await
            .map_err(|_| std::io::Error::other("the tunnel stayed open"))?
    });
    match got {
        Ok(bytes) if bytes.is_empty() => {}
        // A reset is a refusal too.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "a ClientHello for other.{SINK_DOMAIN} in a tunnel to {} was not refused: {other:?}",
            dest.authority
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Squid

fn squid_binary() -> Result<PathBuf, String> {
    let bin = PathBuf::from("/usr/sbin/squid");
    if bin.exists() {
        return Ok(bin);
    }
    if !is_root() {
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

fn start_squid(
    dir: &Path,
    bin: &Path,
    sink_ports: &[u16],
    hosts: &Path,
    max_fds: u64,
) -> Result<(Proc, SocketAddr), String> {
    use std::os::unix::fs::PermissionsExt;
    let sdir = dir.join("squid");
    std::fs::create_dir_all(&sdir).unwrap();
    // Squid drops root for its `proxy` user: it must reach and write its directory.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o777));
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ports = sink_ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let d = sdir.display();
    let h = hosts.display();
    // Like the gateway's decision log, one line per connection, written by the proxy itself;
    // BENCH_SQUID_ACCESS_LOG=0 turns it off.
    let access_log = if std::env::var("BENCH_SQUID_ACCESS_LOG").as_deref() == Ok("0") {
        "none".to_string()
    } else {
        format!("stdio:{d}/access.log")
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
max_filedescriptors {max_fds}
hosts_file {h}
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
// Figures and report

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median over rounds of `a[r] / b[r]` (each ratio from figures measured side by side).
fn ratio(a: &[f64], b: &[f64]) -> f64 {
    median(a.iter().zip(b).map(|(x, y)| x / y).collect())
}

#[derive(Default)]
struct BulkFigs {
    mibs: Vec<f64>,
    cpu_per_gib: Vec<f64>,
    bench_cpu_per_gib: Vec<f64>,
    busy: Vec<f64>,
}

impl BulkFigs {
    fn add(&mut self, b: &Bulk) {
        let gib = b.bytes as f64 / (1u64 << 30) as f64;
        self.mibs.push(b.bytes as f64 / (1 << 20) as f64 / b.secs);
        self.cpu_per_gib.push(b.proxy_cpu / gib);
        self.bench_cpu_per_gib.push(b.bench_cpu / gib);
        self.busy.push(b.busy * 100.0);
    }
}

#[derive(Default)]
struct TunnelFigs {
    per_s: Vec<f64>,
    cpu_us: Vec<f64>,
    bench_us: Vec<f64>,
    busy: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
}

impl TunnelFigs {
    fn add(&mut self, t: Tunnels) {
        let done = t.done.max(1) as f64;
        self.per_s.push(t.done as f64 / t.secs);
        self.cpu_us.push(t.proxy_cpu * 1e6 / done);
        self.bench_us.push(t.bench_cpu * 1e6 / done);
        self.busy.push(t.busy * 100.0);
        self.errors += t.errors;
        if self.first_error.is_none() {
            self.first_error = t.first_error;
        }
    }
}

#[derive(Default)]
struct Figures {
    /// Bulk with one congestion control for all.
    bulk_same: BulkFigs,
    /// Bulk under the host's own congestion control (the gateway's loopback tweak engaged).
    bulk_host: BulkFigs,
    ip: TunnelFigs,
    name: TunnelFigs,
    idle: Option<Idle>,
}

/// How bulk ran.
struct BulkSetup {
    /// The host's congestion control.
    host_cc: String,
    available: Vec<String>,
    /// The congestion control the same-cc runs set, when it is not the host's.
    set_cc: Option<&'static str>,
    /// Why the same-cc runs could not set it, if they could not.
    unset_why: Option<String>,
}

impl BulkSetup {
    fn new() -> BulkSetup {
        let (host_cc, available) = host_cc();
        let (set_cc, unset_why) = if host_cc != "bbr" {
            // The tweak engages only on bbr: every socket already runs the host's setting.
            (None, None)
        } else if !available.iter().any(|c| c == SAME_CC) {
            (None, Some(format!("{SAME_CC} is not available")))
        } else if !is_root() {
            (None, Some("not root".to_string()))
        } else {
            (Some(SAME_CC), None)
        };
        BulkSetup {
            host_cc,
            available,
            set_cc,
            unset_why,
        }
    }

    /// The congestion control every contender's bulk runs on in the same-cc runs.
    fn same(&self) -> Option<&str> {
        match (&self.set_cc, &self.unset_why) {
            (Some(cc), _) => Some(cc),
            (None, None) => Some(&self.host_cc),
            (None, Some(_)) => None,
        }
    }
}

struct Setting {
    cores: usize,
    rules: u64,
    rules_load: Duration,
    ready: Duration,
    bulk_mib: u64,
    tunnel_secs: f64,
    rounds: usize,
    bulk: BulkSetup,
    nofile: u64,
}

struct Report<'a> {
    figs: &'a [(&'a str, &'a Figures)],
    set: Setting,
    changes: Vec<Duration>,
}

impl Report<'_> {
    fn get(&self, name: &str) -> Option<&Figures> {
        self.figs.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    fn row(&self, label: &str, prec: usize, pick: &dyn Fn(&Figures) -> &Vec<f64>, direct: bool) {
        let cell = |name: &str| match self.get(name).map(pick) {
            Some(v) if !v.is_empty() && (direct || name != "direct") => {
                format!("{:>12.*}", prec, median(v.clone()))
            }
            _ => format!("{:>12}", "-"),
        };
        println!(
            "{label:<38}{}{}{}",
            cell("direct"),
            cell("perimeter"),
            cell("squid")
        );
    }

    fn print(&self) {
        let s = &self.set;
        let none = Figures::default();
        let (direct, per, sq) = (
            self.get("direct").unwrap_or(&none),
            self.get("perimeter").unwrap_or(&none),
            self.get("squid"),
        );
        println!();
        println!(
            "gateway bench: {} cores; {} FQDN rules (one names the sinks) + 1 CIDR rule \
             (127.0.0.0/8), DEFAULT_DENY; gateway --worker-threads 1 and Squid workers 1, \
             decision log and access log on; {CLIENTS} clients x {} s per tunnel run; bulk {} \
             MiB per run; medians of {} rounds",
            s.cores, s.rules, s.tunnel_secs, s.bulk_mib, s.rounds
        );
        println!(
            "rules loaded through the API in {:.1} s ({:.0} rules/s, {RULE_CONCURRENCY} \
             requests at a time; the API has no bulk call); gateway serving them {:.1} s later",
            s.rules_load.as_secs_f64(),
            s.rules as f64 / s.rules_load.as_secs_f64().max(1e-9),
            s.ready.as_secs_f64()
        );
        let b = &s.bulk;
        println!(
            "host TCP congestion control: {} (available: {}); same-cc bulk runs on: {}",
            b.host_cc,
            b.available.join(" "),
            match (b.same(), &b.unset_why) {
                (Some(cc), _) if b.set_cc.is_some() =>
                    format!("{cc} (set for those runs, then restored)"),
                (Some(cc), _) => format!("{cc} (the host's; the gateway's tweak does not engage)"),
                (None, Some(why)) => format!("not possible ({why})"),
                (None, None) => "not possible".into(),
            }
        );
        println!("RLIMIT_NOFILE of the bench and the proxies: {}", s.nofile);
        println!(
            "{:<38}{:>12}{:>12}{:>12}",
            "", "direct", "perimeter", "squid"
        );
        let have_bulk = !direct.bulk_same.mibs.is_empty() || !direct.bulk_host.mibs.is_empty();
        if have_bulk {
            if let Some(cc) = b.same() {
                println!("bulk, one tunnel, all on {cc}:");
                self.row("  MiB/s", 0, &|f| &f.bulk_same.mibs, true);
                self.row(
                    "  proxy CPU s per GiB",
                    3,
                    &|f| &f.bulk_same.cpu_per_gib,
                    false,
                );
                self.row(
                    "  client+sink CPU s per GiB",
                    3,
                    &|f| &f.bulk_same.bench_cpu_per_gib,
                    true,
                );
                self.row("  machine busy %", 0, &|f| &f.bulk_same.busy, true);
            }
            if !direct.bulk_host.mibs.is_empty() {
                println!(
                    "bulk on the host's {} (gateway sends to loopback on {SAME_CC}):",
                    b.host_cc
                );
                self.row("  MiB/s", 0, &|f| &f.bulk_host.mibs, true);
                self.row(
                    "  proxy CPU s per GiB",
                    3,
                    &|f| &f.bulk_host.cpu_per_gib,
                    false,
                );
            }
        }
        for (path, pick, what) in [
            (
                PathKind::Ip,
                (|f: &Figures| &f.ip) as fn(&Figures) -> &TunnelFigs,
                "CONNECT 127.0.0.N:PORT, HTTP request",
            ),
            (
                PathKind::Name,
                |f: &Figures| &f.name,
                "CONNECT sink-N.bench.test:PORT, ClientHello",
            ),
        ] {
            if pick(direct).per_s.is_empty() {
                continue;
            }
            println!("{} ({what}):", path.label());
            self.row("  tunnels/s", 0, &|f| &pick(f).per_s, true);
            self.row("  proxy CPU us per tunnel", 1, &|f| &pick(f).cpu_us, false);
            self.row(
                "  client+sinks CPU us per tunnel",
                1,
                &|f| &pick(f).bench_us,
                true,
            );
            self.row("  machine busy %", 0, &|f| &pick(f).busy, true);
            println!(
                "{:<38}{:>12}{:>12}{:>12}",
                "  tunnel errors",
                pick(direct).errors,
                pick(per).errors,
                sq.map_or("-".into(), |f| pick(f).errors.to_string())
            );
        }
        let idle_row = |label: &str, f: &dyn Fn(&Idle) -> String| {
            let cell =
                |x: Option<&Figures>| x.and_then(|x| x.idle.as_ref()).map_or("-".to_string(), f);
            println!(
                "{label:<38}{:>12}{:>12}{:>12}",
                "-",
                cell(Some(per)),
                cell(sq)
            );
        };
        if let Some(i) = &per.idle {
            println!(
                "idle tunnels (name path, ClientHello answered, then idle; {} asked{}):",
                i.requested,
                if i.wanted < i.requested {
                    format!(
                        ", RLIMIT_NOFILE {} leaves the gateway room for {}",
                        s.nofile, i.wanted
                    )
                } else {
                    String::new()
                }
            );
            idle_row("  held / room for", &|i| format!("{}/{}", i.held, i.wanted));
            idle_row("  proxy descriptors before / held", &|i| {
                format!("{}/{}", i.fds_before, i.fds_held)
            });
            idle_row("  seconds to open", &|i| format!("{:.1}", i.open_secs));
            idle_row("  proxy RSS before, MiB", &|i| {
                format!("{:.1}", i.rss_before_kib as f64 / 1024.0)
            });
            idle_row("  proxy RSS held, MiB", &|i| {
                format!("{:.1}", i.rss_after_kib as f64 / 1024.0)
            });
            idle_row("  KiB per idle tunnel", &|i| {
                format!("{:.2}", i.kib_per_tunnel())
            });
        }
        println!(
            "{:<38}{:>12.0} ms median (runs: {})",
            "rule change to ACTIVE",
            self.change_ms(),
            self.changes
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (name, f) in self.figs {
            for (path, t) in [("IP", &f.ip), ("name", &f.name)] {
                if let Some(e) = &t.first_error {
                    println!("  first {name} {path}-path error: {e}");
                }
            }
            if let Some(e) = f.idle.as_ref().and_then(|i| i.first_error.as_ref()) {
                println!("  first {name} idle-tunnel error: {e}");
            }
        }
        let list = |v: &Vec<f64>, prec: usize| {
            v.iter()
                .map(|x| format!("{x:.prec$}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!("per round:");
        for (name, f) in self.figs {
            println!(
                "  {name:<10} bulk MiB/s same cc [{}] host cc [{}]  CPU s/GiB same cc [{}]",
                list(&f.bulk_same.mibs, 0),
                list(&f.bulk_host.mibs, 0),
                list(&f.bulk_same.cpu_per_gib, 3),
            );
            println!(
                "  {:<10} tunnels/s IP [{}] name [{}]  CPU us/tunnel IP [{}] name [{}]",
                "",
                list(&f.ip.per_s, 0),
                list(&f.name.per_s, 0),
                list(&f.ip.cpu_us, 1),
                list(&f.name.cpu_us, 1)
            );
        }
        self.ratios_and_targets(direct, per, sq);
    }

    fn change_ms(&self) -> f64 {
        median(self.changes.iter().map(|d| d.as_secs_f64() * 1e3).collect())
    }

    fn ratios_and_targets(&self, direct: &Figures, per: &Figures, sq: Option<&Figures>) {
        let s = &self.set;
        println!();
        println!("ratios (median of per-round ratios):");
        let same = s.bulk.same().map(str::to_string);
        let have_same = !direct.bulk_same.mibs.is_empty() && same.is_some();
        let bulk_same = ratio(&per.bulk_same.mibs, &direct.bulk_same.mibs);
        let mut gib = None;
        if have_same {
            let cc = same.as_deref().unwrap_or("");
            println!("  bulk, all on {cc}: perimeter / direct            {bulk_same:.2}x");
            if let Some(sq) = sq {
                println!(
                    "  bulk, all on {cc}: squid / direct                {:.2}x",
                    ratio(&sq.bulk_same.mibs, &direct.bulk_same.mibs)
                );
                let g = ratio(&per.bulk_same.cpu_per_gib, &sq.bulk_same.cpu_per_gib);
                println!("  bulk, all on {cc}: perimeter / squid CPU per GiB {g:.2}x");
                gib = Some(g);
            }
        }
        if !direct.bulk_host.mibs.is_empty() {
            // The tweak on its own line: under the host's bbr only the gateway's sends to a
            // loopback peer run cubic.
            let host = ratio(&per.bulk_host.mibs, &direct.bulk_host.mibs);
            let squid_host = sq.map_or(String::new(), |sq| {
                format!(
                    ", squid / direct {:.2}x",
                    ratio(&sq.bulk_host.mibs, &direct.bulk_host.mibs)
                )
            });
            println!(
                "  loopback tweak (in no ratio above): on the host's {}, where only the gateway \
                 sends on {SAME_CC}, perimeter / direct {host:.2}x{squid_host}",
                s.bulk.host_cc
            );
        }
        let mut path_ratios = Vec::new();
        for (label, pick) in [
            (
                "IP path  ",
                (|f: &Figures| &f.ip) as fn(&Figures) -> &TunnelFigs,
            ),
            ("name path", |f: &Figures| &f.name),
        ] {
            let label = label.trim();
            if pick(direct).per_s.is_empty() {
                continue;
            }
            if let Some(sq) = sq {
                let tps = ratio(&pick(per).per_s, &pick(sq).per_s);
                let cpu = ratio(&pick(per).cpu_us, &pick(sq).cpu_us);
                println!("  {label:<9}: perimeter / squid tunnels/s          {tps:.2}x");
                println!("  {label:<9}: perimeter / squid CPU per tunnel     {cpu:.2}x");
                path_ratios.push((label, tps, cpu));
            }
            println!(
                "  {label:<9}: perimeter / direct tunnels/s         {:.2}x",
                ratio(&pick(per).per_s, &pick(direct).per_s)
            );
        }
        if let (Some(p), Some(q)) = (per.idle.as_ref(), sq.and_then(|f| f.idle.as_ref())) {
            println!(
                "  idle tunnels: perimeter / squid memory per tunnel {:.2}x",
                p.kib_per_tunnel() / q.kib_per_tunnel()
            );
        }

        println!();
        println!("targets:");
        if !direct.bulk_same.mibs.is_empty() || !direct.bulk_host.mibs.is_empty() {
            match same.as_deref().filter(|_| have_same) {
                Some(cc) => {
                    check(
                        &format!("bulk >= 0.7x direct (all on {cc})"),
                        bulk_same >= 0.7,
                        format!("{bulk_same:.2}x"),
                    );
                    match gib {
                        Some(g) => check(
                            &format!("CPU per GiB <= 0.5x squid (all on {cc})"),
                            g <= 0.5,
                            format!("{g:.2}x"),
                        ),
                        None => println!("  CPU per GiB vs squid: SKIPPED (no squid)"),
                    }
                }
                None => println!(
                    "  bulk targets: SKIPPED (no common congestion control: {})",
                    s.bulk.unset_why.as_deref().unwrap_or("?")
                ),
            }
        }
        if sq.is_none() && !direct.ip.per_s.is_empty() {
            println!("  tunnel targets: SKIPPED (no squid)");
        }
        for (label, tps, cpu) in path_ratios {
            check(
                &format!("{label}: tunnels/s >= 2x squid"),
                tps >= 2.0,
                format!("{tps:.2}x"),
            );
            check(
                &format!("{label}: CPU per tunnel <= 0.5x squid"),
                cpu <= 0.5,
                format!("{cpu:.2}x"),
            );
        }
        if let Some(i) = &per.idle {
            let k = i.kib_per_tunnel();
            check(
                &format!("memory per idle tunnel <= 8 KiB ({} held)", i.held),
                k <= 8.0 && i.held == i.wanted,
                format!(
                    "{k:.2} KiB{}",
                    if i.held < i.requested {
                        format!("; {} of the {} asked", i.held, i.requested)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        let change_ms = self.change_ms();
        check(
            "rule change to ACTIVE <= 1 s",
            change_ms <= 1000.0,
            format!("{change_ms:.0} ms"),
        );
    }
}

fn check(name: &str, ok: bool, detail: String) {
    println!(
        "  {:<52} {}  ({detail})",
        name,
        if ok { "PASS" } else { "FAIL" }
    );
}

// ---------------------------------------------------------------------------------------------
// The run

/// A contender: a name, how to reach the sinks, the proxy process (none for direct).
struct Contender<'a> {
    name: &'static str,
    via: Via,
    proc_: Option<&'a Proc>,
    figs: Figures,
}

fn main() {
    // `--idle-sinks`: this binary started by itself, as the idle sinks' process.
    if std::env::args().any(|a| a == "--idle-sinks") {
        idle_sinks_main();
        return;
    }
    // `cargo bench` passes --bench; a test harness run passes other flags. Run only as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let bulk_bytes = env_u64("BENCH_BULK_MIB", 4096) * 1024 * 1024;
    let tunnel_secs = env_u64("BENCH_TUNNEL_SECS", 3) as f64;
    let rounds = env_u64("BENCH_ROUNDS", 5).max(1) as usize;
    let rules = env_u64("BENCH_RULES", 100_000).max(1);
    let idle = env_u64("BENCH_IDLE_TUNNELS", 10_000);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);

    // Before anything is spawned: children inherit the limit.
    let nofile = raise_nofile(idle);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cleanup_on_signal(&rt);

    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).dir = Some(dir.to_path_buf());
    let sinks = sinks();
    let idle_sinks = start_idle_sinks(dir);
    let mut sink_ports: Vec<u16> = sinks
        .tunnel
        .iter()
        .chain(&idle_sinks.addrs)
        .map(|a| a.port())
        .collect();
    sink_ports.push(sinks.bulk.port());
    sink_ports.sort_unstable();
    sink_ports.dedup();
    // One hosts file for both proxies: sink-N.bench.test -> 127.0.0.N.
    let hosts = dir.join("hosts");
    let names: String = (0..ADDRS)
        .map(|i| format!("{} {}\n", loopback(i), sink_name(i)))
        .collect();
    std::fs::write(&hosts, names).unwrap();
    let ip_dests = Arc::new(dests(PathKind::Ip, &sinks.tunnel));
    let name_dests = Arc::new(dests(PathKind::Name, &sinks.tunnel));
    let idle_dests = Arc::new(dests(PathKind::Name, &idle_sinks.addrs));

    let max_connections = (idle + 1024).max(4096);
    let p = start_perimeter(dir, &rt, &sink_ports, rules, &hosts, max_connections);
    let ready = Instant::now();
    wait_ready(&p, &rt, &ip_dests[0]);
    wait_ready(&p, &rt, &name_dests[0]);
    let ready = ready.elapsed();
    sni_mismatch_refused(&p, &rt, &name_dests[1]);
    assert!(
        p.gateway.log_text().contains("perimeter::decision"),
        "the gateway's log holds no decision line:\n{}",
        p.gateway.log_text()
    );
    eprintln!(
        "bench: gateway serving {rules} FQDN rules + 1 CIDR rule {:.1} s after it started",
        ready.as_secs_f64()
    );
    let squid = squid_binary().and_then(|bin| start_squid(dir, &bin, &sink_ports, &hosts, nofile));
    if let Err(e) = &squid {
        println!("squid: SKIPPED: {e}");
    }

    let mut cs = vec![
        Contender {
            name: "direct",
            via: Via::Direct,
            proc_: None,
            figs: Figures::default(),
        },
        Contender {
            name: "perimeter",
            via: Via::Proxy(p.proxy),
            proc_: Some(&p.gateway),
            figs: Figures::default(),
        },
    ];
    if let Ok((proc_, addr)) = &squid {
        cs.push(Contender {
            name: "squid",
            via: Via::Proxy(*addr),
            proc_: Some(proc_),
            figs: Figures::default(),
        });
    }
    let bulk_setup = BulkSetup::new();
    let max_tunnels = 500_000;
    for round in 0..rounds {
        eprint!("bench: round {}/{rounds}:", round + 1);
        // The order turns each round, so no one always runs first or last.
        let n = cs.len();
        let order: Vec<usize> = (0..n).map(|i| (i + round) % n).collect();
        if bulk_bytes > 0 {
            // Same congestion control for all; then the host's, where the tweak engages.
            if bulk_setup.same().is_some() {
                let set = bulk_setup.set_cc.map(|cc| {
                    CcOverride::set(cc).unwrap_or_else(|e| {
                        panic!("setting net.ipv4.tcp_congestion_control={cc}: {e}")
                    })
                });
                for &i in &order {
                    let c = &mut cs[i];
                    eprint!(" bulk-same {}", c.name);
                    let b = bulk(c.via, sinks.bulk, bulk_bytes, c.proc_);
                    c.figs.bulk_same.add(&b);
                }
                drop(set);
            }
            if bulk_setup.set_cc.is_some() || bulk_setup.same().is_none() {
                for &i in &order {
                    let c = &mut cs[i];
                    eprint!(" bulk-host {}", c.name);
                    let b = bulk(c.via, sinks.bulk, bulk_bytes, c.proc_);
                    c.figs.bulk_host.add(&b);
                }
            }
        }
        if tunnel_secs > 0.0 {
            for (path, dests) in [(PathKind::Ip, &ip_dests), (PathKind::Name, &name_dests)] {
                for &i in &order {
                    let c = &mut cs[i];
                    eprint!(" {} {}", path.label(), c.name);
                    // Warm up, then measure.
                    let _ = tunnels(c.via, dests, 0.3, max_tunnels, c.proc_);
                    let t = tunnels(c.via, dests, tunnel_secs, max_tunnels, c.proc_);
                    match path {
                        PathKind::Ip => c.figs.ip.add(t),
                        PathKind::Name => c.figs.name.add(t),
                    }
                }
            }
        }
        eprintln!();
    }
    if idle > 0 {
        for c in cs.iter_mut() {
            let Some(proc_) = c.proc_ else { continue };
            eprintln!("bench: {idle} idle tunnels through {}", c.name);
            c.figs.idle = Some(idle_tunnels(
                c.via,
                &idle_dests,
                idle,
                proc_,
                &idle_sinks.proc_,
                nofile,
            ));
        }
    }
    let changes = rule_to_active(&p, &rt, 5);
    let figs: Vec<(&str, &Figures)> = cs.iter().map(|c| (c.name, &c.figs)).collect();
    Report {
        figs: &figs,
        set: Setting {
            cores,
            rules,
            rules_load: p.rules_load,
            ready,
            bulk_mib: bulk_bytes >> 20,
            tunnel_secs,
            rounds,
            bulk: bulk_setup,
            nofile,
        },
        changes,
    }
    .print();
    drop(figs);
    drop(cs);
    drop(squid);
    drop(p);
    drop(idle_sinks);
    drop(rt);
}
