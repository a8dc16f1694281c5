//! Clients: where a tunnel goes, and 32 clients looping over tunnels.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::hello::client_hello;
use crate::procs::{Proc, busy_since, cpu_seconds, machine_ticks};
use crate::{CLIENTS, REPLY, REQUEST_TAIL, TLS_ANSWER, loopback, sink_name};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Direct,
    Proxy(SocketAddr),
}

/// Where a tunnel goes and what it says there.
pub(crate) struct Dest {
    /// The sink's address (dialled directly; for a proxy, named by `authority`).
    pub(crate) addr: SocketAddr,
    /// The CONNECT target: `127.0.0.N:PORT` or `sink-N.bench.test:PORT`.
    pub(crate) authority: String,
    /// The client's first bytes in the tunnel.
    pub(crate) first: Vec<u8>,
    /// What the sink answers them.
    pub(crate) answer: &'static [u8],
}

impl Dest {
    /// Whether `got` is the sink's answer. An HTTP reply may come back with other headers (the
    /// gateway forwards it request by request: hop-by-hop headers go, a date comes); its status
    /// and body are the sink's.
    pub(crate) fn answered(&self, got: &[u8]) -> Result<(), std::io::Error> {
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
pub(crate) enum PathKind {
    /// CONNECT to an IP literal, an HTTP request.
    Ip,
    /// CONNECT to a name, a ClientHello with that name.
    Name,
}

impl PathKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            PathKind::Ip => "IP path",
            PathKind::Name => "name path",
        }
    }
}

pub(crate) fn dests(path: PathKind, sinks: &[SocketAddr]) -> Vec<Dest> {
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

pub(crate) struct Tunnels {
    pub(crate) done: u64,
    pub(crate) errors: u64,
    pub(crate) secs: f64,
    pub(crate) proxy_cpu: f64,
    /// This process (clients and sinks).
    pub(crate) bench_cpu: f64,
    /// Share of the machine's CPU time that was busy, 0..1.
    pub(crate) busy: f64,
    pub(crate) first_error: Option<String>,
}

/// A connection from `source` to `dest`, through `via` (CONNECT answered 200).
pub(crate) async fn open(
    via: Via,
    source: Ipv4Addr,
    dest: &Dest,
) -> std::io::Result<tokio::net::TcpStream> {
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
pub(crate) async fn read_to_close(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
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
pub(crate) async fn one_tunnel(via: Via, source: Ipv4Addr, dest: &Dest) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut s = open(via, source, dest).await?;
    s.write_all(&dest.first).await?;
    let got = read_to_close(&mut s).await?;
    dest.answered(&got)
}

/// One tunnel held open: (CONNECT,) first bytes, the sink's answer; then the stream.
pub(crate) async fn idle_tunnel(
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
pub(crate) fn tunnels(
    via: Via,
    dests: &Arc<Vec<Dest>>,
    secs: f64,
    max: u64,
    proxy: Option<&Proc>,
) -> Tunnels {
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
