//! Findings 1 and 4: HTTP inside CONNECT tunnels, as real servers parse it.

use super::*;

/// How a request is spelled.
#[derive(Debug, Clone, Copy)]
enum Spelling {
    /// An empty line before the request line (RFC 9112 section 2.2 lets servers skip it).
    LeadingEmptyLine,
    /// Lines ended by LF alone.
    BareLf,
    /// The method in lower case.
    LowerCaseMethod,
    /// A space before the method.
    LeadingSpace,
    /// A tab between the method and the target.
    TabAfterMethod,
}

impl Spelling {
    /// Spellings that servers read one way only: the gateway serves them request by request.
    const LENIENT: [Spelling; 3] = [
        Spelling::LeadingEmptyLine,
        Spelling::BareLf,
        Spelling::LowerCaseMethod,
    ];
    /// Spellings that servers read differently: the gateway closes the tunnel.
    const AMBIGUOUS: [Spelling; 2] = [Spelling::LeadingSpace, Spelling::TabAfterMethod];

    fn name(self) -> &'static str {
        match self {
            Spelling::LeadingEmptyLine => "a leading empty line",
            Spelling::BareLf => "bare LF line ends",
            Spelling::LowerCaseMethod => "a lower-case method",
            Spelling::LeadingSpace => "a space before the method",
            Spelling::TabAfterMethod => "a tab after the method",
        }
    }

    /// `GET path HTTP/1.1` with `Host: host`, so spelled.
    fn request(self, path: &str, host: &str) -> Vec<u8> {
        match self {
            Spelling::LeadingEmptyLine => {
                format!("\r\nGET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
            }
            Spelling::BareLf => format!("GET {path} HTTP/1.1\nHost: {host}\n\n"),
            Spelling::LowerCaseMethod => format!("get {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            Spelling::LeadingSpace => format!(" GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            Spelling::TabAfterMethod => format!("GET\t{path} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        }
        .into_bytes()
    }
}

/// What must come of an [`Exchange`].
#[derive(Debug)]
enum Expect {
    /// The gateway answers (inside the tunnel) with `status` and `reason`; its decision event
    /// records `host` as the Host sent; nothing reaches the upstream.
    Answered {
        status: u16,
        reason: &'static str,
        host: &'static str,
    },
    /// The tunnel is closed with `reason` in the decision log; nothing reaches the upstream.
    Closed(&'static str),
    /// The request reaches the upstream, with this Host when given.
    Reaches(Option<&'static str>),
}

/// Bytes sent to the gateway, in a tunnel or not, and what must come of them.
#[derive(Debug)]
struct Exchange {
    name: String,
    /// CONNECT this target first; `None`: the bytes go to the proxy as they are.
    tunnel: Option<&'static str>,
    bytes: Vec<u8>,
    /// A path found in this exchange's request only, to find it in the upstream's log.
    marker: String,
    expect: Expect,
}

/// The exchanges of findings 1 and 4 against the server named `server`.
/// The rules: `allowed.test` port 80 paths `/api/*`, and `*.allowed.test` port 80 (no paths).
fn tunnel_exchanges(server: &str) -> Vec<Exchange> {
    let mut out = Vec::new();
    let mut n = 0;
    let mut marker = |prefix: &str| {
        n += 1;
        format!("{prefix}/{server}-{n}")
    };
    let mut push = |name: String, tunnel, bytes: Vec<u8>, marker: String, expect| {
        out.push(Exchange {
            name,
            tunnel: Some(tunnel),
            bytes,
            marker,
            expect,
        })
    };
    // 1. A tunnel to the path-ruled allowed.test:80 is never opened (`paths.rs`: CONNECT to a
    // port whose only rules carry paths is `path_needs_tls_inspection`), so path rules cannot
    // be bypassed through one. A tunnel to a name without path rules: every request of it is
    // checked, whatever its spelling.
    let t = "dns.allowed.test:80";
    for sp in Spelling::LENIENT {
        let m = marker("/api");
        let name = format!("1. CONNECT {t}, {}: an allowed request", sp.name());
        push(
            name,
            t,
            sp.request(&m, "dns.allowed.test"),
            m,
            Expect::Reaches(None),
        );
        let m = marker("/api");
        let name = format!(
            "1. CONNECT {t}, {}: Host of another virtual host",
            sp.name()
        );
        let expect = Expect::Answered {
            status: 400,
            reason: "host_mismatch",
            host: "vhost.test",
        };
        push(name, t, sp.request(&m, "vhost.test"), m, expect);
    }
    for sp in Spelling::AMBIGUOUS {
        let m = marker("/api");
        let name = format!(
            "1. CONNECT {t}, {}: Host of another virtual host",
            sp.name()
        );
        let bytes = sp.request(&m, "vhost.test");
        push(name, t, bytes, m, Expect::Closed("invalid_http_request"));
    }
    let m = marker("/secret");
    let bytes = format!("GET {m}\r\n").into_bytes();
    let name = format!("1. CONNECT {t}, HTTP/0.9");
    push(name, t, bytes, m, Expect::Closed("http09_request"));
    let m = marker("/api");
    let bytes = format!("GET {m}\r\nHost: vhost.test\r\n\r\n").into_bytes();
    let name = format!("1. CONNECT {t}, HTTP/0.9 with a Host header");
    push(name, t, bytes, m, Expect::Closed("http09_request"));

    // 4. `Connection: host` never removes the Host the decision used.
    for (t, host, connection) in [
        ("dns.allowed.test:80", "dns.allowed.test", "host"),
        (
            "dns.allowed.test:80",
            "dns.allowed.test",
            "Host, keep-alive",
        ),
    ] {
        let m = marker("/api");
        let bytes = format!("GET {m} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n");
        let name = format!("4. CONNECT {t}, Connection: {connection}");
        push(name, t, bytes.into_bytes(), m, Expect::Reaches(Some(host)));
    }
    for connection in ["host", "Host, keep-alive"] {
        let m = marker("/api");
        out.push(Exchange {
            name: format!("4. absolute-form, Connection: {connection}"),
            tunnel: None,
            bytes: format!(
                "GET http://allowed.test{m} HTTP/1.1\r\nHost: allowed.test\r\nConnection: {connection}\r\n\r\n"
            )
            .into_bytes(),
            marker: m,
            expect: Expect::Reaches(Some("allowed.test")),
        });
    }
    out
}

/// Run one exchange; why it failed, if it did.
fn exchange(env: &Env, x: &Exchange) -> Result<(), String> {
    let since = env.decisions_so_far();
    let mut c = Conn::open(env.proxy());
    if let Some(t) = x.tunnel {
        c.connect(t)
            .map_err(|head| format!("CONNECT {t} answered {head:?}"))?;
    }
    let _ = c.send(&x.bytes);
    let events = || env.net.server_events();
    match x.expect {
        Expect::Answered {
            status,
            reason,
            host,
        } => {
            match c.response(10) {
                Reply::Response {
                    status: s,
                    reason: Some(r),
                    ..
                } if s == status && r == reason => {}
                other => {
                    return Err(format!(
                        "expected {status} {reason} from the gateway, got {}",
                        other.describe()
                    ));
                }
            }
            let e = env.decision(&c, since, reason)?;
            if e["sni_or_host"] != host {
                return Err(format!(
                    "the decision event records Host {} instead of the {host} sent",
                    e["sni_or_host"]
                ));
            }
        }
        Expect::Closed(reason) => {
            match c.until_closed(WAIT) {
                Err(text) => {
                    return Err(format!(
                        "the tunnel was still open after {WAIT} s; it had sent {text:?}"
                    ));
                }
                Ok(text) if !text.is_empty() && !text.contains("x-perimeter-error") => {
                    return Err(format!("an answer came back before the close: {text:?}"));
                }
                Ok(_) => {}
            }
            env.decision(&c, since, reason)?;
        }
        Expect::Reaches(host) => {
            let reply = c.response(WAIT);
            let pick = |e: &Value| mentions(e, &x.marker);
            let Some(_) = poll(WAIT, || events().into_iter().find(pick)) else {
                return Err(format!(
                    "the upstream never got it; the client got {}",
                    reply.describe()
                ));
            };
            if let Some(host) = host {
                let all = events();
                let request = all
                    .iter()
                    .find(|e| e["kind"] == "request" && e["path"] == x.marker.as_str());
                match request {
                    Some(e) if e["host"] == host => {}
                    Some(e) => {
                        return Err(format!(
                            "the upstream got Host {} instead of {host}: {e}",
                            e["host"]
                        ));
                    }
                    None => return Err("the upstream parsed no such request".into()),
                }
            }
            return Ok(());
        }
    }
    match events().into_iter().find(|e| mentions(e, &x.marker)) {
        Some(e) => Err(format!("it reached the upstream: {e}")),
        None => Ok(()),
    }
}

fn http_in_tunnels(server: HttpServer, label: &str) {
    let e = env(
        &format!("bypass-tunnel-{label}"),
        NetOptions {
            http: server,
            ..NetOptions::default()
        },
        "DEFAULT_DENY",
        |_| {
            vec![
                json!({"name": "allowed-api", "type": "FQDN", "destination": "allowed.test", "ports": [80], "paths": ["/api/*"], "description": "allowed's API over HTTP"}),
                json!({"name": "below-allowed", "type": "FQDN", "destination": "*.allowed.test", "ports": [80], "description": "names below allowed.test"}),
            ]
        },
    );
    let mut failures = Vec::new();
    for x in tunnel_exchanges(label) {
        let r = exchange(&e, &x);
        check(&mut failures, &x.name, r);
    }
    // Overall: no refused request reached the server, in any spelling.
    for ev in e.net.server_events() {
        if mentions(&ev, "/secret") || mentions(&ev, "vhost.test") {
            failures.push(format!(
                "the {label} upstream logged a refused request: {ev}"
            ));
        }
    }
    case::assert_passed(&format!("HTTP in tunnels, {label} upstream"), &failures);
}

#[test]
fn http_in_tunnels_is_checked_request_by_request_python() {
    http_in_tunnels(HttpServer::Python, "python");
}

#[test]
fn http_in_tunnels_is_checked_request_by_request_node() {
    http_in_tunnels(HttpServer::Node, "node");
}
