//! Tables of path rules (DESIGN "Paths"): the rule `allowed.test` port 80 `/api/*`, against
//! percent-encoding and dot-segment tricks, per request of a keep-alive connection.

use crate::case::{Case, Reason, case, curl_with, raw_bytes, raw_until_closed};

/// Every spelling of a path outside `/api/*` is refused; a path that cannot be normalised is
/// the client's error (400, with a reason); allowed paths reach the upstream normalised.
pub fn path_rule_tricks() -> Vec<Case> {
    let mut cases = path_tricks_by_curl("http://allowed.test", &[]);
    // Raw, so that no client tidies the path first.
    for path in [
        "/api/../secret",
        "/api/%2e%2e/secret",
        "/%61pi/%2E%2E/secret",
    ] {
        cases.push(
            case(
                format!("raw path {path}"),
                raw_bytes(format!(
                    "GET http://allowed.test{path} HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"
                )),
            )
            .refused(403, "path_not_allowed"),
        );
    }
    cases.push(keep_alive_case());
    cases
}

/// The path tricks curl can send (`--path-as-is`) to `base` (`http://allowed.test`, or
/// `https://allowed.test` through TLS inspection), with `extra` curl arguments: refused
/// spellings, spellings allowed once normalised (the upstream gets the normalised path), and
/// double percent-encoding.
pub fn path_tricks_by_curl(base: &str, extra: &[&str]) -> Vec<Case> {
    let args: Vec<&str> = [&["--path-as-is"][..], extra].concat();
    let mut cases = Vec::new();
    for (path, status, reason) in [
        ("/secret", 403, Some("path_not_allowed")),
        ("/api/../secret", 403, Some("path_not_allowed")),
        ("/api/./../secret", 403, Some("path_not_allowed")),
        ("/api/%2e%2e/secret", 403, Some("path_not_allowed")),
        ("/api/%2E%2E/secret", 403, Some("path_not_allowed")),
        ("/api/.%2e/secret", 403, Some("path_not_allowed")),
        ("/%61pi/../secret", 403, Some("path_not_allowed")),
        ("/API/secret", 403, Some("path_not_allowed")),
        ("/secret?x=/api/", 403, Some("path_not_allowed")),
        ("/api/..%2fsecret", 400, None),
        ("/api/..%2Fsecret", 400, None),
        ("/api/%2e%2e%2fsecret", 400, None),
        ("/api/..%5csecret", 400, None),
        ("/api/..;x/secret", 400, None),
        ("/../secret", 400, None),
        ("/api/../../secret", 400, None),
    ] {
        let reason = reason.map_or(Reason::Present, Reason::Is);
        cases.push(
            case(
                format!("path {path}"),
                curl_with(&args, format!("{base}{path}")),
            )
            .refused_with(status, reason),
        );
    }
    // Allowed after normalisation: the upstream is sent the normalised path.
    for (path, forwarded) in [("/%61pi/ok", "/api/ok"), ("/api/x/../ok2", "/api/ok2")] {
        cases.push(
            case(
                format!("path {path}, allowed once normalised"),
                curl_with(&args, format!("{base}{path}")),
            )
            .allowed(200)
            .contains(format!("path={forwarded} "))
            .serves([forwarded]),
        );
    }
    // Percent-encoded twice, under path rules: a server that decodes twice would see
    // /api/../secret. Refused (DESIGN "Paths"), and nothing reaches the upstream.
    for path in ["/api/%252e%252e/secret", "/api/..%252Fsecret"] {
        cases.push(
            case(
                format!("path {path}, percent-encoded twice"),
                curl_with(&args, format!("{base}{path}")),
            )
            .refused(400, "double_encoded_path"),
        );
    }
    cases
}

/// Keep-alive: every request on one client connection is decided on its own.
fn keep_alive_case() -> Case {
    case(
            "keep-alive: each request decided on its own",
            raw_until_closed(
                &b"GET http://allowed.test/api/first HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
                   GET http://allowed.test/secret HTTP/1.1\r\nHost: allowed.test\r\n\r\n\
                   GET http://denied.test/api/x HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n"[..],
            ),
        )
        .statuses(&[
            "HTTP/1.1 200 OK",
            "HTTP/1.1 403 Forbidden",
            "HTTP/1.1 403 Forbidden",
        ])
        .serves(["/api/first"])
}

/// A tunnel would hide the path: CONNECT to the path-ruled port is refused.
pub fn connect_to_a_path_ruled_port() -> Vec<Case> {
    vec![
        case(
            "CONNECT allowed.test:80",
            curl_with(&["-p"], "http://allowed.test/api/x"),
        )
        .refused(403, "path_needs_tls_inspection"),
    ]
}
