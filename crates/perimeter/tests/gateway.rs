//! End to end: `perimeter serve` + `perimeter gateway` as real processes, driven with curl and
//! raw sockets through the explicit proxy, against loopback upstreams made here. Loopback is a
//! special address, so the allowed upstream is named by a CIDR rule `127.0.0.0/8` on its port.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use perimeter_testkit::api::{create_cluster, gateway_token, wait_rule_active};
use perimeter_testkit::dns::dns_server;
use perimeter_testkit::{Gateway, Server, api, curl, header_value, http_upstream, ok, wait_until};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// Send `request` raw to the proxy; returns what came back before it closed (10 s at most).
fn raw(proxy: &str, request: &str) -> String {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// curl through the proxy: (status, response headers and body).
fn via(proxy: &str, extra: &[&str], url: &str) -> (u16, String) {
    let mut args = vec!["-i", "-x", proxy];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

struct Setup {
    dir: tempfile::TempDir,
    hosts: PathBuf,
    dns: String,
    up: u16,
    other: u16,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 allowed.test.example other.test.example\n",
    )
    .unwrap();
    Setup {
        hosts,
        // Knows no name: NXDOMAIN to everything.
        dns: dns_server(HashMap::new()),
        up: http_upstream(),
        other: http_upstream(),
        dir,
    }
}

/// `perimeter serve` without its embedded gateways (only the gateway under test
/// acknowledges), a cluster named `name` in us-east-1 and the token of its gateway `gw-1`:
/// the server, its admin key, the cluster id and the token.
fn control_plane(t: &Setup, name: &str) -> (Server, String, String, String) {
    let s = Server::start(
        BIN,
        &t.dir.path().join("cp"),
        &["--no-embedded-gateways"],
        &[],
    );
    let key = s.admin_key_file();
    let cid = create_cluster(&s, &key, name, &["us-east-1"]);
    let token = gateway_token(&s, &key, &cid, "us-east-1", "gw-1");
    (s, key, cid, token)
}

/// The CIDR rule that names the loopback upstream, and the gateway `gw-1` (its state in
/// `gw-state`), once the rule reads ACTIVE: the gateway applied and acknowledged it.
fn upstream_rule_and_gateway(
    t: &Setup,
    s: &Server,
    key: &str,
    cid: &str,
    token: &str,
) -> (Gateway, PathBuf) {
    let rule = ok(
        s,
        key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules"),
        Some(
            json!({"name": "loopback-upstream", "type": "CIDR", "destination": "127.0.0.0/8", "ports": [t.up], "description": "test upstream"}),
        ),
    );
    let rid = rule["Rule"]["id"].as_str().unwrap().to_string();
    let state = t.dir.path().join("gw-state");
    let gw = Gateway::start(
        BIN,
        t.dir.path(),
        &s.url,
        token,
        "us-east-1",
        &state,
        &t.hosts,
        &t.dns,
    );
    wait_rule_active(s, key, cid, &rid);
    (gw, state)
}

#[test]
fn default_deny_enforced_live_and_from_last_known_good() {
    let t = setup();
    let (s, key, cid, token) = control_plane(&t, "gw-e2e-deny");
    ok(
        &s,
        &key,
        "POST",
        &format!("/api/v1/clusters/{cid}/networking/egress-rules/egress-traffic-policy"),
        Some(json!({"allow_all": false})),
    );
    // The rule reads ACTIVE once the gateway applied and acknowledged it.
    let (gw, state) = upstream_rule_and_gateway(&t, &s, &key, &cid, &token);
    let p = gw.proxy.clone();
    let allowed = format!("http://allowed.test.example:{}/hello", t.up);

    let check_enforced = |p: &str, what: &str| {
        // Absolute-form HTTP to the allowed upstream.
        let (st, body) = via(p, &[], &allowed);
        assert_eq!(st, 200, "{what}: absolute-form {body}");
        assert!(body.contains("upstream-ok /hello"), "{what}: {body}");
        // The same through a CONNECT tunnel.
        let (st, body) = via(
            p,
            &["-p"],
            &format!("http://allowed.test.example:{}/tunnel", t.up),
        );
        assert_eq!(st, 200, "{what}: CONNECT {body}");
        assert!(body.contains("upstream-ok /tunnel"), "{what}: {body}");
        // No rule for that port: 403 with the reason.
        let (st, body) = via(p, &[], &format!("http://other.test.example:{}/", t.other));
        assert_eq!(st, 403, "{what}: {body}");
        assert_eq!(
            header_value(&body, "x-perimeter-error").as_deref(),
            Some("no_rule_for_destination"),
            "{what}: {body}"
        );
        let (st, body) = via(
            p,
            &["-p"],
            &format!("http://other.test.example:{}/", t.other),
        );
        assert_ne!(st, 200, "{what}: CONNECT without a rule: {body}");
    };
    wait_until("the gateway to enforce the rule", 30, || {
        via(&p, &[], &allowed).0 == 200
    });
    check_enforced(&p, "live");

    // Non-canonical IP literals: 400, never reinterpreted.
    for (req, what) in [
        (
            format!(
                "GET http://2130706433:{0}/ HTTP/1.1\r\nHost: 2130706433:{0}\r\nConnection: close\r\n\r\n",
                t.up
            ),
            "decimal",
        ),
        (
            format!(
                "CONNECT 0177.0.0.1:{0} HTTP/1.1\r\nHost: 0177.0.0.1:{0}\r\n\r\n",
                t.up
            ),
            "octal",
        ),
        (
            format!(
                "GET http://127.1:{0}/ HTTP/1.1\r\nHost: 127.1:{0}\r\nConnection: close\r\n\r\n",
                t.up
            ),
            "short",
        ),
    ] {
        let resp = raw(&p, &req);
        assert!(resp.starts_with("HTTP/1.1 400"), "{what}: {resp}");
        assert_eq!(
            header_value(&resp, "x-perimeter-error").as_deref(),
            Some("non_canonical_ip"),
            "{what}: {resp}"
        );
    }
    // The canonical literal is allowed by the CIDR rule.
    let (st, body) = via(&p, &[], &format!("http://127.0.0.1:{}/lit", t.up));
    assert_eq!(st, 200, "{body}");

    // An unresolvable name is an upstream failure (502), not a policy deny.
    let (st, body) = via(&p, &[], &format!("http://nxdomain.test.example:{}/", t.up));
    assert_eq!(st, 502, "{body}");
    assert_eq!(
        header_value(&body, "x-perimeter-error").as_deref(),
        Some("dns_nxdomain"),
        "{body}"
    );

    // CONNECT whose Host header names another host: 400.
    let resp = raw(
        &p,
        &format!(
            "CONNECT allowed.test.example:{0} HTTP/1.1\r\nHost: evil.test.example:{0}\r\n\r\n",
            t.up
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert_eq!(
        header_value(&resp, "x-perimeter-error").as_deref(),
        Some("host_mismatch")
    );
    // Absolute-form whose Host disagrees with the URI: 400.
    let resp = raw(
        &p,
        &format!(
            "GET http://allowed.test.example:{0}/ HTTP/1.1\r\nHost: evil.test.example:{0}\r\nConnection: close\r\n\r\n",
            t.up
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // A tunnel whose inner Host names another host is closed before anything reaches upstream.
    let resp = raw(
        &p,
        &format!(
            "CONNECT allowed.test.example:{0} HTTP/1.1\r\nHost: allowed.test.example:{0}\r\n\r\nGET / HTTP/1.1\r\nHost: evil.test.example\r\n\r\n",
            t.up
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        !resp.contains("upstream-ok"),
        "the mismatched request reached upstream: {resp}"
    );
    // Origin-form requests to the proxy itself: 400 with a clear message.
    let resp = raw(&p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        resp.starts_with("HTTP/1.1 400") && resp.contains("egress proxy"),
        "{resp}"
    );

    // Decisions reach the control plane.
    wait_until("decision counts to be pushed", 20, || {
        let (_, b) = api(
            &s,
            &key,
            "GET",
            &format!("/api/v1/clusters/{cid}/networking/egress-decisions?verdict=DENIED"),
            None,
        );
        serde_json::from_str::<Value>(&b).ok().is_some_and(|v| {
            v["decisions"].as_array().is_some_and(|d| {
                d.iter().any(|d| {
                    d["destination"] == "other.test.example"
                        && d["reason"] == "no_rule_for_destination"
                })
            })
        })
    });

    // The control plane goes away: the gateway keeps enforcing.
    s.kill9();
    check_enforced(&p, "control plane down");

    // A restarted gateway without the control plane enforces its last-known-good policy.
    gw.terminate();
    let dead_cp = format!("http://{}", {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    });
    let gw = Gateway::start(
        BIN,
        t.dir.path(),
        &dead_cp,
        &token,
        "us-east-1",
        &state,
        &t.hosts,
        &t.dns,
    );
    check_enforced(&gw.proxy, "restarted from last-known-good");
    assert!(
        gw.log_text().contains("last-known-good"),
        "{}",
        gw.log_text()
    );

    // A fresh gateway with no state and no control plane denies everything.
    let fresh = Gateway::start(
        BIN,
        t.dir.path(),
        &dead_cp,
        &token,
        "us-east-1",
        &t.dir.path().join("empty-state"),
        &t.hosts,
        &t.dns,
    );
    let (st, body) = via(&fresh.proxy, &[], &allowed);
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        header_value(&body, "x-perimeter-error").as_deref(),
        Some("no_snapshot"),
        "{body}"
    );
    let (st, _) = via(&fresh.proxy, &["-p"], &allowed);
    assert_ne!(st, 200);
}

/// Issue 14, finding 5: deleting a gateway refuses its token at once; the gateway, told 401,
/// denies everything it allowed a moment before and forgets its last-known-good policy, so a
/// restart does not bring the old policy back.
#[test]
fn a_deleted_gateway_denies_everything_and_forgets_its_policy() {
    let t = setup();
    let (s, key, cid, token) = control_plane(&t, "gw-e2e-revoked");
    let (gw, state) = upstream_rule_and_gateway(&t, &s, &key, &cid, &token);
    let allowed = format!("http://allowed.test.example:{}/hello", t.up);
    assert_eq!(via(&gw.proxy, &[], &allowed).0, 200);
    assert!(state.join("last-known-good.json").exists());

    let gateways = ok(
        &s,
        &key,
        "GET",
        &format!("/api/v1/clusters/{cid}/gateways"),
        None,
    );
    let gid = gateways["gateways"][0]["id"].as_str().unwrap().to_string();
    ok(
        &s,
        &key,
        "DELETE",
        &format!("/api/v1/clusters/{cid}/gateways/{gid}"),
        None,
    );
    wait_until("the deleted gateway to deny everything", 30, || {
        via(&gw.proxy, &[], &allowed).0 == 403
    });
    let (_, body) = via(&gw.proxy, &[], &allowed);
    assert_eq!(
        header_value(&body, "x-perimeter-error").as_deref(),
        Some("no_snapshot"),
        "{body}"
    );
    assert!(
        !state.join("last-known-good.json").exists(),
        "the revoked gateway's last-known-good policy is gone"
    );
    // The refusal is logged by the sync loop; the log file may trail the proxy's answers.
    wait_until("the gateway to log the refusal of its token", 10, || {
        gw.log_text().contains("refuses this gateway's token")
    });
}

#[test]
fn allow_all_still_guards_special_addresses() {
    let t = setup();
    let (s, key, cid, token) = control_plane(&t, "gw-e2e-allow");
    let gw = Gateway::start(
        BIN,
        t.dir.path(),
        &s.url,
        &token,
        "us-east-1",
        &t.dir.path().join("gw-state"),
        &t.hosts,
        &t.dns,
    );
    wait_until("the gateway to apply a snapshot", 30, || {
        let (_, b) = api(
            &s,
            &key,
            "GET",
            &format!("/api/v1/clusters/{cid}/gateways"),
            None,
        );
        serde_json::from_str::<Value>(&b)
            .ok()
            .is_some_and(|v| v["gateways"][0]["applied_version"].as_i64().unwrap_or(0) > 0)
    });
    let c = ok(&s, &key, "GET", &format!("/api/v1/clusters/{cid}"), None);
    assert_eq!(c["egress_traffic_policy"], "ALLOW_ALL");
    // Loopback without a CIDR rule naming it: refused under ALLOW_ALL too.
    let (st, body) = via(
        &gw.proxy,
        &[],
        &format!("http://allowed.test.example:{}/", t.up),
    );
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        header_value(&body, "x-perimeter-error").as_deref(),
        Some("special_address"),
        "{body}"
    );
    let resp = raw(
        &gw.proxy,
        &format!(
            "CONNECT allowed.test.example:{0} HTTP/1.1\r\nHost: allowed.test.example:{0}\r\n\r\n",
            t.up
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert_eq!(
        header_value(&resp, "x-perimeter-error").as_deref(),
        Some("special_address"),
        "{resp}"
    );
    let (st, body) = via(&gw.proxy, &[], &format!("http://127.0.0.1:{}/", t.up));
    assert_eq!(st, 403, "{body}");
    gw.terminate();
}

/// The `perimeter_egress_decisions_total` lines of a gateway's `/metrics`.
fn decision_metrics(metrics_url: &str) -> Vec<String> {
    let (st, body) = curl(&[metrics_url]);
    assert_eq!(st, 200, "{body}");
    body.lines()
        .filter(|l| l.starts_with("perimeter_egress_decisions_total{"))
        .map(str::to_string)
        .collect()
}

/// Start `perimeter gateway` expecting it to refuse: it must exit (20 s at most) with a failure
/// status; returns what it logged.
fn refused_start(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("refused.log");
    let mut child = std::process::Command::new(BIN)
        .arg("gateway")
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--poll-wait-seconds", "2"])
        .env_remove("PERIMETER_CONTROL_PLANE")
        .env_remove("PERIMETER_GATEWAY_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the gateway kept running; log:\n{text}"));
    assert!(!status.success(), "exited with {status}; log:\n{text}");
    text
}

#[test]
fn standalone_gateway_labels_decisions_with_its_registered_region() {
    let t = setup();
    // Registered in us-east-1; started without --region.
    let (s, key, cid, token) = control_plane(&t, "gw-e2e-region");
    let state = t.dir.path().join("gw-state");
    let gw = Gateway::start_registered(
        BIN,
        t.dir.path(),
        &s.url,
        &token,
        &state,
        &t.hosts,
        &t.dns,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = gw.metrics.clone().expect("the gateway serves metrics");
    wait_until("the gateway to apply a snapshot", 30, || {
        let (_, b) = api(
            &s,
            &key,
            "GET",
            &format!("/api/v1/clusters/{cid}/gateways"),
            None,
        );
        serde_json::from_str::<Value>(&b)
            .ok()
            .is_some_and(|v| v["gateways"][0]["applied_version"].as_i64().unwrap_or(0) > 0)
    });
    // One decision: loopback is refused under ALLOW_ALL (no CIDR rule names it).
    let target = format!("http://allowed.test.example:{}/", t.up);
    let (st, body) = via(&gw.proxy, &[], &target);
    assert_eq!(st, 403, "{body}");
    let expected = format!(
        "perimeter_egress_decisions_total{{cluster=\"{cid}\",region=\"us-east-1\",verdict=\"denied\",reason=\"special_address\"}} 1"
    );
    wait_until("the decision to be counted", 10, || {
        decision_metrics(&metrics).contains(&expected)
    });
    let lines = decision_metrics(&metrics);
    assert!(
        lines.iter().all(|l| l.contains("region=\"us-east-1\"")),
        "every decision carries the registered region: {lines:#?}"
    );
    let logged = |l: &str| l.contains("egress decision") && l.contains("allowed.test.example");
    // The log is written by a writer thread: the line comes a moment after the count.
    wait_until("the decision to be logged", 10, || {
        gw.log_text().lines().any(logged)
    });
    let log = gw.log_text();
    let event = log
        .lines()
        .find(|l| logged(l))
        .unwrap_or_else(|| panic!("no decision event; log:\n{log}"));
    assert!(event.contains("region=us-east-1"), "{event}");
    assert!(
        log.contains("registered as gw-1 in region us-east-1"),
        "{log}"
    );
    gw.terminate();

    // Restarted without the control plane: the kept registration still names the region.
    let dead_cp = format!("http://{}", {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    });
    let gw = Gateway::start_registered(
        BIN,
        t.dir.path(),
        &dead_cp,
        &token,
        &state,
        &t.hosts,
        &t.dns,
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let metrics = gw.metrics.clone().expect("the gateway serves metrics");
    let (st, body) = via(&gw.proxy, &[], &target);
    assert_eq!(st, 403, "{body}");
    wait_until("the decision to be counted after the restart", 10, || {
        decision_metrics(&metrics).contains(&expected)
    });
    gw.terminate();

    // --region is a check: a kept registration of another region refuses the start...
    let refused = refused_start(&[
        "--control-plane",
        &dead_cp,
        "--token",
        &token,
        "--region",
        "eu-west-1",
        "--state-dir",
        state.to_str().unwrap(),
        "--hosts-file",
        t.hosts.to_str().unwrap(),
        "--dns-server",
        &t.dns,
    ]);
    assert!(
        refused.contains("registered in region us-east-1, not in region eu-west-1"),
        "{refused}"
    );
    // ... and so does the control plane's word, when nothing is kept yet.
    let refused = refused_start(&[
        "--control-plane",
        &s.url,
        "--token",
        &token,
        "--region",
        "eu-west-1",
        "--state-dir",
        t.dir.path().join("fresh-state").to_str().unwrap(),
        "--hosts-file",
        t.hosts.to_str().unwrap(),
        "--dns-server",
        &t.dns,
    ]);
    assert!(
        refused.contains("registered in region us-east-1, not in region eu-west-1"),
        "{refused}"
    );
}
