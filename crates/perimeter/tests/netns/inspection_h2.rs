//! HTTP/2 under TLS inspection: ALPN is negotiated on each side (the client's choice towards the
//! gateway, the upstream's towards it) and every stream is a request decided on its own.
//!
//! - curl with `--http2` through the gateway to the fixture's HTTP/1.1-only upstream (h2 to the
//!   gateway, HTTP/1.1 upstream) and to a Node `http2` upstream (h2 on both sides), and curl
//!   with `--http1.1` to the Node upstream (HTTP/1.1 to the gateway, h2 upstream);
//! - a battery of raw HTTP/2 requests from Python's `h2` (told not to validate what it sends):
//!   several streams on one connection decided one by one, `:authority` and Host against the
//!   SNI, malformed and abusive pseudo-headers, connection-specific headers, CONNECT and
//!   `:scheme` tricks, path tricks in `:path`. A refused stream is answered inside the session
//!   (403/400 with `x-perimeter-error`) or reset by the h2 codec; nothing outside `/api/` ever
//!   reaches an upstream.

use std::process::{Child, Command, Stdio};

use perimeter_testkit::api::{add_rule, wait_rule_active};
use perimeter_testkit::wait_until;
use serde_json::{Value, json};

use crate::Perimeter;
use crate::case::{self, case, curl_with};
use crate::fixture::{Net, NetOptions};
use crate::inspection::{start_inspecting, turn_on};
use crate::paths::path_tricks_by_curl;

/// The port of the Node HTTP/2 upstream on allowed.test's address.
const H2_PORT: u16 = 8443;

/// A gateway of a cluster with inspection on (never inspecting `denied.test`), whose rule
/// `api-paths` allows `allowed.test` on `ports` for `/api/*` only (beside a CIDR rule on the
/// same ports for another network); returns it and the file of the cluster's CA, which
/// clients trust.
fn inspected(net: &Net, ports: &[u16]) -> (Perimeter, String) {
    let p = start_inspecting(net, "inspected", &net.cert);
    let r = add_rule(
        &p.s,
        &p.key,
        &p.cid,
        json!({"name": "api-paths", "type": "FQDN", "destination": "allowed.test",
               "ports": ports, "paths": ["/api/*"], "description": "inspected"}),
    );
    wait_rule_active(&p.s, &p.key, &p.cid, r["id"].as_str().expect("id"));
    // A CIDR rule on the same ports that does not cover allowed.test's address: the name alone
    // no longer decides (the rule might cover it), and the CONNECT must still be inspected once
    // the addresses show that only the path rule allows it.
    let r = add_rule(
        &p.s,
        &p.key,
        &p.cid,
        json!({"name": "vpc", "type": "CIDR", "destination": "10.99.0.0/16",
               "ports": ports, "description": "another network"}),
    );
    wait_rule_active(&p.s, &p.key, &p.cid, r["id"].as_str().expect("id"));
    let ca = turn_on(&p, net, &["denied.test"]);
    (p, ca)
}

#[test]
fn http2_is_decided_stream_by_stream_under_inspection() {
    let net = Net::new(NetOptions::default());
    let _node = NodeH2::start(&net);
    let (p, ca) = inspected(&net, &[443, H2_PORT]);
    let trust = ["--cacert", ca.as_str()];
    let h2 = [&trust[..], &["--http2"]].concat();
    let h1 = [&trust[..], &["--http1.1"]].concat();
    let node_url = |path: &str| format!("https://allowed.test:{H2_PORT}{path}");
    let upload = net.dir.path().join("upload");
    std::fs::write(&upload, b"rows for another bucket").expect("the upload's file");
    let upload = upload.to_str().expect("UTF-8 path").to_string();

    let mut cases = vec![
        case(
            "h2 to the gateway, HTTP/1.1 upstream",
            curl_with(&h2, "https://allowed.test/api/x"),
        )
        .allowed(200)
        .contains("HTTP/2 200")
        .contains("https path=/api/x host=allowed.test sni=allowed.test")
        .serves(["/api/x"]),
        case("h2 on both sides", curl_with(&h2, node_url("/api/h2")))
            .allowed(200)
            .contains("HTTP/2 200")
            .contains("node version=2.0 path=/api/h2 authority=allowed.test:8443")
            .serves(["/api/h2"]),
        case(
            "HTTP/1.1 to the gateway, h2 upstream",
            curl_with(&h1, node_url("/api/h1")),
        )
        .allowed(200)
        .contains("HTTP/1.1 200")
        .contains("node version=2.0 path=/api/h1")
        .serves(["/api/h1"]),
        case(
            "an h2 upload to the allowed path, h2 upstream",
            curl_with(
                &[&h2[..], &["-X", "PUT", "--data-binary", "rows"]].concat(),
                node_url("/api/backup-1"),
            ),
        )
        .allowed(200)
        .serves(["/api/backup-1"]),
        case(
            "h2: an upload (curl -T) to another path, refused before its body is read",
            curl_with(
                &[&h2[..], &["-T", upload.as_str()]].concat(),
                node_url("/other-bucket/upload"),
            ),
        )
        .refused(403, "path_not_allowed"),
        case(
            "h2: another path on the same host",
            curl_with(&h2, node_url("/other-bucket/x")),
        )
        .refused(403, "path_not_allowed"),
        case(
            "h2: dot-segments out of /api/",
            curl_with(
                &[&h2[..], &["--path-as-is"]].concat(),
                node_url("/api/../secret"),
            ),
        )
        .refused(403, "path_not_allowed"),
    ];
    cases.extend(path_tricks_by_curl("https://allowed.test", &h2));
    case::assert_passed("h2 with curl", &case::run(&net, &p.gw.proxy, cases));

    // The raw battery: every case on a fresh inspected connection to allowed.test:443 (the
    // fixture's upstream), one or more streams each.
    let results = run_battery(&p.gw.proxy, &ca, BATTERY);
    let mut failures = Vec::new();
    for ((name, streams), result) in BATTERY.iter().zip(&results) {
        let got = result["streams"].as_array().cloned().unwrap_or_default();
        if got.len() != streams.len() {
            failures.push(format!("{name}: {result}"));
            continue;
        }
        for ((_, expect), seen) in streams.iter().zip(&got) {
            if let Err(why) = expect.judge(seen) {
                failures.push(format!("{name}: {why}: {result}"));
            }
        }
    }
    // Whatever was sent, nothing outside /api/ reached an upstream.
    let leaked: Vec<Value> = net
        .settled_events()
        .into_iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|path| !path.starts_with("/api/"))
        })
        .collect();
    if !leaked.is_empty() {
        failures.push(format!("the upstreams served {leaked:?}"));
    }
    assert!(
        failures.is_empty(),
        "HTTP/2 battery: {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Each stream has its own decision event, with its method, normalised path and rule.
    wait_until("per-stream decision events", 30, || {
        let d = p.gw.decisions();
        let has = |path: &str, verdict: &str| {
            d.iter()
                .any(|e| e["path"] == path && e["verdict"] == verdict && e["method"] == "GET")
        };
        has("/api/one", "allowed")
            && has("/other/two", "denied")
            && has("/api/three", "allowed")
            && d.iter()
                .any(|e| e["path"] == "/api/one" && e["rule"] == "api-paths")
    });
}

/// What a stream must end with.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A response with this status (200: the upstream's answer).
    Status(u16),
    /// The gateway's refusal: this status and `x-perimeter-error`.
    Refused(u16, &'static str),
    /// Reset by the h2 codec (RST_STREAM or GOAWAY), or the session closed, without a
    /// response.
    Reset,
}

impl Expect {
    fn judge(self, seen: &Value) -> Result<(), String> {
        let status = seen["status"].as_u64().map(|s| s as u16);
        let reason = seen["error"].as_str();
        let reset = seen["reset"].is_string() || seen["closed"] == true;
        match self {
            Expect::Status(want) if status == Some(want) => Ok(()),
            Expect::Refused(want, why) if status == Some(want) && reason == Some(why) => Ok(()),
            Expect::Reset if status.is_none() && reset => Ok(()),
            e => Err(format!("expected {e:?}")),
        }
    }
}

type Stream = (&'static [(&'static str, &'static str)], Expect);

/// The regular pseudo-headers of a GET to allowed.test.
macro_rules! get {
    ($path:expr) => {
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "allowed.test"),
            (":path", $path),
        ]
    };
}

/// (name, its streams on one connection)
const BATTERY: &[(&str, &[Stream])] = &[
    (
        "three streams on one connection, decided one by one",
        &[
            (get!("/api/one"), Expect::Status(200)),
            (get!("/other/two"), Expect::Refused(403, "path_not_allowed")),
            (get!("/api/three"), Expect::Status(200)),
        ],
    ),
    (
        ":authority naming another host than the SNI",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "denied.test"),
                (":path", "/api/x"),
            ],
            Expect::Refused(400, "host_mismatch"),
        )],
    ),
    (
        ":authority naming another port",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test:8443"),
                (":path", "/api/x"),
            ],
            Expect::Refused(400, "host_mismatch"),
        )],
    ),
    (
        "a Host beside :authority naming another host",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("host", "denied.test"),
            ],
            Expect::Refused(400, "host_mismatch"),
        )],
    ),
    (
        "a Host without :authority naming another host",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/api/x"),
                ("host", "denied.test"),
            ],
            Expect::Refused(400, "host_mismatch"),
        )],
    ),
    (
        "two Host headers",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("host", "allowed.test"),
                ("host", "denied.test"),
            ],
            Expect::Refused(400, "multiple_host_headers"),
        )],
    ),
    (
        "a second :path",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                (":path", "/secret"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "a second :authority",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":authority", "denied.test"),
                (":path", "/api/x"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "a pseudo-header after a regular header",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                ("x-a", "a"),
                (":authority", "denied.test"),
                (":path", "/secret"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "an unknown pseudo-header",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                (":host", "denied.test"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "no :path",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "no :method",
        &[(
            &[
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "an empty :path",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", ""),
            ],
            Expect::Reset,
        )],
    ),
    (
        ":path in absolute form naming another host",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "https://denied.test/secret"),
            ],
            Expect::Reset,
        )],
    ),
    (
        ":path with dot-segments out of /api/",
        &[(
            get!("/api/../secret"),
            Expect::Refused(403, "path_not_allowed"),
        )],
    ),
    (
        ":path with encoded dot-segments",
        &[(
            get!("/api/%2e%2e/secret"),
            Expect::Refused(403, "path_not_allowed"),
        )],
    ),
    (
        ":path with an encoded slash",
        &[(get!("/api%2fx"), Expect::Refused(400, "invalid_path"))],
    ),
    (
        ":path asterisk",
        &[(
            &[
                (":method", "OPTIONS"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "*"),
            ],
            Expect::Refused(400, "invalid_path"),
        )],
    ),
    (
        ":scheme http inside TLS",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
            ],
            Expect::Refused(400, "invalid_http_request"),
        )],
    ),
    (
        "CONNECT to another host inside the session",
        &[(
            &[(":method", "CONNECT"), (":authority", "denied.test:443")],
            Expect::Refused(400, "invalid_http_request"),
        )],
    ),
    (
        "extended CONNECT (:protocol)",
        &[(
            &[
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/secret"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "a connection header",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("connection", "keep-alive"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "transfer-encoding chunked",
        &[(
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("transfer-encoding", "chunked"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "te other than trailers",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("te", "gzip"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "an upper-case header name",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("Host", "denied.test"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "a header value smuggling a line break",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("x-a", "a\r\nhost: denied.test"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "a header name with a colon",
        &[(
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "allowed.test"),
                (":path", "/api/x"),
                ("x:host", "denied.test"),
            ],
            Expect::Reset,
        )],
    ),
    (
        "a refused stream between two allowed ones leaves them served",
        &[
            (get!("/api/a"), Expect::Status(200)),
            (
                &[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":authority", "allowed.test"),
                    (":path", "/api/x"),
                    (":path", "/secret"),
                ],
                Expect::Reset,
            ),
            (get!("/api/b"), Expect::Status(200)),
        ],
    ),
];

/// Send every case of `battery` on its own inspected HTTP/2 connection through `proxy`, with
/// Python's h2 trusting only `ca`; one result per case: `{"streams": [{status, error, body,
/// reset, closed}, ...]}`.
fn run_battery(proxy: &str, ca: &str, battery: &[(&str, &[Stream])]) -> Vec<Value> {
    let cases: Vec<Value> = battery
        .iter()
        .map(|(name, streams)| {
            json!({
                "name": name,
                "streams": streams.iter().map(|(headers, _)| headers.to_vec()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("h2_battery.py");
    std::fs::write(&script, H2_BATTERY_PY).expect("write the battery script");
    let out = perimeter_testkit::wait::output_within(
        "the h2 battery",
        120,
        Command::new(perimeter_testkit::moto::venv_bin("python"))
            .arg(&script)
            .args([proxy, "allowed.test:443", "allowed.test", ca]),
        Value::Array(cases).to_string().as_bytes(),
    );
    assert!(
        out.status.success(),
        "the h2 battery failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the h2 battery's output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(results.len(), battery.len(), "one result per case");
    results
}

/// The raw HTTP/2 client: for each case, CONNECT through the proxy, TLS with ALPN h2 trusting
/// only the given CA, every stream's headers as given (no validation, no normalisation), then
/// read until every stream ended, was reset, or the connection ended (10 s at most).
const H2_BATTERY_PY: &str = r#"
import json, socket, ssl, sys, time
import h2.config, h2.connection, h2.events

proxy, connect, sni, cafile = sys.argv[1:5]
host, port = proxy.rsplit(":", 1)
cases = json.load(sys.stdin)

def run(case):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(f"CONNECT {connect} HTTP/1.1\r\nHost: {connect}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            return {"connect": 0, "streams": []}
        head += chunk
    status = int(head.split(b" ", 2)[1])
    if status != 200:
        return {"connect": status, "streams": []}
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(["h2"])
    t = ctx.wrap_socket(s, server_hostname=sni)
    if t.selected_alpn_protocol() != "h2":
        return {"alpn": t.selected_alpn_protocol(), "streams": []}
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                    normalize_outbound_headers=False,
                                    validate_inbound_headers=False, header_encoding=None)
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    ids = []
    for headers in case["streams"]:
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(k.encode(), v.encode()) for k, v in headers], end_stream=True)
        ids.append(sid)
    t.sendall(c.data_to_send())
    res = {sid: {"body": ""} for sid in ids}
    pending = set(ids)
    deadline = time.time() + 10
    while pending and time.time() < deadline:
        try:
            data = t.recv(65535)
        except (socket.timeout, ssl.SSLError, OSError) as e:
            data = b""
        if not data:
            for sid in pending:
                res[sid]["closed"] = True
            break
        try:
            events = c.receive_data(data)
        except Exception as e:
            for sid in pending:
                res[sid]["closed"] = True
                res[sid]["protocol"] = repr(e)
            break
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                hs = dict((k.decode(), v.decode()) for k, v in ev.headers)
                res[ev.stream_id]["status"] = int(hs[":status"])
                if "x-perimeter-error" in hs:
                    res[ev.stream_id]["error"] = hs["x-perimeter-error"]
            elif isinstance(ev, h2.events.DataReceived):
                res[ev.stream_id]["body"] += ev.data.decode("latin-1")
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                pending.discard(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                res[ev.stream_id]["reset"] = str(ev.error_code)
                pending.discard(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                for sid in pending:
                    if sid > (ev.last_stream_id or 0):
                        res[sid]["reset"] = "GOAWAY " + str(ev.error_code)
                pending = set(sid for sid in pending if sid <= (ev.last_stream_id or 0))
        out = c.data_to_send()
        if out:
            try:
                t.sendall(out)
            except OSError:
                pass
    for sid in pending:
        res[sid].setdefault("closed", True)
    t.close()
    return {"streams": [res[sid] for sid in ids]}

print(json.dumps([run(case) for case in cases]))
"#;

/// A Node `http2` server (HTTP/1.1 too) on allowed.test's address at [`H2_PORT`], with the
/// fixture's certificate; it logs each request into the fixture's upstream log as an `https`
/// event (so the case runner sees what it served) and answers with the version it spoke.
struct NodeH2(Child);

impl NodeH2 {
    fn start(net: &Net) -> NodeH2 {
        let script = net.dir.path().join("h2-upstream.js");
        std::fs::write(&script, NODE_H2_JS).expect("write the Node upstream");
        // The fixture's upstream log and key (see fixture::Net).
        let log = net.dir.path().join("upstream.log");
        let key = net.dir.path().join("key.pem");
        let ready = net.dir.path().join("h2-upstream.ready");
        let child = Command::new("ip")
            .args(["netns", "exec", &net.ns, "node"])
            .arg(&script)
            .arg(&log)
            .arg(&net.cert)
            .arg(&key)
            .arg(net.a.allowed.to_string())
            .arg(H2_PORT.to_string())
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ip netns exec node");
        let node = NodeH2(child);
        wait_until("the Node h2 upstream listens", 20, || ready.exists());
        node
    }
}

impl Drop for NodeH2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const NODE_H2_JS: &str = r#"
const http2 = require("http2"), fs = require("fs");
const [log, cert, key, host, port, ready] = process.argv.slice(2);
const server = http2.createSecureServer(
  { cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true },
  (req, res) => {
    let n = 0;
    req.on("data", (d) => { n += d.length; });
    req.on("end", () => {
      const authority = req.headers[":authority"] || req.headers["host"] || "";
      fs.appendFileSync(log, JSON.stringify({ kind: "https", server: "node-h2", local: `${host}:${port}`,
        version: req.httpVersion, method: req.method, path: req.url, host: authority, bytes: n }) + "\n");
      res.writeHead(200, { "content-type": "text/plain" });
      res.end(`node version=${req.httpVersion} path=${req.url} authority=${authority}\n`);
    });
  });
server.listen(Number(port), host, () => fs.writeFileSync(ready, "ready"));
"#;
