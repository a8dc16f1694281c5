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
//!   answer, close; tunnels per second and the proxy's CPU µs per tunnel (its POSIX CPU-time
//!   clock, user + system, to the nanosecond). Clients bind 127.0.0.1-8 and the sinks listen
//!   on 127.0.0.1-8, so no address pair runs out of ports.
//!   - *IP path*: `CONNECT 127.0.0.N:PORT` (the CIDR rule admits it), one small HTTP request
//!     (`connection: close`) and reply. The gateway checks HTTP inside a tunnel request by
//!     request, so it forwards this one as a request of its own.
//!   - *Name path*: `CONNECT sink-N.bench.test:PORT`, resolved by the proxy, then a TLS 1.3
//!     ClientHello whose SNI is that name (built once per name, laid out as OpenSSL's) and a
//!     7-byte TLS alert back from the sink. The gateway checks the SNI against the name; the
//!     bench makes sure a mismatch closes the tunnel before it measures.
//! - **Bulk**: MiB/s through one tunnel (the client uploads, the sink discards) and the proxy's
//!   CPU per GiB. A round's `BENCH_BULK_MIB` per contender goes in `BENCH_BULK_SEGMENTS`
//!   (default 8) uploads of a connection each, interleaved across the contenders (A B C, A B C,
//!   ...), so a neighbour's slow spell falls on all of them rather than on one; each
//!   contender's round figure sums its segments. One congestion control for all three: the
//!   gateway alone switches its sockets sending to a loopback peer from `bbr` to `cubic`
//!   (`unpaced_on_loopback` in the relay), so on a `bbr` host the bench sets
//!   `net.ipv4.tcp_congestion_control` to `cubic` for these runs (and puts the host's back after each, on exit, on a panic and on SIGINT/SIGTERM).
//!   Every socket then runs `cubic` and the tweak has nothing to do. The same runs under the
//!   host's own setting show the tweak's effect, printed on a line of its own and never in the
//!   ratio.
//! - **Private endpoint forwarder**: the bulk sink registered as an endpoint service, the
//!   cluster's endpoint to it AVAILABLE, and the same upload as `CONNECT
//!   <endpoint_address>:PORT` through the gateway, in the same-cc runs, taking its turn in the
//!   order beside the others: its MiB/s against direct (target >= 0.9x) and its CPU per GiB
//!   against the egress path's (target <= 1x).
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
//! Modules: `perimeter` (control plane, rules, gateway) and `squid` start the proxies, `procs`
//! watches them, `sinks` answer, `hello` builds the ClientHello, `clients` open tunnels, `bulk`
//! and `idle` measure those (`forwarder` sets up the private endpoint bulk also goes through),
//! `report` prints figures, ratios and targets, and `cleanup` undoes what the bench changed on
//! the host. `api` (the REST API), `cc` (congestion control), `cleanup`, `procs` and `stats`
//! (medians, ratios, targets) are shared with the ingress and inspection benches
//! (`benches/ingress`, `benches/inspection`).
//!
//! `cargo bench -p perimeter --bench gateway` (as root: Squid's install, the congestion control,
//! descriptors). Environment: `BENCH_ROUNDS` (default 5), `BENCH_TUNNEL_SECS` (default 3; 0
//! skips tunnels), `BENCH_BULK_MIB` (default 4096; 0 skips bulk), `BENCH_BULK_SEGMENTS`
//! (default 8), `BENCH_RULES` (default 100000), `BENCH_IDLE_TUNNELS` (default 10000; 0 skips),
//! `BENCH_SQUID_ACCESS_LOG=0` (Squid without its access log).

mod api;
mod bulk;
mod cc;
mod cleanup;
mod clients;
mod forwarder;
mod hello;
mod idle;
mod perimeter;
mod procs;
mod report;
mod sinks;
mod squid;
mod stats;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bulk::{bulk, bulk_to, interleaved};
use crate::cc::BulkSetup;
use crate::cleanup::{CLEANUP, cleanup_on_signal, raise_nofile};
use crate::clients::{PathKind, Via, dests, tunnels};
use crate::forwarder::forwarder_target;
use crate::idle::idle_tunnels;
use crate::perimeter::{rule_to_active, sni_mismatch_refused, start_perimeter, wait_ready};
use crate::procs::Proc;
use crate::report::{Figures, Report, Setting};
use crate::sinks::{idle_sinks_main, sinks, start_idle_sinks};
use crate::squid::{squid_binary, start_squid};

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
    let segments = env_u64("BENCH_BULK_SEGMENTS", 8).max(1);
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
    // The log is written by a writer thread of its own: its lines come a moment later.
    let logged = Instant::now() + Duration::from_secs(10);
    while !p.gateway.log_text().contains("perimeter::decision") {
        assert!(
            Instant::now() < logged,
            "the gateway's log holds no decision line after 10 s:\n{}",
            p.gateway.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    // The private endpoint forwarder, measured in the bulk runs beside the others.
    let forwarder = (bulk_bytes > 0).then(|| forwarder_target(&p, &rt, sinks.bulk));
    let mut forwarder_figs = Figures::default();
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
                let set = bulk_setup.override_for_bulk();
                // The forwarder takes its turn in the order too (slot `n`).
                let slots = n + usize::from(forwarder.is_some());
                let order: Vec<usize> = (0..slots).map(|i| (i + round) % slots).collect();
                eprint!(" bulk-same");
                let sums = interleaved(&order, bulk_bytes, segments, |i, bytes| {
                    match (i == n, &forwarder) {
                        (true, Some(target)) => {
                            let via = Via::Proxy(p.proxy);
                            bulk_to(via, sinks.bulk, target, bytes, Some(&p.gateway))
                        }
                        _ => bulk(cs[i].via, sinks.bulk, bytes, cs[i].proc_),
                    }
                });
                for (i, b) in sums.iter().enumerate() {
                    match cs.get_mut(i) {
                        Some(c) => c.figs.bulk_same.add(b),
                        None => forwarder_figs.bulk_same.add(b),
                    }
                }
                drop(set);
            }
            if bulk_setup.set_cc.is_some() || bulk_setup.same().is_none() {
                eprint!(" bulk-host");
                let sums = interleaved(&order, bulk_bytes, segments, |i, bytes| {
                    bulk(cs[i].via, sinks.bulk, bytes, cs[i].proc_)
                });
                for (c, b) in cs.iter_mut().zip(&sums) {
                    c.figs.bulk_host.add(b);
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
        forwarder: &forwarder_figs,
        set: Setting {
            cores,
            rules,
            rules_load: p.rules_load,
            ready,
            bulk_mib: bulk_bytes >> 20,
            bulk_segments: segments,
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
