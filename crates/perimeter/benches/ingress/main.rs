//! The public ingress listener against a direct connection to the workload, in one run, on
//! loopback.
//!
//! **Setup: the path users take.** `perimeter serve` (the real binary; SQLite in a temporary
//! data directory; its embedded gateway, which serves the region's public ingress listeners)
//! with one cluster. Through the API: the region's `sql` workload address set to this bench's
//! workload (`PUT .../workload`), and an IP allowlist of `BENCH_ALLOWLIST` entries (default
//! 1,000) created one POST at a time, 32 at once (the API has no bulk call): `10.x.y.0/24`
//! entries and one `127.0.0.0/8` entry with `sql` set, which admits the bench's clients. The
//! gateway keeps the entries most specific first, so every client here is judged after all the
//! /24s. The bench waits until the allowlist reads `propagating: false` (every gateway applied
//! it) and a connection through the region's `sql_ingress_address` is echoed.
//!
//! **Side by side, same conditions.** Each round measures the direct path (to the workload's
//! own address) and the ingress path (the `sql` ingress listener in front of it), in a turning
//! order, with the same client code; every comparison is the median of per-round comparisons,
//! which keeps a noisy neighbour from deciding a target. Clients bind 127.0.0.2-9 (the gateway
//! dials the workload from 127.0.0.1), so no address pair runs out of ports.
//!
//! - **Bulk**: MiB/s for one connection uploading `BENCH_BULK_MIB` (default 2048) to the
//!   workload, which discards it and answers the byte count; and `perimeter serve`'s CPU per
//!   GiB (its POSIX CPU-time clock, user + system). One congestion control for all paths: the
//!   gateway alone switches its sockets sending to a loopback peer from `bbr` to `cubic`, so on
//!   a `bbr` host the bench sets `net.ipv4.tcp_congestion_control` to `cubic` for these runs
//!   and puts the host's back after them (on exit, on a panic and on SIGINT/SIGTERM too). Target:
//!   at least 0.9x direct.
//! - **Connection setup**: connect, send one byte, receive it back from the workload (which
//!   echoes), close, timed one by one: `BENCH_SETUPS` (default 5,000) per path per round after
//!   200 not timed, on `BENCH_SETUP_CLIENTS` threads (default 1: latency without queueing
//!   behind other clients); p50 and p99, and the p50 the ingress listener adds. Target: at most
//!   50 µs added at p50.
//!
//! **The reference relay.** HAProxy, the best-known TCP proxy, runs beside them as a third
//! path (`haproxy.rs`): the same allowlist as an ACL checked on every connection, one thread per
//! core (as the gateway's accept loops), 1 MiB pipes for `splice(2)` (as the gateway), a log
//! line per connection, and its better splice setting for each measurement (always for bulk,
//! `splice-auto` for setups: two instances). Its figures and the ingress listener's against
//! them are printed on their own lines, never in a target: they show what a well-known relay
//! adds on this machine. Installed with apt-get when missing (as root); `BENCH_HAPROXY=0`, or
//! no way to run it, leaves it out.
//!
//! Every process started here is killed on exit; traffic stays on loopback; every wait is
//! bounded (a setup run by `BENCH_SETUP_SECS`, default 60).
//!
//! Modules: `serve` starts and sets up `perimeter serve`, `haproxy` the reference, `workload`
//! answers, `bulk` and `connects` measure, `report` prints figures, comparisons and targets.
//! `api`, `cc`, `cleanup`, `procs` and `stats` are the gateway bench's (`benches/gateway`).
//!
//! `cargo bench -p perimeter --bench ingress` (as root, for the congestion control).
//! Environment: `BENCH_ROUNDS` (default 5), `BENCH_BULK_MIB` (default 2048; 0 skips bulk),
//! `BENCH_SETUPS` (default 5000; 0 skips setups), `BENCH_SETUP_CLIENTS` (default 1),
//! `BENCH_SETUP_SECS` (default 60), `BENCH_ALLOWLIST` (default 1000, at most 65,537),
//! `BENCH_HAPROXY` (0 leaves the reference out).

// Shared with the gateway bench, which uses all of each; this one leaves some of it unused.
#[allow(dead_code)]
#[path = "../gateway/api.rs"]
mod api;
#[allow(dead_code)]
#[path = "../gateway/cc.rs"]
mod cc;
#[allow(dead_code)]
#[path = "../gateway/cleanup.rs"]
mod cleanup;
#[allow(dead_code)]
#[path = "../gateway/procs.rs"]
mod procs;
#[path = "../gateway/stats.rs"]
mod stats;

mod bulk;
mod connects;
mod haproxy;
mod report;
mod serve;
mod workload;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::bulk::bulk;
use crate::cc::BulkSetup;
use crate::cleanup::{CLEANUP, cleanup_on_signal};
use crate::connects::{setup_once, setups};
use crate::haproxy::{Splice, haproxy_binary, haproxy_version, start_haproxy};
use crate::procs::Proc;
use crate::report::{Figures, Setting};
use crate::serve::start_ingress;
use crate::workload::start_workload;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const REGION: &str = "us-east-1";
/// How many API requests create allowlist entries at once.
const ALLOWLIST_CONCURRENCY: usize = 32;
/// Client source addresses: 127.0.0.2 to 127.0.0.(1 + SOURCES).
const SOURCES: u8 = 8;
/// Setups made before each timed run, not timed.
const WARM_UP: u64 = 200;
const ENV: [&str; 7] = [
    "BENCH_ROUNDS",
    "BENCH_BULK_MIB",
    "BENCH_SETUPS",
    "BENCH_SETUP_CLIENTS",
    "BENCH_SETUP_SECS",
    "BENCH_ALLOWLIST",
    "BENCH_HAPROXY",
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A path to the workload: its bulk and its setups go to the same address through the same
/// process, except HAProxy's (an instance for each).
#[derive(Clone, Copy)]
struct Path<'a> {
    name: &'static str,
    bulk: (SocketAddr, &'a Proc),
    setups: (SocketAddr, &'a Proc),
}

impl<'a> Path<'a> {
    fn one(name: &'static str, to: SocketAddr, proc: &'a Proc) -> Self {
        Path {
            name,
            bulk: (to, proc),
            setups: (to, proc),
        }
    }
}

/// The client source address `i` (mod [`SOURCES`]): 127.0.0.2-9.
fn source(i: u64) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % SOURCES as u64) as u8)
}

/// Wait (30 s at most) until a setup to `to` is echoed.
fn wait_echoed(what: &str, to: SocketAddr, serve_log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match setup_once(source(0), to) {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "no echo through {what} ({to}) after 30 s: {e}; serve's log:\n{}",
                    serve_log()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; a test harness run passes other flags. Run only as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = env_u64("BENCH_ROUNDS", 5).max(1) as usize;
    let bulk_bytes = env_u64("BENCH_BULK_MIB", 2048) * 1024 * 1024;
    let count = env_u64("BENCH_SETUPS", 5000);
    let clients = env_u64("BENCH_SETUP_CLIENTS", 1).clamp(1, 64) as usize;
    let setup_secs = env_u64("BENCH_SETUP_SECS", 60).max(1) as f64;
    let entries = env_u64("BENCH_ALLOWLIST", 1000).clamp(1, 65_537);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mut command: String = ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v} ")))
        .collect();
    command.push_str("cargo bench -p perimeter --bench ingress");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cleanup_on_signal(&rt);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).dir = Some(dir.to_path_buf());

    let workload = start_workload();
    let ing = start_ingress(dir, &rt, workload, entries);
    eprintln!(
        "bench: {entries} allowlist entries created in {:.1} s, applied {:.1} s later; sql \
         ingress listener {}, workload {workload}",
        ing.allowlist_load.as_secs_f64(),
        ing.propagated.as_secs_f64(),
        ing.sql
    );
    let serve_log = || ing.serve.log_text();
    wait_echoed("the workload", workload, &serve_log);
    wait_echoed("the sql ingress listener", ing.sql, &serve_log);

    // The reference relay, unless BENCH_HAPROXY=0 or it cannot run here: one instance for bulk,
    // one for setups (`haproxy.rs` says why).
    let haproxy = if std::env::var("BENCH_HAPROXY").as_deref() == Ok("0") {
        Err("BENCH_HAPROXY=0".to_string())
    } else {
        let threads = cores.max(1);
        haproxy_binary().and_then(|bin| {
            let start = |splice| start_haproxy(dir, &bin, workload, entries, threads, splice);
            Ok((
                start(Splice::Always)?,
                start(Splice::Auto)?,
                haproxy_version(&bin),
            ))
        })
    };
    if let Err(e) = &haproxy {
        eprintln!("bench: haproxy: SKIPPED: {e}");
    }

    let bulk_setup = BulkSetup::new();
    // Each path: where its bulk and its setups go, with the process whose CPU time is counted
    // for them (on the direct path, serve's: what it spends idle beside the run).
    let mut paths: Vec<Path> = vec![
        Path::one("direct", workload, &ing.serve),
        Path::one("ingress", ing.sql, &ing.serve),
    ];
    if let Ok(((bulk_proc, bulk_addr), (setup_proc, setup_addr), _)) = &haproxy {
        paths.push(Path {
            name: "haproxy",
            bulk: (*bulk_addr, bulk_proc),
            setups: (*setup_addr, setup_proc),
        });
    }
    let mut figs: Vec<Figures> = paths.iter().map(|_| Figures::default()).collect();
    for round in 0..rounds {
        eprint!("bench: round {}/{rounds}:", round + 1);
        // The order turns each round, so no path always runs first.
        let order: Vec<usize> = (0..paths.len())
            .map(|k| (round + k) % paths.len())
            .collect();
        if bulk_bytes > 0 {
            // All on one congestion control where it can be set (restored when dropped).
            let set = bulk_setup
                .same()
                .and_then(|_| bulk_setup.override_for_bulk());
            for &i in &order {
                let Path {
                    name,
                    bulk: (to, proc),
                    ..
                } = paths[i];
                eprint!(" bulk {name}");
                figs[i].bulk.add(&bulk(to, bulk_bytes, proc));
            }
            drop(set);
        }
        if count > 0 {
            for &i in &order {
                let Path {
                    name,
                    setups: (to, proc),
                    ..
                } = paths[i];
                eprint!(" setups {name}");
                let _ = setups(to, WARM_UP.min(count), clients, setup_secs, None);
                figs[i]
                    .setups
                    .add(setups(to, count, clients, setup_secs, Some(proc)));
            }
        }
        eprintln!();
    }
    let mut figs = figs.into_iter();
    let (direct, ingress) = (figs.next().unwrap(), figs.next().unwrap());
    let reference = figs.next();
    report::print(
        &Setting {
            command,
            cores,
            entries,
            allowlist_load_secs: ing.allowlist_load.as_secs_f64(),
            propagated_secs: ing.propagated.as_secs_f64(),
            bulk_mib: bulk_bytes >> 20,
            setups: count,
            clients,
            rounds,
            bulk: bulk_setup,
            haproxy: haproxy.as_ref().ok().map(|(_, _, v)| v.clone()),
        },
        &direct,
        &ingress,
        reference.as_ref(),
    );
    drop(haproxy);
    drop(ing);
    drop(rt);
    drop(tmp);
}
