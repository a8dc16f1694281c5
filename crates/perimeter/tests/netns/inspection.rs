//! TLS inspection end to end: the rule `allowed.test` port 443 `/api/*` holds over HTTPS once
//! the cluster turns inspection on. curl trusts only the cluster's CA (downloaded from the API);
//! the gateway trusts the fixture's upstream certificate through `--upstream-ca-file`. Every
//! request inside the inspected tunnel is decided on its own: the path tricks of the plain HTTP
//! table, Host against SNI, methods; what is refused gets its 403 (or 400) inside the TLS
//! session and never reaches the upstream. A destination on the never-inspect list is refused
//! at the CONNECT; an upstream whose certificate does not name it is refused inside.

use perimeter_testkit::api::{add_rule, set_policy, wait_rule_active};
use perimeter_testkit::{ok, wait_until};
use serde_json::json;

use crate::case::{self, case, curl_with};
use crate::clients::{curl_via, s_client};
use crate::fixture::{Net, NetOptions};
use crate::paths::path_tricks_by_curl;
use crate::start_perimeter_on;

#[test]
fn path_rules_hold_over_https_under_inspection() {
    let net = Net::new(NetOptions::default());
    let cert = net.cert.to_str().expect("UTF-8 path").to_string();
    let hosts = net.hosts.to_str().expect("UTF-8 path").to_string();
    let p = start_perimeter_on(
        &net,
        "inspected",
        "gateway",
        &["--log-format", "json", "--upstream-ca-file", &cert],
        &["--hosts-file", &hosts, "--dns-server", &net.dns],
    );
    set_policy(&p.s, &p.key, &p.cid, false);
    for (name, destination) in [
        ("api-paths", "allowed.test"),
        ("pinned-paths", "denied.test"),
        ("misnamed-paths", "other.test"),
    ] {
        let r = add_rule(
            &p.s,
            &p.key,
            &p.cid,
            json!({"name": name, "type": "FQDN", "destination": destination, "ports": [443],
                   "paths": ["/api/*"], "description": "inspected"}),
        );
        wait_rule_active(&p.s, &p.key, &p.cid, r["id"].as_str().expect("id"));
    }

    // Without inspection the path cannot be seen: the CONNECT is refused.
    let before = vec![
        case(
            "before inspection: CONNECT refused",
            curl_with(&["--cacert", &cert], "https://allowed.test/api/x"),
        )
        .refused(403, "path_needs_tls_inspection"),
    ];
    case::assert_passed("before inspection", &case::run(&net, &p.gw.proxy, before));

    // Turn it on; the gateway has it once propagating is false.
    let path = format!("/api/v1/clusters/{}/networking/tls-inspection", p.cid);
    let on = ok(
        &p.s,
        &p.key,
        "PUT",
        &path,
        Some(json!({"enabled": true, "never_inspect": ["denied.test"]})),
    );
    assert_eq!(on["enabled"], true, "{on}");
    wait_until("inspection reaches the gateway", 30, || {
        ok(&p.s, &p.key, "GET", &path, None)["propagating"] == false
    });
    let (code, pem) = perimeter_testkit::curl(&[
        "-H",
        &format!("Authorization: Bearer {}", p.key),
        &format!("{}{path}/ca.pem", p.s.url()),
    ]);
    assert_eq!(code, 200, "{pem}");
    let ca = net.dir.path().join("cluster-ca.pem");
    std::fs::write(&ca, &pem).expect("write the CA");
    let ca = ca.to_str().expect("UTF-8 path").to_string();
    let trust = ["--cacert", ca.as_str()];

    let mut cases = vec![
        case(
            "allowed path, trusting only the cluster CA",
            curl_with(&trust, "https://allowed.test/api/x"),
        )
        .allowed(200)
        .contains("https path=/api/x host=allowed.test sni=allowed.test")
        .serves(["/api/x"]),
        case(
            "an upload to the allowed path",
            curl_with(
                &[&trust[..], &["-X", "PUT", "--data-binary", "rows"]].concat(),
                "https://allowed.test/api/backup-1",
            ),
        )
        .allowed(200)
        .serves(["/api/backup-1"]),
        case(
            "another path on the same host: refused inside TLS",
            curl_with(&trust, "https://allowed.test/other-bucket/x"),
        )
        .refused(403, "path_not_allowed"),
        case(
            "Host naming another host than the SNI",
            curl_with(
                &[&trust[..], &["-H", "Host: denied.test"]].concat(),
                "https://allowed.test/api/x",
            ),
        )
        .refused(400, "host_mismatch"),
        case(
            "never inspected: its path rule denies at the CONNECT",
            curl_with(&trust, "https://denied.test/api/x"),
        )
        .refused(403, "path_rule_never_inspected"),
        case(
            "trusting the upstream's own certificate only: the leaf is refused",
            curl_with(&["--cacert", &cert], "https://allowed.test/api/x"),
        )
        .closed(),
    ];
    cases.extend(path_tricks_by_curl("https://allowed.test", &trust));
    case::assert_passed("inspected", &case::run(&net, &p.gw.proxy, cases));

    // Smuggling inside the session: raw requests through openssl s_client trusting only the
    // cluster CA. Whatever the trick, nothing outside /api/ reaches the upstream and no answer
    // for /secret comes back; framing in doubt reaches nothing at all (the session ends at its
    // head, with a decision event naming the reason).
    let mut failures = Vec::new();
    for (name, request, refused) in SMUGGLING {
        let seen = net.events().len();
        let (_, out) = s_client(
            &p.gw.proxy,
            "allowed.test:443",
            Some("allowed.test"),
            std::path::Path::new(&ca),
            request,
        );
        let after = net.events();
        let leaked: Vec<_> = after[seen..]
            .iter()
            .filter(|e| e["path"].as_str().is_some_and(|p| !p.starts_with("/api/")))
            .collect();
        let answered_secret = out.contains("path=/secret");
        if !leaked.is_empty() || answered_secret {
            failures.push(format!("{name}: upstream saw {leaked:?}; answer {out:?}"));
        }
        if let Some(reason) = refused {
            let reached: Vec<_> = after[seen..]
                .iter()
                .filter(|e| e["kind"] == "https")
                .collect();
            if !reached.is_empty() || out.contains("HTTP/1.1 200") {
                failures.push(format!(
                    "{name}: not refused: upstream saw {reached:?}; answer {out:?}"
                ));
            }
            let logged = || p.gw.decisions().iter().any(|e| e["reason"] == *reason);
            if !wait_for(logged) {
                failures.push(format!("{name}: no decision event with reason {reason}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "smuggling inside inspection:\n{}",
        failures.join("\n")
    );

    // An upstream whose certificate does not name it: refused inside the session, 502.
    let r = curl_via(&p.gw.proxy, &trust, "https://other.test/api/x");
    assert_eq!(r.status(), 502, "{}", r.text);
    assert_eq!(
        r.error().as_deref(),
        Some("upstream_certificate_invalid"),
        "{}",
        r.text
    );

    // Each request has its decision event with its method, path and rule.
    wait_until("per-request decision events", 30, || {
        let d = p.gw.decisions();
        d.iter().any(|e| {
            e["destination"] == "allowed.test"
                && e["path"] == "/api/backup-1"
                && e["method"] == "PUT"
                && e["verdict"] == "allowed"
                && e["rule"] == "api-paths"
        }) && d.iter().any(|e| {
            e["path"] == "/other-bucket/x"
                && e["method"] == "GET"
                && e["reason"] == "path_not_allowed"
        })
    });
}

/// Framing tricks that would smuggle `GET /secret` past a checker that reads one request while
/// the upstream reads two. Each is sent inside an inspected session to allowed.test.
/// Bounded wait for a condition (the gateway writes its log in batches).
fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// (name, request, the reason of its refusal when framing is in doubt)
const SMUGGLING: &[(&str, &str, Option<&str>)] = &[
    (
        "Content-Length and Transfer-Encoding",
        "POST /api/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        Some("ambiguous_framing"),
    ),
    (
        "two Content-Length values",
        "POST /api/x HTTP/1.1\r\nHost: allowed.test\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\nGET /secret HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        Some("conflicting_content_length"),
    ),
    (
        "obs-fold continuing a header",
        "GET /api/x HTTP/1.1\r\nHost: allowed.test\r\nX-A: a\r\n Transfer-Encoding: chunked\r\n\r\n",
        Some("obs_fold"),
    ),
    (
        "an invalid chunk size",
        "POST /api/x HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nGET /secret HTTP/1.1\r\n\r\n0\r\n\r\n",
        Some("invalid_http_request"),
    ),
    (
        "Transfer-Encoding not chunked last",
        "POST /api/x HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: allowed.test\r\n\r\n",
        Some("unsupported_transfer_encoding"),
    ),
    (
        "a request line with two spaces",
        "GET  /secret HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
        Some("invalid_http_request"),
    ),
    (
        "an absolute-form target naming another host",
        "GET http://denied.test/secret HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
        None,
    ),
    (
        "a space before the header colon",
        "GET /api/x HTTP/1.1\r\nHost : denied.test\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
        Some("invalid_http_request"),
    ),
];
