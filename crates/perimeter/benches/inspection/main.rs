//! TLS inspection against splicing the same TLS traffic, in one run, through the real gateway.
//!
//! **Setup: the path workloads take.** `perimeter serve` (SQLite in a temporary data directory,
//! its secrets key made fresh in the data directory, no embedded gateway) and `perimeter gateway` as its own process,
//! on one worker thread (`--worker-threads 1`), logging as deployed (the decision log at info
//! level into its log file), its metrics on `--metrics-listen`. One cluster under DEFAULT_DENY
//! with three FQDN rules on port 443, created through the API: `inspected.test` with paths
//! (`/api/*`), `spliced.test` without paths, and `*.bench.test` with paths (the leaf cache run).
//! Then `PUT .../networking/tls-inspection {"enabled": true}`, a poll until it reads
//! `propagating: false`, and the cluster's CA from `.../tls-inspection/ca.pem`. A destination
//! that only path rules allow is inspected (the gateway terminates TLS with a leaf it mints for
//! the name and forwards each request over its own TLS connection); one allowed without paths is
//! spliced (a plain CONNECT tunnel, TLS end to end to the upstream).
//!
//! **One upstream, outside loopback.** Both names (and `n-K.bench.test`) resolve through the
//! gateway's `--hosts-file` to one HTTPS upstream of this bench (keep-alive HTTP/1.1 over rustls
//! with its own self-signed certificate, which the gateway trusts through `--upstream-ca-file`;
//! every GET answered `200` with a 2-byte body). It runs in a network namespace the bench creates
//! (this binary with `--upstream`, on 198.51.100.226:443 behind a veth pair), not on loopback:
//! the address guard refuses loopback unless a CIDR rule covers it and the port, and a CIDR
//! rule covering the address allows any path: the gateway would splice `inspected.test` through
//! it. The documentation range is no special address, so no CIDR rule is needed. Clients and
//! the gateway talk over loopback; nothing leaves the machine. This needs root (`ip netns`,
//! veth).
//!
//! **Honest clients.** Each client makes a CONNECT, then a TLS handshake inside the tunnel
//! (rustls, no session resumption) trusting only the cluster's CA on the inspected name and only
//! the upstream's certificate on the spliced one, so a handshake that succeeds proves which path
//! it took; then GETs on the same connection, each timed. Before measuring, the bench checks
//! both trusts the other way round fail and that an inspected GET outside `/api/*` gets its 403
//! inside TLS. Each round measures both paths in a turning order, with the same client code:
//!
//! - **Load**: `BENCH_CLIENTS` (default 8) keep-alive sessions per path, `BENCH_SECS` (default 2)
//!   counted after 0.3 s not counted: requests per second, their p50 and p99 under load, and the
//!   gateway's CPU per request (its POSIX CPU-time clock). Target: inspected at least 0.5x
//!   spliced.
//! - **Latency**: one session, GETs one after the other for `BENCH_LATENCY_SECS` (default 1):
//!   the request p50 and p99; the p50 inspection adds is inspected minus spliced. Target: at
//!   most 1 ms added.
//! - **Setup**: `BENCH_SETUPS` (default 200) new sessions one at a time: the CONNECT answered,
//!   CONNECT + handshake, and the first response (an inspected tunnel dials the upstream and
//!   makes its own TLS handshake there only for the first request).
//!
//! Every comparison is the median of per-round comparisons, which keeps a noisy neighbour from
//! deciding a target. The leaf cache hit rate is the gateway's
//! `perimeter_inspection_leaf_cache_total{result}` over every inspected session up to the end of
//! the rounds (the checks' sessions included, the first one a miss); then `BENCH_NAMES` (default
//! 200) names `n-K.bench.test`, one session each, twice: the first pass mints a leaf per name
//! (misses), the second finds them (hits), with the setup p50 of each.
//!
//! Every process started here is killed on exit, the namespace removed (on SIGINT/SIGTERM too);
//! every wait is bounded.
//!
//! Modules: `net` makes the namespace and starts `upstream` in it, `perimeter` starts and sets up
//! the control plane and the gateway, `clients` open sessions and measure, `report` prints the
//! figures and targets. `api`, `cc`, `cleanup`, `procs` and `stats` are the gateway bench's
//! (`benches/gateway`).
//!
//! `cargo bench -p perimeter --bench inspection` (as root). Environment: `BENCH_ROUNDS` (default
//! 5), `BENCH_SECS` (2), `BENCH_CLIENTS` (8), `BENCH_LATENCY_SECS` (1), `BENCH_SETUPS` (200),
//! `BENCH_NAMES` (200).

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

mod clients;
mod net;
mod perimeter;
mod report;
mod upstream;

use std::time::{Duration, Instant};

use crate::cleanup::{CLEANUP, cleanup_on_signal};
use crate::clients::{Dest, Session, client_config, latency, load, setups};
use crate::net::{UPSTREAM, start_net};
use crate::perimeter::start_perimeter;
use crate::report::{Figures, NamesRun, Setting};
use crate::upstream::upstream_main;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
/// The upstream's port, and the rules'.
const PORT: u16 = 443;
const INSPECTED: &str = "inspected.test";
const SPLICED: &str = "spliced.test";
/// The leaf cache run's names are `n-K.bench.test`.
const NAMES_DOMAIN: &str = "bench.test";
/// What every client asks for: inside the inspected rule's `/api/*`.
const REQUEST_PATH: &str = "/api/x";
/// Warm-up of a load run, not counted.
const WARMUP_SECS: f64 = 0.3;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Poll `f` every 100 ms until it succeeds, for `secs` at most; panics with the last error.
fn until_ok<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => panic!("{what}: not after {secs} s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// One session to `dest` and one GET; its status.
fn one_get(
    rt: &tokio::runtime::Runtime,
    proxy: std::net::SocketAddr,
    dest: &Dest,
) -> Result<u16, String> {
    rt.block_on(async {
        let (mut s, _) = Session::open(proxy, dest).await?;
        s.get().await
    })
    .map_err(|e| e.to_string())
}

fn main() {
    // `--upstream`: this binary started by itself, as the HTTPS upstream in the namespace.
    if std::env::args().any(|a| a == "--upstream") {
        upstream_main();
        return;
    }
    // `cargo bench` passes --bench; a test harness run passes other flags. Run only as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = env_u64("BENCH_ROUNDS", 5).max(1) as usize;
    let load_secs = env_u64("BENCH_SECS", 2).max(1) as f64;
    let clients = env_u64("BENCH_CLIENTS", 8).max(1) as usize;
    let latency_secs = env_u64("BENCH_LATENCY_SECS", 1).max(1) as f64;
    let n_setups = env_u64("BENCH_SETUPS", 200).max(1) as usize;
    let n_names = env_u64("BENCH_NAMES", 200).max(1) as usize;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let started = Instant::now();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    cleanup_on_signal(&rt);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path();
    CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).dir = Some(dir.to_path_buf());

    let wildcard = format!("*.{NAMES_DOMAIN}");
    let net = start_net(dir, &[INSPECTED, SPLICED, &wildcard]);
    let hosts = dir.join("hosts");
    let names: Vec<String> = (0..n_names)
        .map(|k| format!("n-{k}.{NAMES_DOMAIN}"))
        .collect();
    let lines: String = [INSPECTED, SPLICED]
        .into_iter()
        .chain(names.iter().map(String::as_str))
        .map(|n| format!("{UPSTREAM} {n}\n"))
        .collect();
    std::fs::write(&hosts, lines).unwrap();
    let p = start_perimeter(dir, &rt, &hosts, &net.cert);
    let proxy = p.proxy;

    let upstream_pem = std::fs::read(&net.cert).expect("the upstream's certificate");
    let upstream_trust = client_config(&upstream_pem);
    let spliced = Dest::new("spliced", SPLICED, upstream_trust.clone());
    until_ok("a spliced GET through the gateway", 60, || {
        match one_get(&rt, proxy, &spliced)? {
            200 => Ok(()),
            st => Err(format!("answered {st}")),
        }
    });
    let (ca, propagated) = p.enable_inspection(&rt);
    // From before the first inspected session: its leaf is the first miss.
    let cache0 = p.leaf_cache(&rt);
    let cluster_trust = client_config(ca.as_bytes());
    let inspected = Dest::new("inspected", INSPECTED, cluster_trust.clone());
    until_ok(
        "an inspected GET through the gateway",
        30,
        || match one_get(&rt, proxy, &inspected)? {
            200 => Ok(()),
            st => Err(format!("answered {st}")),
        },
    );
    // Which path each name takes: the other trust fails the handshake...
    for (dest, trust, what) in [
        (&inspected, &upstream_trust, "the upstream's certificate"),
        (&spliced, &cluster_trust, "the cluster's CA"),
    ] {
        let mut wrong = dest.clone();
        wrong.tls = trust.clone();
        if let Ok(st) = one_get(&rt, proxy, &wrong) {
            panic!(
                "{}: a client trusting only {what} got {st}: the path is not what the bench measures",
                dest.name
            );
        }
    }
    // ... and inside an inspected session each request is decided: a path outside /api/* is
    // refused there.
    let mut outside = inspected.clone();
    outside.path = "/other";
    match one_get(&rt, proxy, &outside) {
        Ok(403) => {}
        other => panic!("GET /other on {INSPECTED}: {other:?}, not 403"),
    }
    // The log is written by a writer thread of its own: its lines come a moment later.
    until_ok("the gateway's decision log", 10, || {
        let log = p.gateway.log_text();
        if log.contains("perimeter::decision") {
            Ok(())
        } else {
            Err(format!("no decision line in:\n{log}"))
        }
    });
    let ready = started.elapsed();
    eprintln!(
        "bench: set up in {:.1} s (inspection applied {} ms after the PUT)",
        ready.as_secs_f64(),
        propagated.as_millis()
    );

    let paths = [&spliced, &inspected];
    let mut figs = [Figures::default(), Figures::default()];
    for round in 0..rounds {
        eprint!("bench: round {}/{rounds}:", round + 1);
        // The order turns each round, so neither path always runs first.
        let order: Vec<usize> = (0..2).map(|i| (i + round) % 2).collect();
        for &i in &order {
            eprint!(" load {}", paths[i].label);
            let l = load(
                &rt,
                proxy,
                paths[i],
                clients,
                WARMUP_SECS,
                load_secs,
                &p.gateway,
            );
            figs[i].add_load(l);
        }
        for &i in &order {
            eprint!(" latency {}", paths[i].label);
            let lat = latency(&rt, proxy, paths[i], latency_secs, 1_000_000);
            figs[i].add_latency(&lat);
        }
        for &i in &order {
            eprint!(" setups {}", paths[i].label);
            let s = setups(
                &rt,
                proxy,
                std::slice::from_ref(paths[i]),
                n_setups,
                30.0,
                &p.gateway,
            );
            figs[i].add_setups(s);
        }
        eprintln!();
    }
    let cache1 = p.leaf_cache(&rt);

    eprintln!("bench: {n_names} names, twice");
    let name_dests: Vec<Dest> = names
        .iter()
        .map(|n| Dest::new("name", n, cluster_trust.clone()))
        .collect();
    let before = p.leaf_cache(&rt);
    let first_setups = setups(&rt, proxy, &name_dests, n_names, 60.0, &p.gateway);
    let mid = p.leaf_cache(&rt);
    let again_setups = setups(&rt, proxy, &name_dests, n_names, 60.0, &p.gateway);
    let after = p.leaf_cache(&rt);
    let delta = |a: (u64, u64), b: (u64, u64)| (b.0 - a.0, b.1 - a.1);

    let [spliced_figs, inspected_figs] = &figs;
    report::print(
        &Setting {
            cores,
            rounds,
            clients,
            load_secs,
            latency_secs,
            setups: n_setups,
            propagated_ms: propagated.as_secs_f64() * 1000.0,
            leaf_cache: delta(cache0, cache1),
        },
        spliced_figs,
        inspected_figs,
        &NamesRun {
            names: n_names,
            first: delta(before, mid),
            again: delta(mid, after),
            first_setups,
            again_setups,
        },
    );
    eprintln!("bench: done in {:.1} s", started.elapsed().as_secs_f64());
    drop(p);
    drop(net);
    drop(rt);
}
