//! `perimeter serve` as a process: bootstrap, restart, SIGTERM, kill -9, PostgreSQL.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perimeter_testkit::{Server, curl, json, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

fn create_cluster(url: &str, key: &str, name: &str) -> String {
    let auth = format!("Authorization: Bearer {key}");
    let body = format!(
        r#"{{"name":"{name}","provider":"AWS","spec":{{"dedicated":{{"region_nodes":{{"us-east-1":3}}}}}}}}"#
    );
    let (st, b) = curl(&[
        "-H",
        &auth,
        "-X",
        "POST",
        &format!("{url}/api/v1/clusters"),
        "-d",
        &body,
    ]);
    assert_eq!(st, 200, "{b}");
    json(&b)["id"].as_str().unwrap().to_string()
}

#[test]
fn restart_keeps_data_and_the_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &[], &[]);
    assert!(
        s.log_text().contains("its API key is in"),
        "announces the key file: {}",
        s.log_text()
    );
    assert!(s.log_text().contains(&format!("listening on {}", s.url)));
    let key = s.admin_key_file();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin-api-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    let c = create_cluster(&s.url(), &key, "keep-me-1");
    let auth = format!("Authorization: Bearer {key}");
    let (st, b) = curl(&[
        "-H",
        &auth,
        "-X",
        "POST",
        &format!("{}/api/v1/clusters/{c}/networking/egress-rules", s.url()),
        "-d",
        r#"{"name":"keep","type":"FQDN","destination":"keep.example.com","ports":[443],"description":"survives restarts"}"#,
    ]);
    assert_eq!(st, 200, "{b}");
    let status = s.terminate();
    assert!(
        status.success(),
        "SIGTERM ends with exit code 0, got {status:?}"
    );
    // A second start ignores PERIMETER_ADMIN_API_KEY, keeps the stored key, and has the data.
    let s = Server::start(
        BIN,
        dir.path(),
        &[],
        &[("PERIMETER_ADMIN_API_KEY", "an-operator-chosen-secret-123")],
    );
    assert!(
        s.log_text().contains("ignored"),
        "says the variable is ignored: {}",
        s.log_text()
    );
    let (st, b) = curl(&[
        "-H",
        &auth,
        &format!("{}/api/v1/clusters/{c}/networking/egress-rules", s.url()),
    ]);
    assert_eq!(st, 200, "{b}");
    assert_eq!(json(&b)["rules"][0]["destination"], "keep.example.com");
    let (st, _) = curl(&[
        "-H",
        "Authorization: Bearer an-operator-chosen-secret-123",
        &format!("{}/api/v1/clusters", s.url()),
    ]);
    assert_eq!(st, 401, "the ignored variable grants nothing");
    // Issue 14, finding 8: the data directory and everything serve wrote in it (the database
    // and its WAL, the keys, the embedded gateways' state and last-known-good policies) are
    // its owner's alone.
    wait_until("the embedded gateway's last-known-good policy", 30, || {
        private_tree(dir.path())
            .iter()
            .any(|(p, _)| p.ends_with("last-known-good.json"))
    });
    let seen = private_tree(dir.path());
    for name in [
        "perimeter.db",
        "perimeter.db-wal",
        "secrets-key",
        "last-known-good.json",
    ] {
        assert!(
            seen.iter().any(|(p, _)| p.ends_with(name)),
            "{name} in {seen:?}"
        );
    }
    let open: Vec<_> = seen
        .iter()
        .filter(|(p, mode)| *mode != if p.is_dir() { 0o700 } else { 0o600 })
        .collect();
    assert!(open.is_empty(), "not private: {open:?}");
    let log = s.log_text();
    assert!(s.terminate().success(), "{log}");
}

/// Every path under `root` (itself included) with its permission bits, but the log files the
/// test harness writes there.
fn private_tree(root: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                todo.push(e.path());
            }
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("serve-") && n.ends_with(".log"))
        {
            continue;
        }
        out.push((p, meta.permissions().mode() & 0o777));
    }
    out
}

#[test]
fn admin_key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        BIN,
        dir.path(),
        &[],
        &[("PERIMETER_ADMIN_API_KEY", "an-operator-chosen-secret-123")],
    );
    assert!(
        !dir.path().join("admin-api-key").exists(),
        "no key file when the key comes from the environment"
    );
    let (st, b) = curl(&[
        "-H",
        "Authorization: Bearer an-operator-chosen-secret-123",
        &format!("{}/api/v1/clusters", s.url()),
    ]);
    assert_eq!(st, 200, "{b}");
    let (st, _) = curl(&[
        "-H",
        "Authorization: Bearer an-operator-chosen-secret-124",
        &format!("{}/api/v1/clusters", s.url()),
    ]);
    assert_eq!(st, 401);
}

/// Writers run while the server is killed with SIGKILL; after a restart every change that was
/// acknowledged (200) is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &[], &[]);
    let key = s.admin_key_file();
    let url = s.url();
    let c = create_cluster(&url, &key, "crash-test");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acked, url, key, c) = (acked.clone(), url.clone(), key.clone(), c.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            for i in 0..100_000 {
                let name = format!("w{w}-{i:05}");
                let body = serde_json::json!({"name": name, "type": "FQDN", "destination": format!("{name}.example.com"), "ports": [443], "description": ""});
                match http.post(format!("{url}/api/v1/clusters/{c}/networking/egress-rules")).bearer_auth(&key).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 200 => {
                        acked.lock().unwrap().insert(name);
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
                if Instant::now() > stop_at + Duration::from_secs(5) {
                    return;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the writers got only {} acknowledgements before the kill",
        acked.len()
    );
    let s = Server::start(BIN, dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let mut present = BTreeSet::new();
    let mut page = String::new();
    loop {
        let v: serde_json::Value = http
            .get(format!("{}/api/v1/clusters/{c}/networking/egress-rules?pagination.limit=500&pagination.page={page}", s.url()))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in v["rules"].as_array().unwrap() {
            present.insert(r["name"].as_str().unwrap().to_string());
        }
        match v["pagination"]["next_page"].as_str() {
            Some(t) if !t.is_empty() => page = t.to_string(),
            _ => break,
        }
    }
    let lost: Vec<_> = acked.difference(&present).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged rules lost after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "{} acknowledged, {} present after kill -9 and restart",
        acked.len(),
        present.len()
    );
}

#[test]
fn serve_on_postgresql_keeps_data_across_restarts() {
    let db = format!("perimeter_e2e_{}", std::process::id());
    let admin = std::env::var("PERIMETER_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    let psql = |sql: &str| {
        std::process::Command::new("psql")
            .args([admin.as_str(), "-qc", sql])
            .output()
            .expect("psql")
    };
    let out = psql(&format!("DROP DATABASE IF EXISTS {db}"));
    assert!(
        out.status.success(),
        "PostgreSQL is needed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(psql(&format!("CREATE DATABASE {db}")).status.success());
    let url = format!("{base}/{db}");
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &["--database-url", &url], &[]);
    assert!(s.log_text().contains("PostgreSQL"), "{}", s.log_text());
    let key = s.admin_key_file();
    let c = create_cluster(&s.url(), &key, "pg-cluster");
    assert!(s.terminate().success());
    let s = Server::start(BIN, dir.path(), &["--database-url", &url], &[]);
    let (st, b) = curl(&[
        "-H",
        &format!("Authorization: Bearer {key}"),
        &format!("{}/api/v1/clusters/{c}", s.url()),
    ]);
    assert_eq!(st, 200, "{b}");
    assert!(s.terminate().success());
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

#[test]
fn bad_flags_fail_with_a_message() {
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--listen"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("PostgreSQL"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client that never finishes its request head is cut at the header timeout; past the
/// connection cap a client gets 503 in the API's error shape and is closed.
#[test]
fn api_cuts_slow_clients_and_caps_connections() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        BIN,
        dir.path(),
        &[
            "--api-header-timeout-seconds",
            "2",
            "--api-max-connections",
            "2",
        ],
        &[],
    );
    let addr = s.url().trim_start_matches("http://").to_string();
    // Slowloris: half a head, then nothing.
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "cut after {took:?}: {}",
        String::from_utf8_lossy(&buf)
    );
    // Two connections hold both slots (each sends its head slowly, within the timeout); the
    // third is refused at once.
    let mut held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
            c
        })
        .collect();
    let mut third = std::net::TcpStream::connect(&addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = third.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"code\":14"), "{answer}");
    // The held ones finish their requests and are served.
    for c in &mut held {
        c.write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
}

/// Documented limits, set by flags: a create past one is a 400 that names the limit.
#[test]
fn limits_refuse_with_a_400_naming_the_limit() {
    use perimeter_testkit::api;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        BIN,
        dir.path(),
        &[
            "--max-clusters",
            "1",
            "--max-rules-per-cluster",
            "1",
            "--max-endpoints-per-cluster",
            "1",
            "--max-allowlist-entries-per-cluster",
            "2",
            "--no-embedded-gateways",
        ],
        &[],
    );
    let key = s.admin_key_file();
    let cid = create_cluster(&s.url(), &key, "limited");
    let body = json!({"name": "second", "provider": "AWS",
                      "spec": {"dedicated": {"region_nodes": {"us-east-1": 3}}}});
    let (st, b) = api(&s, &key, "POST", "/api/v1/clusters", Some(body));
    assert_eq!(st, 400, "{b}");
    assert!(
        b.contains("--max-clusters") && b.contains("\"field\":\"name\""),
        "{b}"
    );
    let rules = format!("/api/v1/clusters/{cid}/networking/egress-rules");
    let rule = |name: &str| json!({"name": name, "type": "FQDN", "destination": "example.test", "ports": [443], "description": ""});
    let (st, b) = api(&s, &key, "POST", &rules, Some(rule("one")));
    assert_eq!(st, 200, "{b}");
    let (st, b) = api(&s, &key, "POST", &rules, Some(rule("two")));
    assert_eq!(st, 400, "{b}");
    assert!(b.contains("--max-rules-per-cluster"), "{b}");
    // A rule deleted (at once: no gateway ever applied it) frees its place.
    let one = perimeter_testkit::json(&api(&s, &key, "GET", &rules, None).1)["rules"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, b) = api(&s, &key, "DELETE", &format!("{rules}/{one}"), None);
    assert_eq!(st, 200, "{b}");
    let (st, b) = api(&s, &key, "POST", &rules, Some(rule("two")));
    assert_eq!(st, 200, "{b}");
    let endpoints = format!("/api/v1/clusters/{cid}/networking/egress-private-endpoints");
    let ep = json!({"region": "us-east-1", "target_service_type": "PRIVATE_SERVICE",
                    "target_service_identifier": "com.amazonaws.vpce.us-east-1.vpce-svc-limited"});
    let (st, b) = api(&s, &key, "POST", &endpoints, Some(ep.clone()));
    assert_eq!(st, 200, "{b}");
    // The first one fails (no such service); it still counts until it is deleted.
    perimeter_testkit::wait_until("the first endpoint to settle", 30, || {
        let (_, b) = api(&s, &key, "GET", &endpoints, None);
        b.contains("FAILED")
    });
    let (st, b) = api(&s, &key, "POST", &endpoints, Some(ep));
    assert_eq!(st, 400, "{b}");
    assert!(b.contains("--max-endpoints-per-cluster"), "{b}");
    let allowlist = format!("/api/v1/clusters/{cid}/networking/allowlist");
    let entry = |ip: &str| json!({"cidr_ip": ip, "cidr_mask": 32, "sql": true, "ui": false});
    for ip in ["198.51.100.1", "198.51.100.2"] {
        let (st, b) = api(&s, &key, "POST", &allowlist, Some(entry(ip)));
        assert_eq!(st, 200, "{b}");
    }
    let (st, b) = api(&s, &key, "POST", &allowlist, Some(entry("198.51.100.3")));
    assert_eq!(st, 400, "{b}");
    assert!(
        b.contains("--max-allowlist-entries-per-cluster") && b.contains("\"field\":\"cidr_ip\""),
        "{b}"
    );
    // Replacing an entry in place is not a new one.
    let (st, b) = api(
        &s,
        &key,
        "PUT",
        &format!("{allowlist}/198.51.100.2/32"),
        Some(json!({"sql": false, "ui": true})),
    );
    assert_eq!(st, 200, "{b}");
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (st, b) = api(
        &s,
        &key,
        "PATCH",
        &format!("/api/v1/clusters/{cid}"),
        Some(json!({"labels": labels})),
    );
    assert_eq!(st, 400, "{b}");
    assert!(
        b.contains("\"field\":\"labels\"") && b.contains("at most 64"),
        "{b}"
    );
}
