//! Scale-out at rest: two `perimeter serve` replicas on one PostgreSQL database
//! (`--no-embedded-gateways`), a standalone `perimeter gateway` on replica B, and
//! `BENCH_LONG_POLLS` (default 500) idle snapshot long-polls held open on B. Changes go through
//! replica A. Run once following the store's change notifications (the default) and once with
//! `--no-store-notifications` (long-polls read the store every second), same conditions:
//!
//! - the store's transaction rate that the idle long-polls add (PostgreSQL's own count,
//!   `pg_stat_database.xact_commit + xact_rollback`, over a window, less the rate measured
//!   before the long-polls opened);
//! - rule change to ACTIVE across replicas: a rule created through A until A reads it ACTIVE
//!   (B's gateway applied it and acknowledged it to B), median of `BENCH_RULE_CHANGES`
//!   (default 5).
//!
//! `cargo bench -p perimeter --bench replicas`. Needs the local PostgreSQL
//! (`PERIMETER_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`). Every process
//! started here is stopped at the end; every wait is bounded; traffic stays on loopback.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use perimeter_testkit::pg::{PgDatabase, transactions_over};
use perimeter_testkit::{Gateway, Server, api, ok, wait_until};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const REGION: &str = "us-east-1";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Transactions per second over `window`.
fn rate(url: &str, window: Duration) -> f64 {
    transactions_over(url, window) as f64 / window.as_secs_f64()
}

struct Figures {
    added_per_second: f64,
    to_active: Duration,
}

fn run(notifications: bool, polls: usize, changes: usize) -> Figures {
    let db = PgDatabase::create(if notifications {
        "perimeter_bench_notify"
    } else {
        "perimeter_bench_poll"
    });
    let mut args = vec![
        "--database-url",
        db.url.as_str(),
        "--no-embedded-gateways",
        "--reconcile-interval-ms",
        "5000",
    ];
    if !notifications {
        args.push("--no-store-notifications");
    }
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(BIN, &dir.path().join("a"), &args, &[]);
    let b = Server::start(BIN, &dir.path().join("b"), &args, &[]);
    let key = a.admin_key_file();
    let cid = api::create_cluster(&a, &key, "bench-replicas", &[REGION]);
    let token = api::gateway_token(&a, &key, &cid, REGION, "gw-b");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    std::fs::create_dir_all(dir.path().join("gw")).unwrap();
    let gw = Gateway::start(
        BIN,
        &dir.path().join("gw"),
        &b.url,
        &token,
        REGION,
        &dir.path().join("gw-state"),
        &hosts,
        "127.0.0.1:9",
    );
    api::wait_gateways_applied(&a, &key, &cid, 1);
    let window = Duration::from_secs(10);
    let baseline = rate(&db.url, window);

    // The idle long-polls, at the current version, each on a connection of its own.
    let (_, body) = perimeter_testkit::curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{}/api/v1/gateway/snapshot?wait_seconds=0", b.url),
    ]);
    let version = api::json(&body)["version"].as_u64().unwrap();
    let authority = b.url.trim_start_matches("http://").to_string();
    let held: Vec<TcpStream> = (0..polls)
        .map(|_| {
            let mut s = TcpStream::connect(&authority).unwrap();
            write!(
                s,
                "GET /api/v1/gateway/snapshot?after_version={version}&wait_seconds=60 HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .unwrap();
            s
        })
        .collect();
    // Every request authenticated and its version read: from now on they are idle (the
    // window ends well before their 60 s).
    std::thread::sleep(Duration::from_secs(10));
    let with_polls = rate(&db.url, window);
    drop(held);

    let mut times = Vec::with_capacity(changes);
    for i in 0..changes {
        let started = Instant::now();
        let rule = ok(
            &a,
            &key,
            "POST",
            &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
            Some(json!({"name": format!("across-{i}"), "type": "FQDN",
                "destination": format!("r{i}.example.com"), "ports": [443],
                "description": "bench"})),
        );
        let rid = rule["Rule"]["id"].as_str().unwrap().to_string();
        wait_until("the rule to be ACTIVE", 30, || {
            ok(
                &a,
                &key,
                "GET",
                &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
                None,
            )["rule"]["state"]
                == "ACTIVE"
        });
        times.push(started.elapsed());
    }
    times.sort();
    gw.terminate();
    a.terminate();
    b.terminate();
    Figures {
        added_per_second: (with_polls - baseline).max(0.0),
        to_active: times[times.len() / 2],
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let polls = env_usize("BENCH_LONG_POLLS", 500);
    let changes = env_usize("BENCH_RULE_CHANGES", 5).max(1);
    println!(
        "# cargo bench -p perimeter --bench replicas  (BENCH_LONG_POLLS={polls}, BENCH_RULE_CHANGES={changes})"
    );
    let notified = run(true, polls, changes);
    let polled = run(false, polls, changes);
    println!();
    println!(
        "| two replicas on PostgreSQL, {polls} idle long-polls on B | notifications | polling every second | ratio |"
    );
    println!("|---|---|---|---|");
    println!(
        "| store transactions/s the idle long-polls add | {:.1} | {:.1} | {:.3}x |",
        notified.added_per_second,
        polled.added_per_second,
        notified.added_per_second / polled.added_per_second.max(0.1)
    );
    println!(
        "| rule change to ACTIVE across replicas (median of {changes}) | {} ms | {} ms | {:.2}x |",
        notified.to_active.as_millis(),
        polled.to_active.as_millis(),
        notified.to_active.as_secs_f64() / polled.to_active.as_secs_f64().max(1e-6)
    );
}
