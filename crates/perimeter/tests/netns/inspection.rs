//! TLS inspection end to end: the rule `allowed.test` port 443 `/api/*` holds over HTTPS once
//! the cluster turns inspection on. curl trusts only the cluster's CA (downloaded from the API);
//! the gateway trusts the fixture's upstream certificate through `--upstream-ca-file`. Every
//! request inside the inspected tunnel is decided on its own: the path tricks of the plain HTTP
//! table, Host against SNI, methods; what is refused gets its 403 (or 400) inside the TLS
//! session and never reaches the upstream. A destination on the never-inspect list is refused
//! at the CONNECT; an upstream whose certificate does not name it is refused inside.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use perimeter_testkit::api::{add_rule, set_policy, wait_rule_active};
use perimeter_testkit::certs::{Validity, authority};
use perimeter_testkit::{ok, output_within, wait_until};
use serde_json::json;

use crate::case::{self, case, curl_with};
use crate::clients::{curl_via, s_client};
use crate::fixture::{ExtraUpstream, Net, NetOptions};
use crate::paths::path_tricks_by_curl;
use crate::{Perimeter, start_perimeter_on};

/// A gateway (JSON decision log) of a new cluster `cluster` under DEFAULT_DENY, trusting the
/// upstream certificates of `upstream_ca` and resolving with the slot's hosts file and DNS
/// server: the start of every inspection scenario.
pub fn start_inspecting(net: &Net, cluster: &str, upstream_ca: &Path) -> Perimeter {
    let ca = upstream_ca.to_str().expect("UTF-8 path");
    let hosts = net.hosts.to_str().expect("UTF-8 path");
    let p = start_perimeter_on(
        net,
        cluster,
        "gateway",
        &["--log-format", "json", "--upstream-ca-file", ca],
        &["--hosts-file", hosts, "--dns-server", &net.dns],
    );
    set_policy(&p.s, &p.key, &p.cid, false);
    p
}

#[test]
fn path_rules_hold_over_https_under_inspection() {
    let net = Net::new(NetOptions::default());
    let cert = net.cert.to_str().expect("UTF-8 path").to_string();
    let p = start_inspecting(&net, "inspected", &net.cert);
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
    let ca = turn_on(&p, &net, &["denied.test"]);
    // HTTP/1.1 here (curl would choose HTTP/2, which inspection_h2 covers).
    let trust = ["--cacert", ca.as_str(), "--http1.1"];

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

/// Turn TLS inspection on for `p`'s cluster (with `never_inspect`), wait until its gateway has
/// it, and write the cluster's CA (downloaded from the API) to the fixture's directory: the
/// path of that file, the one certificate a workload then needs.
pub fn turn_on(p: &Perimeter, net: &Net, never_inspect: &[&str]) -> String {
    let path = format!("/api/v1/clusters/{}/networking/tls-inspection", p.cid);
    let on = ok(
        &p.s,
        &p.key,
        "PUT",
        &path,
        Some(json!({"enabled": true, "never_inspect": never_inspect})),
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
    ca.to_str().expect("UTF-8 path").to_string()
}

/// The battery of the gateway's own TLS, inside and behind inspected sessions:
///
/// - upstreams whose certificate does not verify: one signed by a trusted CA but expired, one
///   from a CA nobody trusts (each beside a control signed by the same trusted CA and valid,
///   which is served): 502 `upstream_certificate_invalid` with rustls' reason, a decision event,
///   and no request reaches them (their TLS handshake fails, no request head is read);
/// - a client-initiated TLS 1.2 renegotiation in an inspected session (`openssl s_client
///   -tls1_2`, its `R` command): rustls never renegotiates, so the session ends and the
///   allowed request sent after it never reaches the upstream (the one before it does);
/// - TLS 1.3 early data: the gateway's session tickets allow none (`Max Early Data: 0`), so
///   `s_client -early_data` sends none; with a ticket forged to allow it, the client sends an
///   allowed request as 0-RTT data and the gateway rejects it: the upstream never sees it.
#[test]
fn inspection_refuses_bad_upstream_certificates_renegotiation_and_early_data() {
    let net = Net::new(NetOptions::default());
    let dir = net.dir.path();
    let trusted = authority(dir, "upstreams");
    let rogue = authority(dir, "rogue");
    let valid = trusted.issue("valid", &["valid.test"], Validity::Days(2));
    let expired = trusted.issue("expired", &["expired.test"], Validity::Expired);
    let untrusted = rogue.issue("untrusted", &["untrusted.test"], Validity::Days(2));
    let a = net.a.allowed;
    let valid_up = net.tls_upstream("valid", a, 8445, &valid.cert, &valid.key);
    let expired_up = net.tls_upstream("expired", a, 8443, &expired.cert, &expired.key);
    let untrusted_up = net.tls_upstream("untrusted", a, 8444, &untrusted.cert, &untrusted.key);
    net.add_hosts(a, &["valid.test", "expired.test", "untrusted.test"]);
    // The gateway trusts the fixture's upstream and the `upstreams` CA; not `rogue`.
    let roots = dir.join("upstream-roots.pem");
    std::fs::write(
        &roots,
        [
            std::fs::read_to_string(&net.cert).expect("fixture cert"),
            std::fs::read_to_string(&trusted.cert).expect("trusted CA"),
        ]
        .concat(),
    )
    .expect("write the roots");
    let p = start_inspecting(&net, "inspected-tls", &roots);
    for (name, destination, port) in [
        ("api-paths", "allowed.test", 443),
        ("valid-paths", "valid.test", 8445),
        ("expired-paths", "expired.test", 8443),
        ("untrusted-paths", "untrusted.test", 8444),
    ] {
        let r = add_rule(
            &p.s,
            &p.key,
            &p.cid,
            json!({"name": name, "type": "FQDN", "destination": destination, "ports": [port],
                   "paths": ["/api/*"], "description": "inspected"}),
        );
        wait_rule_active(&p.s, &p.key, &p.cid, r["id"].as_str().expect("id"));
    }
    let ca = turn_on(&p, &net, &[]);
    let trust = ["--cacert", ca.as_str()];
    let mut failures = Vec::new();

    // Upstream certificates. The control first: the same fixture, a valid certificate.
    let r = curl_via(&p.gw.proxy, &trust, "https://valid.test:8445/api/control");
    let served = |up: &ExtraUpstream| -> Vec<String> {
        up.settled_events()
            .iter()
            .filter(|e| e["kind"] == "https")
            .map(|e| e["path"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    if r.status() != 200 || served(&valid_up) != ["/api/control"] {
        failures.push(format!(
            "control: a valid certificate of the trusted CA: {} {:?}; upstream served {:?}",
            r.status(),
            r.text,
            served(&valid_up)
        ));
    }
    for (name, url, up, why) in [
        (
            "expired certificate of a trusted CA",
            "https://expired.test:8443/api/x",
            &expired_up,
            "expired",
        ),
        (
            "certificate of an untrusted CA",
            "https://untrusted.test:8444/api/x",
            &untrusted_up,
            "UnknownIssuer",
        ),
    ] {
        let r = curl_via(&p.gw.proxy, &trust, url);
        let events = up.settled_events();
        let handshakes = events.iter().filter(|e| e["kind"] == "tls-fail").count();
        if r.status() != 502
            || r.error().as_deref() != Some("upstream_certificate_invalid")
            || !r.text.contains(why)
        {
            failures.push(format!(
                "{name}: wanted 502 upstream_certificate_invalid ({why}), got {} {:?}",
                r.status(),
                r.text
            ));
        }
        if !served(up).is_empty() || handshakes == 0 {
            failures.push(format!(
                "{name}: wanted a failed handshake and no request upstream, saw {events:?}"
            ));
        }
    }
    let certificate_events = || {
        let d = p.gw.decisions();
        ["expired.test", "untrusted.test"].iter().all(|host| {
            d.iter().any(|e| {
                e["destination"] == *host
                    && e["path"] == "/api/x"
                    && e["reason"] == "upstream_certificate_invalid"
            })
        })
    };
    if !wait_for(certificate_events) {
        failures.push("no decision events naming upstream_certificate_invalid".into());
    }

    // Renegotiation: one allowed request, `R`, then another allowed request.
    let seen = net.events().len();
    let mut s = Interactive::start(&p.gw.proxy, &ca, &["-tls1_2"]);
    let handshake = s.wait_for("Verify return code: 0 (ok)");
    s.send("GET /api/before-renegotiation HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
    let before = s.wait_for("path=/api/before-renegotiation");
    s.send("R\n");
    let renegotiating = s.wait_for("RENEGOTIATING");
    s.send("GET /api/after-renegotiation HTTP/1.1\r\nHost: allowed.test\r\n\r\n");
    let out = s.finish();
    let paths: Vec<String> = net.settled_events()[seen..]
        .iter()
        .filter(|e| e["kind"] == "https")
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect();
    if !(handshake && before && renegotiating) || paths != ["/api/before-renegotiation"] {
        failures.push(format!(
            "renegotiation: wanted the request before it served and none after; upstream \
             served {paths:?}; s_client: {out}"
        ));
    }
    if !out.contains("no renegotiation") || out.contains("path=/api/after-renegotiation") {
        failures.push(format!(
            "renegotiation: wanted the session ended with no_renegotiation: {out}"
        ));
    }

    // Early data. A first session leaves its ticket; the gateway's tickets allow no early data.
    // Each ticket resumes once (rustls takes it from its cache): one session per attempt.
    let ticket = |name: &str| {
        let session = dir.join(format!("session-{name}.pem"));
        let session_arg = session.to_str().expect("UTF-8 path");
        let (_, out) = s_client_with(
            &p.gw.proxy,
            &ca,
            // -ign_eof: read on until the gateway ends the session, tickets included.
            &["-tls1_3", "-ign_eof", "-sess_out", session_arg],
            "GET /api/ticket HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
        );
        (session, out)
    };
    let (session, out) = ticket("issued");
    let text = session_text(&session);
    if !out.contains("path=/api/ticket") || !text.contains("Max Early Data: 0") {
        failures.push(format!(
            "early data: wanted a ticket allowing no early data: {text}; s_client: {out}"
        ));
    }
    let session_arg = session.to_str().expect("UTF-8 path");
    let early = dir.join("early.txt");
    std::fs::write(
        &early,
        "GET /api/early-data HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    )
    .expect("write the early data");
    let early_arg = early.to_str().expect("UTF-8 path");
    let (other, _) = ticket("to-forge");
    let forged = dir.join("session-forged.pem");
    forge_max_early_data(&other, &forged);
    let forged_arg = forged.to_str().expect("UTF-8 path");
    // The client's key log shows whether it derived early traffic keys: whether it sent
    // early data at all.
    for (name, session, sent) in [
        ("the gateway's ticket", session_arg, false),
        ("a ticket forged to allow early data", forged_arg, true),
    ] {
        let seen = net.events().len();
        let keylog = dir.join(format!("keylog-{sent}.txt"));
        let (_, out) = s_client_with(
            &p.gw.proxy,
            &ca,
            &[
                "-tls1_3",
                "-sess_in",
                session,
                "-early_data",
                early_arg,
                "-keylogfile",
                keylog.to_str().expect("UTF-8 path"),
            ],
            "",
        );
        let keys = std::fs::read_to_string(&keylog).unwrap_or_default();
        let reached: Vec<_> = net.settled_events()[seen..]
            .iter()
            .filter(|e| e["kind"] == "https")
            .cloned()
            .collect();
        if !out.contains("Reused, TLSv1.3")
            || keys.contains("CLIENT_EARLY_TRAFFIC_SECRET") != sent
            || out.contains("Early data was accepted")
            || out.contains("path=/api/early-data")
            || !reached.is_empty()
        {
            failures.push(format!(
                "early data with {name}: wanted a resumed session, early data sent: {sent}, \
                 never accepted, nothing upstream; upstream saw {reached:?}; key log: {keys}; \
                 s_client: {out}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "inspection's TLS battery:\n{}",
        failures.join("\n")
    );
}

/// `openssl s_client` through `proxy` to allowed.test:443, verifying against `ca`, with
/// `extra` arguments; sends `request` and closes its input. (success, stdout + stderr); 20 s
/// at most.
fn s_client_with(proxy: &str, ca: &str, extra: &[&str], request: &str) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-proxy", proxy, "-connect", "allowed.test:443"])
        .args(["-servername", "allowed.test", "-CAfile", ca])
        .arg("-verify_return_error")
        .args(extra);
    let out = output_within("openssl s_client", 20, &mut cmd, request.as_bytes());
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `openssl sess_id -text` of a saved session.
fn session_text(session: &Path) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["sess_id", "-noout", "-text", "-in"]).arg(session);
    let out = output_within("openssl sess_id", 10, &mut cmd, b"");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Write `from` (an OpenSSL session in PEM) to `to` with its `max_early_data` ([15] of the
/// SSL_SESSION sequence) set to 16384, so that a client offers early data on it whatever the
/// server's ticket said.
fn forge_max_early_data(from: &Path, to: &Path) {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", FORGE]).arg(from).arg(to);
    let out = output_within("forging the session", 10, &mut cmd, b"");
    assert!(
        out.status.success(),
        "forging the session: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = session_text(to);
    assert!(text.contains("Max Early Data: 16384"), "{text}");
}

const FORGE: &str = r#"
import base64, sys
src, dst = sys.argv[1], sys.argv[2]
lines = open(src).read().splitlines()
der = base64.b64decode("".join(l for l in lines if not l.startswith("-----")))

def length(b, i):
    n = b[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(b[i + 1 : i + 1 + k], "big"), i + 1 + k

def encode_length(n):
    if n < 0x80:
        return bytes([n])
    s = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(s)]) + s

assert der[0] == 0x30, "an SSL_SESSION is a SEQUENCE"
n, i = length(der, 1)
body = der[i : i + n]
elements, j = [], 0
while j < len(body):
    n, k = length(body, j + 1)
    elements.append((body[j], body[j : k + n]))
    j = k + n
# [15] EXPLICIT INTEGER 16384, in tag order among the optional [n] fields.
field = b"\xaf" + encode_length(4) + b"\x02\x02\x40\x00"
out, placed = [], False
for tag, raw in elements:
    if tag == 0xAF:
        raw, placed = field, True
    elif not placed and 0xB0 <= tag <= 0xBE:
        out.append(field)
        placed = True
    out.append(raw)
if not placed:
    out.append(field)
body = b"".join(out)
der = b"\x30" + encode_length(len(body)) + body
b64 = base64.b64encode(der).decode()
with open(dst, "w") as f:
    f.write("-----BEGIN SSL SESSION PARAMETERS-----\n")
    for k in range(0, len(b64), 64):
        f.write(b64[k : k + 64] + "\n")
    f.write("-----END SSL SESSION PARAMETERS-----\n")
"#;

/// `openssl s_client` to allowed.test:443 through the proxy, kept open: its input written
/// step by step (so that its commands, `R`, come alone), its output read as it comes.
struct Interactive {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Interactive {
    fn start(proxy: &str, ca: &str, extra: &[&str]) -> Interactive {
        use std::process::Stdio;
        let mut child = Command::new("openssl")
            .args(["s_client", "-proxy", proxy, "-connect", "allowed.test:443"])
            .args(["-servername", "allowed.test", "-CAfile", ca])
            .arg("-verify_return_error")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl s_client");
        let out = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut readers = Vec::new();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut r in streams {
            let out = out.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        Interactive {
            stdin: child.stdin.take(),
            child,
            out,
            readers,
        }
    }

    fn send(&mut self, text: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            // A client that has already gone fails this write: what it printed says why.
            let _ = stdin.write_all(text.as_bytes()).and_then(|_| stdin.flush());
        }
    }

    /// Whether `text` appears in its output within 10 s.
    fn wait_for(&self, text: &str) -> bool {
        wait_for(|| self.out.lock().unwrap().contains(text))
    }

    /// Close its input and wait (10 s) for it to end, else kill it; everything it printed.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let ended = wait_for(|| self.child.try_wait().ok().flatten().is_some());
        if !ended {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = self.out.lock().unwrap().clone();
        if ended {
            out
        } else {
            format!("{out}\n[killed: still running 10 s after its input closed]")
        }
    }
}
