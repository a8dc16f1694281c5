//! Clients: a CONNECT through the gateway, TLS inside it (trusting the cluster's CA on the
//! inspected path, the upstream's certificate on the spliced one), then keep-alive GETs on the
//! same connection, each timed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::procs::{Proc, busy_since, cpu_seconds, machine_ticks};
use crate::{PORT, REQUEST_PATH};

/// Longest wait for one step (CONNECT answer, handshake, response) before it counts as failed.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// A destination through the gateway: its name, the CA the client trusts there, and the path
/// requested.
#[derive(Clone)]
pub(crate) struct Dest {
    pub(crate) label: &'static str,
    pub(crate) name: String,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    pub(crate) path: &'static str,
}

impl Dest {
    pub(crate) fn new(label: &'static str, name: &str, tls: Arc<rustls::ClientConfig>) -> Dest {
        Dest {
            label,
            name: name.to_string(),
            tls,
            path: REQUEST_PATH,
        }
    }
}

/// A TLS client configuration trusting only the certificates of `pem`, offering HTTP/1.1,
/// without session resumption: every connection makes a full handshake, as a new client
/// process does, and the gateway picks a leaf for each.
pub(crate) fn client_config(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots.add(c.expect("a PEM certificate")).expect("a root");
    }
    assert!(!roots.is_empty(), "no certificate in the trusted PEM");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// Where a request head ends (the index past its blank line), if it is complete.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn err(what: String) -> std::io::Error {
    std::io::Error::other(what)
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| err(format!("{what}: no answer within {STEP_TIMEOUT:?}")))?
}

/// One TLS session through the gateway.
pub(crate) struct Session {
    tls: TlsStream<TcpStream>,
    request: Vec<u8>,
    buf: Vec<u8>,
}

/// How long a session took to open: the CONNECT answered, then the handshake done.
pub(crate) struct Opened {
    pub(crate) connect: Duration,
    pub(crate) handshake: Duration,
}

impl Session {
    /// CONNECT `dest`:443 through `proxy`, then the TLS handshake inside the tunnel.
    pub(crate) async fn open(proxy: SocketAddr, dest: &Dest) -> std::io::Result<(Session, Opened)> {
        let started = Instant::now();
        let mut s = timed("connecting to the gateway", TcpStream::connect(proxy)).await?;
        s.set_nodelay(true)?;
        let authority = format!("{}:{PORT}", dest.name);
        s.write_all(
            format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes(),
        )
        .await?;
        // Byte by byte up to the blank line: nothing of the TLS stream is read here.
        let mut head = Vec::with_capacity(128);
        timed("the CONNECT answer", async {
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).await? == 0 || head.len() > 8192 {
                    return Err(err(format!(
                        "CONNECT {authority} answered: {:?}",
                        String::from_utf8_lossy(&head)
                    )));
                }
                head.push(b[0]);
            }
            Ok(())
        })
        .await?;
        if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
            return Err(err(format!(
                "CONNECT {authority} answered: {:?}",
                String::from_utf8_lossy(&head)
            )));
        }
        let connect = started.elapsed();
        let name = ServerName::try_from(dest.name.clone()).map_err(|e| err(e.to_string()))?;
        let tls = timed(
            "the TLS handshake",
            tokio_rustls::TlsConnector::from(dest.tls.clone()).connect(name, s),
        )
        .await
        .map_err(|e| err(format!("TLS with {} through the gateway: {e}", dest.name)))?;
        let handshake = started.elapsed();
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: perimeter-bench\r\naccept: */*\r\n\r\n",
            dest.path, dest.name
        )
        .into_bytes();
        Ok((
            Session {
                tls,
                request,
                buf: Vec::with_capacity(4096),
            },
            Opened { connect, handshake },
        ))
    }

    /// One GET on the session; its status (a 200 must carry the upstream's body).
    pub(crate) async fn get(&mut self) -> std::io::Result<u16> {
        self.tls.write_all(&self.request).await?;
        self.tls.flush().await?;
        timed("the response", self.read_response()).await
    }

    async fn read_response(&mut self) -> std::io::Result<u16> {
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            let n = self.tls.read(&mut chunk).await?;
            if n == 0 {
                return Err(err(format!(
                    "the connection closed before a response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err(format!("not an HTTP response: {head:?}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .ok_or_else(|| err(format!("a response without content-length: {head:?}")))?;
        while self.buf.len() < end + length {
            let n = self.tls.read(&mut chunk).await?;
            if n == 0 {
                return Err(err("the connection closed inside a response body".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        let body_ok = &self.buf[end..end + length] == b"ok";
        self.buf.drain(..end + length);
        if status == 200 && !body_ok {
            return Err(err(format!("a 200 without the upstream's body: {head:?}")));
        }
        Ok(status)
    }
}

/// A 200 from the upstream, or the error.
async fn get_ok(s: &mut Session) -> std::io::Result<()> {
    match s.get().await? {
        200 => Ok(()),
        st => Err(err(format!("answered {st}, not 200"))),
    }
}

/// Quantile `q` (0..1) of nanosecond samples, in µs.
pub(crate) fn quantile_us(ns: &[u64], q: f64) -> f64 {
    if ns.is_empty() {
        return f64::NAN;
    }
    let mut v = ns.to_vec();
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    v[i] as f64 / 1000.0
}

/// Concurrent keep-alive clients on one path: requests per second and their latencies.
pub(crate) struct Load {
    pub(crate) requests: u64,
    pub(crate) secs: f64,
    pub(crate) latencies_ns: Vec<u64>,
    pub(crate) gateway_cpu: f64,
    pub(crate) busy: f64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

/// `clients` sessions to `dest`, each opened first, then looping on GET: `warmup` seconds not
/// counted, then `secs` seconds counted (requests started and finished inside the window).
pub(crate) fn load(
    rt: &tokio::runtime::Runtime,
    proxy: SocketAddr,
    dest: &Dest,
    clients: usize,
    warmup: f64,
    secs: f64,
    gateway: &Proc,
) -> Load {
    rt.block_on(async {
        let mut sessions = Vec::new();
        for _ in 0..clients {
            let (s, _) = Session::open(proxy, dest)
                .await
                .unwrap_or_else(|e| panic!("a session to {}: {e}", dest.name));
            sessions.push(s);
        }
        let begin = Instant::now() + Duration::from_secs_f64(warmup);
        let end = begin + Duration::from_secs_f64(secs);
        let errors = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for mut s in sessions {
            let errors = errors.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut first_error = None;
                // Bounded by time; the count bounds a runaway clock.
                for _ in 0..50_000_000u64 {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    match get_ok(&mut s).await {
                        Ok(()) => {
                            let t1 = Instant::now();
                            if t0 >= begin && t1 <= end {
                                lat.push((t1 - t0).as_nanos() as u64);
                            }
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.get_or_insert(e.to_string());
                            break;
                        }
                    }
                }
                (lat, first_error)
            }));
        }
        tokio::time::sleep_until(begin.into()).await;
        let cpu0 = cpu_seconds(gateway.pid());
        let ticks0 = machine_ticks();
        tokio::time::sleep_until(end.into()).await;
        let gateway_cpu = cpu_seconds(gateway.pid()) - cpu0;
        let busy = busy_since(ticks0);
        let mut latencies_ns = Vec::new();
        let mut first_error = None;
        for t in tasks {
            let (lat, e) = t.await.expect("a client task");
            latencies_ns.extend(lat);
            if first_error.is_none() {
                first_error = e;
            }
        }
        Load {
            requests: latencies_ns.len() as u64,
            secs,
            latencies_ns,
            gateway_cpu,
            busy,
            errors: errors.load(Ordering::Relaxed),
            first_error,
        }
    })
}

/// One session, GETs one after the other for `secs` (at most `max`): each request's latency
/// without queueing behind other clients. The first 100 are not counted.
pub(crate) fn latency(
    rt: &tokio::runtime::Runtime,
    proxy: SocketAddr,
    dest: &Dest,
    secs: f64,
    max: usize,
) -> Vec<u64> {
    rt.block_on(async {
        let (mut s, _) = Session::open(proxy, dest)
            .await
            .unwrap_or_else(|e| panic!("a session to {}: {e}", dest.name));
        for _ in 0..100 {
            get_ok(&mut s)
                .await
                .unwrap_or_else(|e| panic!("a GET to {}: {e}", dest.name));
        }
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut lat = Vec::with_capacity(max.min(1 << 16));
        while lat.len() < max && Instant::now() < end {
            let t0 = Instant::now();
            get_ok(&mut s)
                .await
                .unwrap_or_else(|e| panic!("a GET to {}: {e}", dest.name));
            lat.push(t0.elapsed().as_nanos() as u64);
        }
        lat
    })
}

/// New sessions one at a time: CONNECT + handshake, and the first response on top.
#[derive(Default)]
pub(crate) struct Setups {
    /// The CONNECT answered (the spliced path dials the upstream before it answers).
    pub(crate) connect_ns: Vec<u64>,
    /// CONNECT + the TLS handshake inside the tunnel.
    pub(crate) handshake_ns: Vec<u64>,
    pub(crate) first_ns: Vec<u64>,
    pub(crate) gateway_cpu: f64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

/// `n` sessions (at most `secs` seconds), to each of `dests` in turn; each opened, one GET,
/// closed.
pub(crate) fn setups(
    rt: &tokio::runtime::Runtime,
    proxy: SocketAddr,
    dests: &[Dest],
    n: usize,
    secs: f64,
    gateway: &Proc,
) -> Setups {
    rt.block_on(async {
        let mut out = Setups::default();
        let cpu0 = cpu_seconds(gateway.pid());
        let end = Instant::now() + Duration::from_secs_f64(secs);
        for i in 0..n {
            if Instant::now() >= end {
                break;
            }
            let dest = &dests[i % dests.len()];
            let started = Instant::now();
            let got = async {
                let (mut s, opened) = Session::open(proxy, dest).await?;
                get_ok(&mut s).await?;
                let first = started.elapsed();
                Ok::<_, std::io::Error>((opened, first))
            }
            .await;
            match got {
                Ok((opened, first)) => {
                    out.connect_ns.push(opened.connect.as_nanos() as u64);
                    out.handshake_ns.push(opened.handshake.as_nanos() as u64);
                    out.first_ns.push(first.as_nanos() as u64);
                }
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(format!("{}: {e}", dest.name));
                }
            }
        }
        out.gateway_cpu = cpu_seconds(gateway.pid()) - cpu0;
        out
    })
}
