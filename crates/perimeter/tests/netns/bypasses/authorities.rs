//! Findings 6, 7 and 10: malformed authorities; the SNI of a CONNECT to an IP literal; ECH.

use super::*;

/// Finding 6: malformed authorities are refused with a reason (400 and `x-perimeter-error`),
/// in CONNECT and in absolute form.
fn malformed_authorities() -> Vec<case::Case> {
    let mut cases = Vec::new();
    let homograph_443 = format!("{HOMOGRAPH_UTF8}:443");
    for (what, authority) in [
        ("a non-ASCII host (raw UTF-8)", homograph_443.as_str()),
        (
            "full-width port digits",
            "allowed.test:\u{ff14}\u{ff14}\u{ff13}",
        ),
        ("two ports", "allowed.test:443:443"),
    ] {
        cases.push(
            case(
                format!("6. CONNECT with {what}: {authority}"),
                raw_bytes(format!(
                    "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n"
                )),
            )
            .refused_with(400, Reason::Present),
        );
    }
    for (what, authority) in [
        ("a non-ASCII host (raw UTF-8)", HOMOGRAPH_UTF8),
        ("full-width port digits", "allowed.test:\u{ff18}\u{ff10}"),
        ("two ports", "allowed.test:80:80"),
    ] {
        cases.push(
            case(
                format!("6. absolute-form with {what}: {authority}"),
                raw_bytes(format!(
                    "GET http://{authority}/api/x HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
                )),
            )
            .refused_with(400, Reason::Present),
        );
    }
    cases
}

/// SNIs that the policy does not allow on the allowed upstream's address and port 443.
const SNI_NOT_ALLOWED: [&str; 2] = ["denied.test", "unknown.example"];

/// Finding 7: in a CONNECT to the allowed upstream's IP literal (a CIDR rule admits it), the
/// SNI must be a name the policy allows there.
fn sni_on_an_ip_literal(allowed: Ipv4Addr) -> Vec<case::Case> {
    let target = format!("{allowed}:443");
    let mut cases: Vec<case::Case> = SNI_NOT_ALLOWED
        .into_iter()
        .map(|sni| {
            let request =
                format!("GET /sni-{sni} HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
            case(
                format!("7. CONNECT {target} with SNI {sni}"),
                tls(&target, Some(sni), &request),
            )
            .closed()
        })
        .collect();
    cases.push(
        case(
            format!("7. CONNECT {target} with SNI allowed.test, which resolves there"),
            tls(
                &target,
                Some("allowed.test"),
                "GET /sni-allowed HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
            ),
        )
        .allowed(200)
        .contains("https path=/sni-allowed host=allowed.test sni=allowed.test")
        .serves(["/sni-allowed"]),
    );
    cases
}

#[test]
fn malformed_authorities_and_sni_on_ip_literals() {
    let e = env(
        "bypass-authorities",
        NetOptions::default(),
        "DEFAULT_DENY",
        |a| {
            vec![
                json!({"name": "allowed-address-tls", "type": "CIDR", "destination": format!("{}/32", a.allowed), "ports": [443], "description": "the allowed upstream's address over TLS"}),
                json!({"name": "allowed-http", "type": "FQDN", "destination": "allowed.test", "ports": [80], "description": "allowed over HTTP"}),
            ]
        },
    );
    let mut failures = case::run(&e.net, e.proxy(), malformed_authorities());
    failures.extend(case::run(
        &e.net,
        e.proxy(),
        sni_on_an_ip_literal(e.net.a.allowed),
    ));
    for sni in SNI_NOT_ALLOWED {
        let logged = e.decision_where(
            0,
            &format!("for SNI {sni} with reason sni_not_allowed"),
            |ev| ev["sni_or_host"] == sni && ev["reason"] == "sni_not_allowed",
        );
        let logged = logged.map_err(|why| {
            let mine: Vec<Value> =
                e.gw.decisions()
                    .into_iter()
                    .filter(|ev| ev["sni_or_host"] == sni)
                    .collect();
            format!("{why}; the events with that SNI: {mine:?}")
        });
        check(
            &mut failures,
            &format!("7. the decision event for SNI {sni}"),
            logged.map(drop),
        );
    }
    let target = format!("{}:443", e.net.a.allowed);
    check(
        &mut failures,
        &format!("10. CONNECT {target} with an encrypted_client_hello (outer SNI allowed.test)"),
        ech_refused(&e, &target),
    );
    case::assert_passed("malformed authorities and SNI on IP literals", &failures);
}

/// A TLS 1.3 ClientHello naming `sni`, carrying an `encrypted_client_hello` extension (0xfe0d,
/// an outer-type payload as clients send it: the real name is inside the encryption).
fn client_hello_with_ech(sni: &str) -> Vec<u8> {
    fn vec16(b: &[u8]) -> Vec<u8> {
        [&(b.len() as u16).to_be_bytes()[..], b].concat()
    }
    let server_name = vec16(&[&[0u8][..], &vec16(sni.as_bytes())].concat());
    let ech = [
        &[0u8][..],        // outer ClientHello
        &[0, 1, 0, 1],     // HPKE KDF and AEAD
        &[0x2a],           // config id
        &vec16(&[7; 32]),  // encapsulated key
        &vec16(&[9; 128]), // payload
    ]
    .concat();
    let extensions = [
        &0u16.to_be_bytes()[..],
        &vec16(&server_name),
        &0x002bu16.to_be_bytes(), // supported_versions: TLS 1.3
        &vec16(&[2, 3, 4]),
        &0xfe0du16.to_be_bytes(),
        &vec16(&ech),
    ]
    .concat();
    let body = [
        &[3u8, 3][..],
        &[1; 32],
        &[0],
        &vec16(&[0x13, 0x01]),
        &[1, 0],
        &vec16(&extensions),
    ]
    .concat();
    let len = (body.len() as u32).to_be_bytes();
    let handshake = [&[1u8, len[1], len[2], len[3]][..], &body].concat();
    [&[0x16u8, 3, 1][..], &vec16(&handshake)].concat()
}

/// Finding 10: under DEFAULT_DENY a ClientHello with `encrypted_client_hello` is closed with
/// `tls_encrypted_client_hello` (the name the server routes on is hidden), and nothing of it
/// reaches the upstream.
fn ech_refused(e: &Env, target: &str) -> Result<(), String> {
    let before = e.net.events().len();
    let since = e.decisions_so_far();
    let mut c = Conn::open(e.proxy());
    c.connect(target)
        .map_err(|h| format!("CONNECT {target} answered {h:?}"))?;
    let _ = c.send(&client_hello_with_ech("allowed.test"));
    match c.until_closed(WAIT) {
        Err(text) => return Err(format!("the tunnel was still open: {text:?}")),
        Ok(text) if !text.is_empty() => return Err(format!("bytes came back: {text:?}")),
        Ok(_) => {}
    }
    e.decision(&c, since, "tls_encrypted_client_hello")?;
    let reached: Vec<Value> = e.net.events()[before..]
        .iter()
        .filter(|ev| ev["kind"] != "accept" && ev["kind"] != "tcp-empty")
        .cloned()
        .collect();
    if reached.is_empty() {
        Ok(())
    } else {
        Err(format!("it reached the upstream: {reached:?}"))
    }
}
