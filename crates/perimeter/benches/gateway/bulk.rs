//! Bulk: one upload through one tunnel.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::clients::Via;
use crate::procs::{Proc, busy_since, cpu_seconds, machine_ticks};

/// Send `CONNECT target` on `s` and read the answer's head; Err unless it is a 200.
pub(crate) fn connect_std(
    s: &mut TcpStream,
    target: impl std::fmt::Display,
) -> std::io::Result<()> {
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

#[derive(Default)]
pub(crate) struct Bulk {
    pub(crate) bytes: u64,
    pub(crate) secs: f64,
    pub(crate) proxy_cpu: f64,
    /// This process (client and sink).
    pub(crate) bench_cpu: f64,
    /// Share of the machine's CPU time that was busy, 0..1.
    pub(crate) busy: f64,
}

impl Bulk {
    /// Add `other`'s bytes, time and CPU to these (the busy share weighted by time).
    fn merge(&mut self, other: &Bulk) {
        let secs = self.secs + other.secs;
        if secs > 0.0 {
            self.busy = (self.busy * self.secs + other.busy * other.secs) / secs;
        }
        self.bytes += other.bytes;
        self.secs = secs;
        self.proxy_cpu += other.proxy_cpu;
        self.bench_cpu += other.bench_cpu;
    }
}

/// One round of bulk runs for the contenders in `order` (indexes into the result), `total`
/// bytes each, in `segments` uploads of a connection each, interleaved (A B C, A B C, ...):
/// a slow spell of a noisy neighbour then falls on all of them rather than on one. `run(i,
/// bytes)` uploads `bytes` for contender `i`; each contender's result sums its segments.
pub(crate) fn interleaved(
    order: &[usize],
    total: u64,
    segments: u64,
    mut run: impl FnMut(usize, u64) -> Bulk,
) -> Vec<Bulk> {
    let mut sums: Vec<Bulk> = order.iter().map(|_| Bulk::default()).collect();
    // Exactly `segments` uploads (at most one per byte), their sizes within a byte of each other.
    let segments = segments.clamp(1, total.max(1));
    let upto = |k: u64| (u128::from(total) * u128::from(k) / u128::from(segments)) as u64;
    for k in 0..segments {
        let bytes = upto(k + 1) - upto(k);
        for &i in order {
            sums[i].merge(&run(i, bytes));
        }
    }
    sums
}

/// Upload `total` bytes through `via` to the bulk sink.
pub(crate) fn bulk(via: Via, sink: SocketAddr, total: u64, proxy: Option<&Proc>) -> Bulk {
    bulk_to(via, sink, &sink.to_string(), total, proxy)
}

/// [`bulk`], the proxy asked to `CONNECT connect` (a name that reaches the sink).
pub(crate) fn bulk_to(
    via: Via,
    sink: SocketAddr,
    connect: &str,
    total: u64,
    proxy: Option<&Proc>,
) -> Bulk {
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
        connect_std(&mut s, connect).expect("CONNECT to the bulk sink");
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
