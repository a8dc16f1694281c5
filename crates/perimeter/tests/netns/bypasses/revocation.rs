//! Finding 2: deleting a rule stops the traffic it allowed, in flight.

use super::*;

/// One chunk of a chunked body.
fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

/// A chunked upload to `host`'s `/api/upload-<tag>` (absolute-form, or in a tunnel to
/// `tunnel`), the rule `rule` deleted between two chunks: the second (`AFTER-REVOKE-<tag>`) must never reach the
/// upstream, and the connection is closed.
fn upload_after_revocation(
    e: &Env,
    tunnel: Option<&str>,
    host: &str,
    rule: &str,
    tag: &str,
) -> Result<(), String> {
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    let target = match tunnel {
        Some(t) => {
            c.connect(t)
                .map_err(|h| format!("CONNECT {t} answered {h:?}"))?;
            format!("/api/upload-{tag}")
        }
        None => format!("http://{host}/api/upload-{tag}"),
    };
    let (before, after) = (
        format!("BEFORE-REVOKE-{tag}"),
        format!("AFTER-REVOKE-{tag}"),
    );
    let head =
        format!("POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n");
    let _ = c.send(head.as_bytes());
    let _ = c.send(&chunk(&before));
    let body_has = |text: &str| {
        e.net
            .server_events()
            .into_iter()
            .find(|ev| ev["kind"] == "body" && mentions(ev, text))
    };
    if poll(10, || body_has(&before)).is_none() {
        return Err(format!(
            "the upload never started: the upstream got no first chunk; events {:?}",
            e.net.server_events()
        ));
    }
    let closed_before = |ev: &Value| ev["kind"] == "closed";
    let closes = e
        .net
        .server_events()
        .into_iter()
        .filter(closed_before)
        .count();
    e.delete_rule(rule);
    let _ = c.send(&chunk(&after));
    let closed = c.until_closed(WAIT);
    // The upstream's side of the upload ends too (bounded; its absence is judged below).
    poll(WAIT, || {
        let now = e
            .net
            .server_events()
            .into_iter()
            .filter(closed_before)
            .count();
        (now > closes).then_some(())
    });
    if let Some(ev) = body_has(&after) {
        return Err(format!(
            "a chunk sent after the deletion was applied reached the upstream: {ev}"
        ));
    }
    if let Err(text) = closed {
        return Err(format!(
            "the gateway kept the upload open after the deletion; it had sent {text:?}"
        ));
    }
    e.decision(&c, since, "policy_revoked").map(drop)
}

/// Server-first: the upstream greets, the rule is deleted, then the client speaks.
fn server_first_after_revocation(e: &Env) -> Result<(), String> {
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:25")
        .map_err(|h| format!("CONNECT allowed.test:25 answered {h:?}"))?;
    if !c.read_until(b"220 ", 10) {
        return Err(format!("no greeting: {:?}", c.take_text()));
    }
    c.take_bytes();
    e.delete_rule("greet");
    let _ = c.send(b"AFTER-REVOKE\r\n");
    let closed = c.until_closed(WAIT);
    let heard = |ev: &Value| ev["kind"] == "greet" && ev["line"] == "AFTER-REVOKE";
    poll(WAIT, || {
        e.net
            .events()
            .into_iter()
            .find(|ev| ev["kind"] == "greet-end")
    });
    if let Some(ev) = e.net.events().into_iter().find(heard) {
        return Err(format!(
            "a line sent after the deletion was applied reached the upstream: {ev}"
        ));
    }
    if let Err(text) = closed {
        return Err(format!(
            "the gateway kept the tunnel open after the deletion; it had sent {text:?}"
        ));
    }
    e.decision(&c, since, "policy_revoked").map(drop)
}

/// An established raw tunnel relaying bytes both ways, the rule deleted between two writes.
fn relay_after_revocation(e: &Env) -> Result<(), String> {
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect("allowed.test:7")
        .map_err(|h| format!("CONNECT allowed.test:7 answered {h:?}"))?;
    let _ = c.send(b"BEFORE-REVOKE\n");
    if !c.read_until(b"BEFORE-REVOKE\n", 10) {
        return Err(format!("the tunnel relayed nothing: {:?}", c.take_text()));
    }
    c.take_bytes();
    e.delete_rule("echo");
    let _ = c.send(b"AFTER-REVOKE\n");
    let closed = c.until_closed(WAIT);
    poll(WAIT, || {
        e.net
            .events()
            .into_iter()
            .find(|ev| ev["kind"] == "echo-end")
    });
    let heard = |ev: &Value| ev["kind"] == "echo-data" && mentions(ev, "AFTER-REVOKE");
    if let Some(ev) = e.net.events().into_iter().find(heard) {
        return Err(format!(
            "bytes sent after the deletion was applied reached the upstream: {ev}"
        ));
    }
    match closed {
        Err(text) => Err(format!(
            "the gateway kept the tunnel open after the deletion; it had sent {text:?}"
        )),
        Ok(text) if text.contains("AFTER-REVOKE") => Err(format!(
            "the upstream echoed bytes sent after the deletion: {text:?}"
        )),
        Ok(_) => e.decision(&c, since, "policy_revoked").map(drop),
    }
}

#[test]
fn rule_deletion_stops_traffic_in_flight() {
    let e = env(
        "bypass-revocation",
        NetOptions {
            http: HttpServer::Node,
            ..NetOptions::default()
        },
        "DEFAULT_DENY",
        |_| {
            vec![
                json!({"name": "upload", "type": "FQDN", "destination": "allowed.test", "ports": [80], "paths": ["/api/*"], "description": "uploads"}),
                json!({"name": "tunnel", "type": "FQDN", "destination": "dns.allowed.test", "ports": [80], "description": "HTTP in a tunnel"}),
                json!({"name": "greet", "type": "FQDN", "destination": "allowed.test", "ports": [25], "description": "a server that speaks first"}),
                json!({"name": "echo", "type": "FQDN", "destination": "allowed.test", "ports": [7], "description": "a raw protocol"}),
            ]
        },
    );
    let mut failures = Vec::new();
    check(
        &mut failures,
        "2a. absolute-form chunked upload, rule deleted between chunks",
        upload_after_revocation(&e, None, "allowed.test", "upload", "a"),
    );
    check(
        &mut failures,
        "2b. server-first tunnel, rule deleted before the client speaks",
        server_first_after_revocation(&e),
    );
    check(
        &mut failures,
        "2c. raw tunnel relaying, rule deleted between writes",
        relay_after_revocation(&e),
    );
    check(
        &mut failures,
        "2d. chunked upload in a CONNECT tunnel, rule deleted between chunks",
        upload_after_revocation(
            &e,
            Some("dns.allowed.test:80"),
            "dns.allowed.test",
            "tunnel",
            "d",
        ),
    );
    case::assert_passed("rule deletion", &failures);
}
