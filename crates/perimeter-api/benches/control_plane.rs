//! Control plane benchmark: throughput and latency of LIST, GET and CREATE under 32 concurrent
//! clients, against the real server over loopback sockets, on the embedded SQLite store.
//!
//! `cargo bench -p perimeter-api --bench control_plane`
//!
//! The server runs as `perimeter serve` does (SQLite store, Prometheus recorder, reconciler, no
//! rate limit) on its own Tokio runtime, as if it were a separate process on the same machine;
//! the 32 clients run on another runtime, each with its own keep-alive HTTP/1.1 connection.
//! Every phase is a 1 s warm-up then a timed measurement; latency is measured per request from
//! send to the last byte of the response body.
//!
//! Environment:
//! - `PERIMETER_BENCH_SECONDS`: measurement time of each phase (default 5).
//! - `PERIMETER_BENCH_PHASES`: comma-separated subset of `list,get,mixed,create,create-normal`
//!   (default all), e.g. to profile one phase; `mixed` lists rules from 28 clients while 4
//!   others create rules, so that every write invalidates the list cache under load; `diag` adds a breakdown of where a read's time
//!   goes (HTTP without the store, and the store calls of a list made in process).
//! - `PERIMETER_BENCH_DIR`: directory for the databases (default the system temp dir).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use perimeter_api::auth::{CLUSTER_ADMIN, ORG_ADMIN, PLATFORM_OPERATOR};
use perimeter_api::reconcile::{Reconciler, ReconcilerConfig};
use perimeter_api::{AppState, generate_key, hash_secret};
use perimeter_store::{Durability, PageRequest, RoleBinding, Store};

/// The allocator the `perimeter` binary uses, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 32;
const PRELOADED_RULES: usize = 50;
const WARMUP: Duration = Duration::from_secs(1);
const DEFAULT_MEASURE_SECS: f64 = 5.0;
const TARGET_RPS: f64 = 3000.0;
const TARGET_P99_MS: f64 = 10.0;
/// Clients creating rules during the mixed phase; the others list.
const MIXED_WRITERS: usize = 4;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let measure = std::env::var("PERIMETER_BENCH_SECONDS")
        .ok()
        .map(|s| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("PERIMETER_BENCH_SECONDS={s:?} is not a positive number"))
        })
        .transpose()?
        .unwrap_or(DEFAULT_MEASURE_SECS);
    let measure = Duration::from_secs_f64(measure);
    let phases: Vec<String> = std::env::var("PERIMETER_BENCH_PHASES")
        .unwrap_or_else(|_| "list,get,mixed,create,create-normal".into())
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for p in &phases {
        if !["list", "get", "mixed", "create", "create-normal", "diag"].contains(&p.as_str()) {
            return Err(format!(
                "PERIMETER_BENCH_PHASES: unknown phase {p:?}; use list,get,mixed,create,create-normal,diag"
            )
            .into());
        }
    }
    let want = |p: &str| phases.iter().any(|x| x == p);
    let base_dir = std::env::var_os("PERIMETER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);

    // One process-wide recorder, as `perimeter serve` installs.
    let metrics = perimeter_api::install_metrics()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("perimeter control plane benchmark");
    println!(
        "  {cores} cores; {CLIENTS} concurrent clients, each with its own keep-alive HTTP/1.1 connection over loopback"
    );
    println!(
        "  each phase: {:.0} s warm-up, then {:.1} s measured (PERIMETER_BENCH_SECONDS)",
        WARMUP.as_secs_f64(),
        measure.as_secs_f64()
    );

    let clients = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results: Vec<(String, Stats)> = Vec::new();

    if want("list") || want("get") || want("mixed") || want("create") || want("diag") {
        let srv = Server::start(&base_dir, Durability::Full, metrics.clone())?;
        let fx = clients.block_on(setup(&srv))?;
        println!(
            "  store: embedded SQLite, durability FULL (fsync every commit), {}",
            srv.db_path
        );
        println!(
            "  cluster {} with {PRELOADED_RULES} egress rules; list returns {} rules ({} bytes)",
            fx.cluster_id, fx.listed, fx.list_bytes
        );
        println!();
        print_header();
        if want("list") {
            let s = clients.block_on(run_phase(&srv, &fx, Op::List, measure));
            print_row("list egress rules [FULL]", &s);
            results.push(("list".into(), s));
        }
        if want("get") {
            let s = clients.block_on(run_phase(&srv, &fx, Op::Get, measure));
            print_row("get cluster [FULL]", &s);
            results.push(("get".into(), s));
        }
        if want("mixed") {
            let (lists, writes) = clients.block_on(run_mixed(&srv, &fx, measure));
            print_row("list while rules are written [FULL]", &lists);
            print_row("  create meanwhile [FULL]", &writes);
            results.push(("mixed list".into(), lists));
            results.push(("mixed create".into(), writes));
        }
        if want("create") {
            let s = clients.block_on(run_phase(&srv, &fx, Op::Create, measure));
            print_row("create egress rule [FULL]", &s);
            results.push(("create FULL".into(), s));
        }
        if want("diag") {
            println!();
            println!("diagnosis: where a read's time goes ({CLIENTS} concurrent callers each)");
            print_header();
            for (name, s) in clients.block_on(diagnose(&srv, &fx, measure)) {
                print_row(&name, &s);
                if let Some(e) = &s.first_error {
                    println!("  first error: {e}");
                }
            }
        }
        srv.stop();
    }
    if want("create-normal") {
        let srv = Server::start(&base_dir, Durability::Normal, metrics.clone())?;
        let fx = clients.block_on(setup(&srv))?;
        if results.is_empty() {
            print_header();
        }
        let s = clients.block_on(run_phase(&srv, &fx, Op::Create, measure));
        print_row("create egress rule [NORMAL]", &s);
        results.push(("create NORMAL".into(), s));
        srv.stop();
    }

    println!();
    for (name, s) in &results {
        if let Some(e) = &s.first_error {
            println!("  first error in {name}: {e}");
        }
    }
    println!(
        "summary (target on 2-core machines: >= {TARGET_RPS:.0} req/s for GETs, p99 <= {TARGET_P99_MS:.0} ms; store durability FULL unless noted):"
    );
    for (name, s) in &results {
        let rps = s.rps();
        let p99 = ms(s.pct(0.99));
        if name == "list" || name == "get" || name == "mixed list" {
            let ok = rps >= TARGET_RPS && p99 <= TARGET_P99_MS && s.errors == 0;
            println!(
                "{name}: {rps:.0} req/s (target {TARGET_RPS:.0}: {:.2}x), p99 {p99:.1} ms (target {TARGET_P99_MS:.0} ms) -> {}",
                rps / TARGET_RPS,
                if ok { "MEETS TARGET" } else { "MISSES TARGET" }
            );
        } else {
            println!("{name}: {rps:.0} req/s, p99 {p99:.1} ms (no target for writes)");
        }
    }
    let noisy: Vec<&str> = results
        .iter()
        .filter(|(_, s)| s.cpu.is_some_and(|(own, host)| host - own > 0.10))
        .map(|(n, _)| n.as_str())
        .collect();
    if !noisy.is_empty() {
        println!(
            "note: other processes used more than 10% of the host's CPU during {}: those figures are pessimistic",
            noisy.join(", ")
        );
    }
    let full = results.iter().find(|(n, _)| n == "create FULL");
    let normal = results.iter().find(|(n, _)| n == "create NORMAL");
    if let (Some((_, f)), Some((_, n))) = (full, normal) {
        println!(
            "create NORMAL vs FULL: throughput {:.2}x, p99 {:.2}x ({:.0} vs {:.0} req/s, {:.1} vs {:.1} ms)",
            n.rps() / f.rps().max(f64::MIN_POSITIVE),
            ms(n.pct(0.99)) / ms(f.pct(0.99)).max(f64::MIN_POSITIVE),
            n.rps(),
            f.rps(),
            ms(n.pct(0.99)),
            ms(f.pct(0.99)),
        );
    }
    Ok(())
}

/// The API server on its own runtime and thread, with its store in a temporary directory.
struct Server {
    base: String,
    secret: String,
    key_id: String,
    /// The server's store, for calling it in process (diagnosis).
    store: Store,
    db_path: String,
    stop: tokio::sync::watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(
        base_dir: &std::path::Path,
        durability: Durability,
        metrics: PrometheusHandle,
    ) -> Result<Server, BoxError> {
        let dir = tempfile::Builder::new()
            .prefix("perimeter-bench-")
            .tempdir_in(base_dir)?;
        let data_dir = dir.path().to_path_buf();
        let db_path = data_dir.join("perimeter.db").display().to_string();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) =
            std::sync::mpsc::channel::<Result<(String, String, String, Store), String>>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("bench-server-worker")
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("building the server runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let started = async {
                        let store = Store::open_sqlite(&data_dir, durability).await?;
                        let roles: Vec<RoleBinding> = [ORG_ADMIN, CLUSTER_ADMIN, PLATFORM_OPERATOR]
                            .iter()
                            .map(|r| RoleBinding {
                                role: (*r).into(),
                                resource_type: "ORGANIZATION".into(),
                                resource_id: String::new(),
                            })
                            .collect();
                        let (id, secret) = generate_key();
                        if !store
                            .bootstrap_admin(&roles, &id, &hash_secret(&secret))
                            .await?
                        {
                            return Err::<_, BoxError>("bootstrap_admin found accounts".into());
                        }
                        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                        let addr = listener.local_addr()?;
                        Ok((store, listener, format!("http://{addr}"), id, secret))
                    }
                    .await;
                    let (store, listener, base, key_id, secret) = match started {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("starting the server: {e}")));
                            return;
                        }
                    };
                    let state = AppState::new(store.clone()).with_metrics(metrics);
                    let mut rx = stop_rx.clone();
                    let reconciler = tokio::spawn(
                        Reconciler::new(
                            store.clone(),
                            state.reconcile.clone(),
                            ReconcilerConfig::default(),
                        )
                        .run(async move {
                            let _ = rx.wait_for(|s| *s).await;
                        }),
                    );
                    let mut rx = stop_rx;
                    let server = tokio::spawn(perimeter_api::serve(listener, state, async move {
                        let _ = rx.wait_for(|s| *s).await;
                    }));
                    let _ = ready_tx.send(Ok((base, key_id, secret, store.clone())));
                    match server.await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => eprintln!("bench: server ended with an error: {e}"),
                        Err(e) => eprintln!("bench: server task failed: {e}"),
                    }
                    let _ = reconciler.await;
                    store.close().await;
                });
            })?;
        let (base, key_id, secret, store) = ready_rx
            .recv()
            .map_err(|_| "the server thread ended before it was ready")??;
        Ok(Server {
            base,
            secret,
            key_id,
            store,
            db_path,
            stop,
            thread,
            _dir: dir,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(true);
        if self.thread.join().is_err() {
            eprintln!("bench: the server thread panicked");
        }
    }
}

/// What the phases work on: one cluster with its pre-loaded rules.
struct Fixture {
    cluster_id: String,
    listed: usize,
    list_bytes: usize,
    /// Names of created rules: `r-<n>`.
    next_rule: Arc<AtomicU64>,
}

fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
}

async fn setup(srv: &Server) -> Result<Fixture, BoxError> {
    let c = client()?;
    let auth = format!("Bearer {}", srv.secret);
    let resp = c
        .post(format!("{}/api/v1/clusters", srv.base))
        .header("authorization", &auth)
        .header("content-type", "application/json")
        .body(r#"{"name":"bench-cluster","provider":"AWS","spec":{"dedicated":{"region_nodes":{"us-east-1":3}}}}"#)
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await?)?;
    if status != 200 {
        return Err(format!("creating the cluster: {status} {body}").into());
    }
    let cluster_id = body["id"]
        .as_str()
        .ok_or("the created cluster has no id")?
        .to_string();
    for i in 0..PRELOADED_RULES {
        let resp = c
            .post(format!(
                "{}/api/v1/clusters/{cluster_id}/networking/egress-rules",
                srv.base
            ))
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"name":"pre-{i:03}","type":"FQDN","destination":"pre{i}.example.com","ports":[443],"description":"preloaded"}}"#
            ))
            .send()
            .await?;
        let status = resp.status();
        if status != 200 {
            return Err(format!("pre-loading rule {i}: {status} {}", resp.text().await?).into());
        }
    }
    let resp = c
        .get(format!(
            "{}/api/v1/clusters/{cluster_id}/networking/egress-rules",
            srv.base
        ))
        .header("authorization", &auth)
        .send()
        .await?;
    let bytes = resp.bytes().await?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)?;
    let listed = body["rules"].as_array().map_or(0, Vec::len);
    if listed != PRELOADED_RULES {
        return Err(format!("list returned {listed} rules, expected {PRELOADED_RULES}").into());
    }
    Ok(Fixture {
        cluster_id,
        listed,
        list_bytes: bytes.len(),
        next_rule: Arc::new(AtomicU64::new(0)),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Get,
    Create,
}

#[derive(Default)]
struct Stats {
    /// Latencies of the measured requests (errors included), in nanoseconds, sorted.
    lat: Vec<u64>,
    errors: u64,
    elapsed: Duration,
    first_error: Option<String>,
    /// CPU used by this process and by the whole host during the measurement, as fractions of
    /// all cores (Linux only): a host much busier than this process means other load on the
    /// machine skewed the figures.
    cpu: Option<(f64, f64)>,
}

impl Stats {
    fn requests(&self) -> usize {
        self.lat.len()
    }

    fn rps(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Nearest-rank percentile.
    fn pct(&self, q: f64) -> u64 {
        if self.lat.is_empty() {
            return 0;
        }
        let rank = (q * self.lat.len() as f64).ceil() as usize;
        self.lat[rank.clamp(1, self.lat.len()) - 1]
    }
}

/// One request (or store call): Ok, or Err(what went wrong).
type Call = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// A client: makes its next call each time it is invoked.
type Worker = Box<dyn FnMut() -> Call + Send>;

/// A client over its own keep-alive connection sending `op`.
fn http_worker(srv: &Server, fx: &Fixture, op: Op) -> Result<Worker, BoxError> {
    let c = client()?;
    let auth = format!("Bearer {}", srv.secret);
    let url = match op {
        Op::Get => format!("{}/api/v1/clusters/{}", srv.base, fx.cluster_id),
        Op::List | Op::Create => format!(
            "{}/api/v1/clusters/{}/networking/egress-rules",
            srv.base, fx.cluster_id
        ),
    };
    let next_rule = fx.next_rule.clone();
    Ok(Box::new(move || {
        let req = match op {
            Op::List | Op::Get => c.get(&url),
            Op::Create => {
                let n = next_rule.fetch_add(1, Ordering::Relaxed);
                c.post(&url)
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"name":"r-{n}","type":"FQDN","destination":"h{n}.example.com","ports":[443],"description":"bench"}}"#
                    ))
            }
        };
        let req = req.header("authorization", &auth);
        Box::pin(send(req, 200))
    }))
}

/// Send, read the whole body, and check the status.
async fn send(req: reqwest::RequestBuilder, expect: u16) -> Result<(), String> {
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| e.to_string())?;
    if status.as_u16() == expect {
        Ok(())
    } else {
        Err(format!("{status} {}", String::from_utf8_lossy(&body)))
    }
}

async fn run_phase(srv: &Server, fx: &Fixture, op: Op, measure: Duration) -> Stats {
    let mut workers = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        match http_worker(srv, fx, op) {
            Ok(w) => workers.push(w),
            Err(e) => {
                return Stats {
                    errors: 1,
                    first_error: Some(format!("building a client: {e}")),
                    ..Default::default()
                };
            }
        }
    }
    run_load(workers, measure).await
}

/// Lists from `CLIENTS - MIXED_WRITERS` clients while `MIXED_WRITERS` clients create rules, over
/// the same warm-up and measurement: (lists, creates).
async fn run_mixed(srv: &Server, fx: &Fixture, measure: Duration) -> (Stats, Stats) {
    let build = |op: Op, n: usize| -> Result<Vec<Worker>, BoxError> {
        (0..n).map(|_| http_worker(srv, fx, op)).collect()
    };
    match (
        build(Op::List, CLIENTS - MIXED_WRITERS),
        build(Op::Create, MIXED_WRITERS),
    ) {
        (Ok(lists), Ok(writes)) => {
            tokio::join!(run_load(lists, measure), run_load(writes, measure))
        }
        (Err(e), _) | (_, Err(e)) => {
            let failed = || Stats {
                errors: 1,
                first_error: Some(format!("building a client: {e}")),
                ..Default::default()
            };
            (failed(), failed())
        }
    }
}

/// Run every worker concurrently, each call after the previous one: a warm-up, then a timed
/// measurement of every call started within it.
async fn run_load(workers: Vec<Worker>, measure: Duration) -> Stats {
    let measure_from = Instant::now() + WARMUP;
    let until = measure_from + measure;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut next| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(16 * 1024);
                let (mut errors, mut first_error) = (0u64, None);
                loop {
                    let sent = Instant::now();
                    if sent >= until {
                        break;
                    }
                    let result = next().await;
                    let took = sent.elapsed();
                    let measured = sent >= measure_from;
                    if measured {
                        lat.push(took.as_nanos() as u64);
                    }
                    if let Err(e) = result {
                        errors += u64::from(measured);
                        first_error.get_or_insert(e);
                    }
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = CpuSample::take();
    let mut stats = Stats::default();
    for t in tasks {
        match t.await {
            Ok((lat, errors, first_error)) => {
                stats.lat.extend(lat);
                stats.errors += errors;
                if stats.first_error.is_none() {
                    stats.first_error = first_error;
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    stats.elapsed = measure_from.elapsed();
    stats.cpu = cpu_from
        .zip(CpuSample::take())
        .map(|(a, b)| a.share_until(&b));
    stats.lat.sort_unstable();
    stats
}

/// Process and host CPU time from `/proc`, in clock ticks.
struct CpuSample {
    process: u64,
    host_busy: u64,
    host_total: u64,
}

impl CpuSample {
    fn take() -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let host = std::fs::read_to_string("/proc/stat").ok()?;
        let t: Vec<u64> = host
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let total: u64 = t.iter().take(8).sum();
        let idle = t.get(3)? + t.get(4)?;
        Some(CpuSample {
            process: f.iter().sum(),
            host_busy: total - idle,
            host_total: total,
        })
    }

    /// (process, host) CPU use between `self` and `later`, as fractions of all cores.
    fn share_until(&self, later: &CpuSample) -> (f64, f64) {
        let total = later.host_total.saturating_sub(self.host_total).max(1) as f64;
        (
            later.process.saturating_sub(self.process) as f64 / total,
            later.host_busy.saturating_sub(self.host_busy) as f64 / total,
        )
    }
}

/// Where the time of a read goes: the HTTP stack without the store, then the store calls a
/// list request makes, each called directly (in process, no HTTP) by 32 concurrent tasks.
async fn diagnose(srv: &Server, fx: &Fixture, measure: Duration) -> Vec<(String, Stats)> {
    let mut out = Vec::new();
    let http = |path: &'static str, expect: u16| {
        let mut ws: Vec<Worker> = Vec::new();
        for _ in 0..CLIENTS {
            let c = client().expect("building a client");
            let url = format!("{}{path}", srv.base);
            ws.push(Box::new(move || Box::pin(send(c.get(&url), expect))));
        }
        ws
    };
    out.push((
        "http, no store (404 route)".to_string(),
        run_load(http("/api/v1/no-such-route", 404), measure).await,
    ));
    out.push((
        "http /health (SELECT 1)".to_string(),
        run_load(http("/health", 200), measure).await,
    ));
    type StoreCall = fn(Store, Arc<(String, String)>) -> Call;
    let calls: [(&str, StoreCall); 4] = [
        ("store ping (SELECT 1)", |s, _| {
            Box::pin(async move { s.ping().await.map_err(|e| e.to_string()) })
        }),
        ("store key_for_auth (2 queries)", |s, a| {
            Box::pin(async move {
                match s.key_for_auth(&a.0).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => Err("key not found".into()),
                    Err(e) => Err(e.to_string()),
                }
            })
        }),
        ("store get_live_cluster (2 q.)", |s, a| {
            Box::pin(async move {
                s.get_live_cluster(&a.1)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        }),
        ("store list_rules (50 rows)", |s, a| {
            Box::pin(async move {
                let page = PageRequest {
                    limit: 100,
                    ..Default::default()
                };
                s.list_rules(&a.1, &page)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        }),
    ];
    let args = Arc::new((srv.key_id.clone(), fx.cluster_id.clone()));
    for (name, call) in calls {
        let ws: Vec<Worker> = (0..CLIENTS)
            .map(|_| {
                let (store, args) = (srv.store.clone(), args.clone());
                Box::new(move || call(store.clone(), args.clone())) as Worker
            })
            .collect();
        out.push((name.to_string(), run_load(ws, measure).await));
    }
    out
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn print_header() {
    println!(
        "{:<30} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8}  cpu bench/host",
        "phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "max ms"
    );
}

fn print_row(name: &str, s: &Stats) {
    println!(
        "{:<30} {:>9} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.2}  {}",
        name,
        s.requests(),
        s.errors,
        s.rps(),
        ms(s.pct(0.50)),
        ms(s.pct(0.99)),
        ms(s.lat.last().copied().unwrap_or(0)),
        s.cpu.map_or_else(
            || "n/a".to_string(),
            |(own, host)| format!("{:.0}%/{:.0}%", own * 100.0, host * 100.0)
        ),
    );
}
