//! The networking console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, through WebDriver) against a real `perimeter serve`, with curl sending
//! traffic through the cluster's egress proxy. Each page is screenshotted and checked; with
//! `PERIMETER_SCREENSHOTS_DIR=docs/screenshots` the pictures are the README's.

#[path = "console/browser.rs"]
mod browser;
#[path = "console/many_rules.rs"]
mod many_rules;
#[path = "console/walkthrough.rs"]
mod walkthrough;

use std::time::{Duration, Instant};

use browser::Browser;
use perimeter_testkit::api::{create_cluster, set_traffic_policy};
use perimeter_testkit::{Server, api, curl, http_upstream, lock, ok};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// One browser test at a time: Chromium is the heaviest thing the suite runs.
fn browser_lock() -> std::os::unix::net::UnixListener {
    lock::lock_within("perimeter-console-browser", 600)
}

/// What every browser test starts from: the browser lock, a scratch directory, a server and
/// its admin key, and one cluster in us-east-1 named `name`.
struct Scene {
    _lock: std::os::unix::net::UnixListener,
    dir: tempfile::TempDir,
    s: Server,
    key: String,
    cid: String,
}

fn scene(name: &str) -> Scene {
    scene_with(name, &[])
}

/// [`scene`] with further `serve` flags.
fn scene_with(name: &str, extra: &[&str]) -> Scene {
    let _lock = browser_lock();
    let dir = tempfile::tempdir().unwrap();
    let (s, key) = start(dir.path(), extra);
    let cid = create_cluster(&s, &key, name, &["us-east-1"]);
    Scene {
        _lock,
        dir,
        s,
        key,
        cid,
    }
}

/// `perimeter serve` with quick decision pushes, a hosts file and a loopback DNS server that
/// answers NXDOMAIN (the machine's resolver is never asked); its admin key.
fn start(dir: &std::path::Path, extra: &[&str]) -> (Server, String) {
    let hosts = hosts_file(dir);
    let hosts = hosts.to_string_lossy().into_owned();
    let dns = perimeter_testkit::dns::nxdomain_dns();
    let mut args = vec![
        "--decisions-push-ms",
        "300",
        "--hosts-file",
        hosts.as_str(),
        "--dns-server",
        dns.as_str(),
    ];
    args.extend_from_slice(extra);
    let s = Server::start(BIN, &dir.join("serve"), &args, &[]);
    let key = s.admin_key_file();
    (s, key)
}

/// The DNS listener answers allowed names from the gateway's own resolution; this one never
/// gets a connection (a would-deny is recorded at the answer).
fn hosts_file(dir: &std::path::Path) -> std::path::PathBuf {
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "203.0.113.9 report.example.test\n").unwrap();
    hosts
}

async fn sign_in(b: &Browser, url: &str, key: &str) {
    b.goto(&format!("{url}/console")).await;
    b.fill("#api-key", key).await;
    b.click("#sign-in-button").await;
    b.find("#who-name", 10).await;
}

fn rule_count(s: &Server, key: &str, cid: &str) -> usize {
    ok(
        s,
        key,
        "GET",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        None,
    )["rules"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_developer_key_sees_and_cannot_change() {
    let Scene {
        _lock,
        dir: _dir,
        s,
        key,
        cid,
    } = scene("console-dev");
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        Some(
            json!({"name": "existing", "type": "FQDN", "destination": "api.example.com", "ports": [443]}),
        ),
    );
    let sa = ok(
        &s,
        &key,
        "POST",
        "/api/v1/service-accounts",
        Some(json!({"name": "developer", "description": "reads only",
            "roles": [{"name": "CLUSTER_DEVELOPER", "resource": {"type": "CLUSTER", "id": cid}}]})),
    );
    let dev = ok(
        &s,
        &key,
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": "developer-key", "service_account_id": sa["id"]})),
    )["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let policy_before =
        ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None)["egress_traffic_policy"]
            .clone();

    let b = Browser::start().await;
    sign_in(&b, &s.url, &dev).await;
    b.wait_text("#who", "CLUSTER_DEVELOPER", 10).await;

    // Rules: seen, with no way to change them.
    b.hash(&format!("#/clusters/{cid}/rules")).await;
    b.find("tr.rule[data-rule='existing']", 10).await;
    assert!(!b.find("#rule-add", 5).await.is_enabled().await.unwrap());
    assert!(!b.exists("button.edit").await && !b.exists("button.delete").await);
    b.wait_text("main", "Read only", 5).await;
    b.shot(
        "developer-read-only",
        &["Read only", "existing", "CLUSTER_DEVELOPER"],
    )
    .await;

    // Forcing the form open anyway: the API refuses and the console says so.
    b.js(
        "document.getElementById('rule-add').disabled = false;",
        vec![],
    )
    .await;
    b.click("#rule-add").await;
    b.fill("#f-name", "sneaky").await;
    b.fill("#f-destination", "exfil.example.com").await;
    b.fill("#f-ports", "443").await;
    b.click("#rule-save").await;
    b.wait_text("#rule-form-error", "403", 10).await;
    b.wait_text("#rule-form-error", "lacks a required role", 1)
        .await;

    // Policy: the switch is greyed out.
    b.hash(&format!("#/clusters/{cid}/policy")).await;
    assert!(
        !b.find("#policy-apply", 10)
            .await
            .is_enabled()
            .await
            .unwrap()
    );
    assert!(
        !b.find("#policy-ALLOW_ALL", 5)
            .await
            .is_enabled()
            .await
            .unwrap()
    );

    // The allowlist is readable, not editable.
    b.hash(&format!("#/clusters/{cid}/allowlist")).await;
    b.find("#allowlist-status", 10).await;
    assert!(!b.exists("#allowlist-form").await);

    // What the role may not read shows the API's refusal, not an empty page.
    b.hash(&format!("#/clusters/{cid}/endpoints")).await;
    b.wait_text("#endpoints-error", "403", 10).await;
    b.hash("#/audit").await;
    b.wait_text("#audit-error", "lacks a required role", 10)
        .await;
    b.close().await;

    assert_eq!(rule_count(&s, &key, &cid), 1);
    let policy_after =
        ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None)["egress_traffic_policy"]
            .clone();
    assert_eq!(policy_before, policy_after);
}

/// `--no-console`: the page and its files are gone (the API's 404), the API stays.
#[test]
fn the_console_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), &["--no-console"], &[]);
    let key = s.admin_key_file();
    for path in ["/console", "/console/console.js"] {
        let (st, body) = curl(&[&format!("{}{path}", s.url)]);
        assert_eq!(st, 404, "{path}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["code"],
            5,
            "{body}"
        );
    }
    assert_eq!(
        ok(&s, &key, "GET", "/api/v1/whoami", None)["service_account_name"],
        "admin"
    );
    assert!(!s.log_text().contains("/console"), "{}", s.log_text());
}

/// The policy switch reads UPDATING, observed, for as long as one live gateway has not applied
/// the change (a standalone gateway, paused), and settles once it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_reads_updating_until_every_gateway_applied_it() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let Scene {
        _lock,
        dir,
        s,
        key,
        cid,
    } = scene("console-wait");
    set_traffic_policy(&s, &key, &cid, "DEFAULT_DENY");
    let token = perimeter_testkit::api::gateway_token(&s, &key, &cid, "us-east-1", "edge-1");
    let gw = perimeter_testkit::Gateway::start(
        BIN,
        dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &dir.path().join("edge-state"),
        &hosts_file(dir.path()),
        &perimeter_testkit::dns::nxdomain_dns(),
    );
    perimeter_testkit::api::wait_gateways_applied(&s, &key, &cid, 2);

    let b = Browser::start().await;
    sign_in(&b, &s.url, &key).await;
    b.hash(&format!("#/clusters/{cid}/policy")).await;
    b.wait_text("#policy-current", "DEFAULT_DENY", 10).await;
    b.wait_text("#policy-gateways", "edge-1", 10).await;

    let pid = Pid::from_raw(gw.child.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    b.click("#policy-REPORT_ONLY").await;
    b.click("#policy-apply").await;
    b.wait_text("#policy-current", "UPDATING", 10).await;
    b.wait_text("#policy-status", "Waiting for every gateway", 5)
        .await;
    b.shot(
        "policy-updating",
        &["UPDATING", "Waiting for every gateway", "edge-1"],
    )
    .await;
    // Still UPDATING while the gateway cannot apply it: the page shows what is observed.
    let policy = || {
        ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None)["egress_traffic_policy"]
            .clone()
    };
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        assert_eq!(policy(), "UPDATING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(b.text("#policy-current").await.contains("UPDATING"));
    kill(pid, Signal::SIGCONT).unwrap();
    b.wait_text("#policy-current", "REPORT_ONLY", 30).await;
    assert_eq!(policy(), "REPORT_ONLY");
    b.close().await;
    drop(gw);
}
