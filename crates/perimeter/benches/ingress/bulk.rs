//! Bulk: one connection uploading to the workload, which discards the bytes and answers their
//! count.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::connects::connect_from;
use crate::procs::{Proc, busy_since, cpu_seconds, machine_ticks};
use crate::source;
use crate::workload::BULK;

pub(crate) struct Bulk {
    pub(crate) bytes: u64,
    pub(crate) secs: f64,
    /// CPU seconds of the relay's process (`perimeter serve`, whose embedded gateway relays
    /// the ingress run, or HAProxy).
    pub(crate) gateway_cpu: f64,
    /// This process (client and workload).
    pub(crate) bench_cpu: f64,
    /// Share of the machine's CPU time that was busy, 0..1.
    pub(crate) busy: f64,
}

/// Upload `total` bytes to `to` (the workload, or the ingress listener in front of it) in
/// 1 MiB writes; timed from the connect to the workload's count.
pub(crate) fn bulk(to: SocketAddr, total: u64, gateway: &Proc) -> Bulk {
    let cpu0 = gateway.cpu_seconds();
    let bench0 = cpu_seconds(std::process::id());
    let ticks0 = machine_ticks();
    let start = Instant::now();
    let mut s = connect_from(source(0), to, Duration::from_secs(60)).expect("connecting for bulk");
    let mut head = vec![BULK];
    head.extend_from_slice(&total.to_le_bytes());
    s.write_all(&head).expect("writing the length");
    let chunk = vec![0u8; 1024 * 1024];
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(chunk.len() as u64) as usize;
        if let Err(e) = s.write_all(&chunk[..n]) {
            panic!("writing bulk data to {to} after {sent} bytes: {e}");
        }
        sent += n as u64;
    }
    let mut count = [0u8; 8];
    if let Err(e) = s.read_exact(&mut count) {
        let log = gateway.log_text();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        panic!(
            "the workload's byte count after {sent} bytes to {to}: {e}; {}'s log ends:\n{tail:#?}",
            gateway.name
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let got = u64::from_le_bytes(count);
    assert_eq!(got, sent, "the workload received other than what was sent");
    Bulk {
        bytes: got,
        secs,
        gateway_cpu: gateway.cpu_seconds() - cpu0,
        bench_cpu: cpu_seconds(std::process::id()) - bench0,
        busy: busy_since(ticks0),
    }
}
