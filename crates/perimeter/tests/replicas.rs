//! Two `perimeter serve` replicas on one PostgreSQL database, with a standalone gateway (and
//! idle long-polls) on the replica that does not take the change: a rule created through
//! replica A reaches ACTIVE through replica B's wake-up by the store's notification, and idle
//! long-polls on B do not read the store every second.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use perimeter_testkit::pg::{PgDatabase, transactions_over};
use perimeter_testkit::{Gateway, Server, api, curl, ok, wait_until};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");
const REGION: &str = "us-east-1";
const IDLE_POLLS: usize = 100;

/// A long-poll for the gateway's next snapshot after `after`, held by a curl process.
fn long_poll(url: &str, token: &str, after: u64) -> Child {
    Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "60",
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{url}/api/v1/gateway/snapshot?after_version={after}&wait_seconds=60"),
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("curl")
}

#[test]
fn a_change_through_one_replica_wakes_the_other_without_polling() {
    let db = PgDatabase::create("perimeter_replicas");
    let args = [
        "--database-url",
        db.url.as_str(),
        "--no-embedded-gateways",
        // The reconciler is woken by acknowledgements; its idle scans stay out of the count.
        "--reconcile-interval-ms",
        "5000",
    ];
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start(BIN, &dir.path().join("a"), &args, &[]);
    let b = Server::start(BIN, &dir.path().join("b"), &args, &[]);
    let key = a.admin_key_file();
    let cid = api::create_cluster(&a, &key, "replicas-1", &[REGION]);
    let token = api::gateway_token(&a, &key, &cid, REGION, "gw-b");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "").unwrap();
    std::fs::create_dir_all(dir.path().join("gw")).unwrap();
    // No name is resolved here: the DNS server is a closed loopback port.
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
    wait_until("replica B to follow the store's notifications", 10, || {
        b.log_text()
            .contains("following the store's change notifications")
    });

    // Idle long-polls on B, at the current version.
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{}/api/v1/gateway/snapshot?wait_seconds=0", b.url),
    ]);
    assert_eq!(status, 200, "{body}");
    let version = api::json(&body)["version"].as_u64().unwrap();
    let window = Duration::from_secs(5);
    let baseline = transactions_over(&db.url, window);
    eprintln!("store transactions in {window:?} before the long-polls: {baseline}");
    let mut polls: Vec<Child> = (0..IDLE_POLLS)
        .map(|_| long_poll(&b.url, &token, version))
        .collect();
    // Their requests are in (authenticated, version read): from now on they are idle.
    std::thread::sleep(Duration::from_secs(3));
    let idle = transactions_over(&db.url, window) - baseline;
    // Reading the store every second, the long-polls alone would take IDLE_POLLS a second.
    let per_second_polling = IDLE_POLLS as i64 * window.as_secs() as i64;
    eprintln!("store transactions in {window:?} added by {IDLE_POLLS} idle long-polls: {idle}");
    assert!(
        idle < per_second_polling / 4,
        "{idle} transactions in {window:?}: the idle long-polls read the store; replica B's log:\n{}",
        b.log_text()
    );

    // A rule created through A: B's gateway applies it, and it reads ACTIVE.
    let started = Instant::now();
    let rule = ok(
        &a,
        &key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        Some(
            json!({"name": "across", "type": "FQDN", "destination": "example.com",
            "ports": [443], "description": "across replicas"}),
        ),
    );
    let rid = rule["Rule"]["id"].as_str().unwrap().to_string();
    loop {
        let state = ok(
            &a,
            &key,
            "GET",
            &format!("/api/v1/clusters/{cid}/networking/egress-rules/{rid}"),
            None,
        )["rule"]["state"]
            .clone();
        if state == "ACTIVE" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the rule reads {state} after 10 s; replica B's log:\n{}\ngateway log:\n{}",
            b.log_text(),
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    eprintln!("rule change to ACTIVE across replicas: {took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The idle long-polls were answered by the change, not by their deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in &mut polls {
        loop {
            if p.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "a long-poll was not woken");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    gw.terminate();
}
