//! Connection setup: connect, send one byte, receive it back from the workload, close; timed
//! one by one, on the same client code for the direct path and the ingress listener.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, setsockopt, socket, sockopt,
};

use crate::procs::{Proc, busy_since, cpu_seconds, machine_ticks};
use crate::workload::PING;
use crate::{SOURCES, source};

/// Longest connect, write or read of one setup.
const STEP_BOUND: Duration = Duration::from_secs(10);
/// A run stops after this many failed setups.
const MAX_ERRORS: u64 = 100;

/// A TCP connection to `to` from the loopback address `from` (its port picked at connect time,
/// by the 4-tuple), with TCP_NODELAY; connect, reads and writes bounded by `bound`.
pub(crate) fn connect_from(
    from: Ipv4Addr,
    to: SocketAddr,
    bound: Duration,
) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else {
        return Err(std::io::Error::other(format!("not an IPv4 address: {to}")));
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
    setsockopt(&fd, sockopt::TcpNoDelay, &true)?;
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )?;
    let s = TcpStream::from(fd);
    // SO_SNDTIMEO bounds a blocking connect too (Linux).
    s.set_write_timeout(Some(bound))?;
    s.set_read_timeout(Some(bound))?;
    connect(s.as_raw_fd(), &SockaddrIn::from(to))?;
    Ok(s)
}

/// One setup from `from` to `to`: its duration, from before the socket is made to after it is
/// closed.
pub(crate) fn setup_once(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<Duration> {
    let started = Instant::now();
    let mut s = connect_from(from, to, STEP_BOUND)?;
    s.write_all(&[PING])?;
    let mut got = [0u8; 1];
    s.read_exact(&mut got)?;
    if got[0] != PING {
        return Err(std::io::Error::other(format!(
            "the workload answered {:?}",
            got[0]
        )));
    }
    drop(s);
    Ok(started.elapsed())
}

/// The setups of one run.
pub(crate) struct Setups {
    /// Each setup's duration, in nanoseconds, sorted.
    pub(crate) ns: Vec<u64>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// CPU seconds of the process the connections went through (`perimeter serve`, whose
    /// embedded gateway serves the ingress listener, or HAProxy).
    pub(crate) gateway_cpu: f64,
    /// CPU seconds of this process (clients and workload).
    pub(crate) bench_cpu: f64,
    /// Share of the machine's CPU time that was busy, 0..1.
    pub(crate) busy: f64,
}

impl Setups {
    /// The `q` quantile (0..1) of the setups' durations, in µs.
    pub(crate) fn quantile_us(&self, q: f64) -> f64 {
        if self.ns.is_empty() {
            return f64::NAN;
        }
        let i = ((self.ns.len() as f64 * q) as usize).min(self.ns.len() - 1);
        self.ns[i] as f64 / 1e3
    }
}

/// `count` setups to `to` (fewer if `secs` pass first), spread over `clients` threads, each
/// doing one at a time; sources turn over 127.0.0.2-9 so that no address pair runs short of
/// ports.
pub(crate) fn setups(
    to: SocketAddr,
    count: u64,
    clients: usize,
    secs: f64,
    gateway: Option<&Proc>,
) -> Setups {
    let clients = clients.max(1);
    let cpu0 = gateway.map(Proc::cpu_seconds).unwrap_or(0.0);
    let bench0 = cpu_seconds(std::process::id());
    let ticks0 = machine_ticks();
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let per_thread: Vec<(Vec<u64>, u64, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|t| {
                scope.spawn(move || {
                    let mine =
                        count / clients as u64 + u64::from((t as u64) < count % clients as u64);
                    let mut ns = Vec::with_capacity(mine as usize);
                    let mut errors = 0u64;
                    let mut first_error = None;
                    for k in 0..mine {
                        if Instant::now() >= deadline || errors >= MAX_ERRORS {
                            break;
                        }
                        let from = source((t as u64 + k * clients as u64) % SOURCES as u64);
                        match setup_once(from, to) {
                            Ok(d) => ns.push(d.as_nanos() as u64),
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (ns, errors, first_error)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a setup client panicked"))
            .collect()
    });
    let gateway_cpu = gateway.map(Proc::cpu_seconds).unwrap_or(0.0) - cpu0;
    let bench_cpu = cpu_seconds(std::process::id()) - bench0;
    let busy = busy_since(ticks0);
    let mut out = Setups {
        ns: Vec::with_capacity(count as usize),
        errors: 0,
        first_error: None,
        gateway_cpu,
        bench_cpu,
        busy,
    };
    for (ns, errors, first_error) in per_thread {
        out.ns.extend(ns);
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.ns.sort_unstable();
    out
}
