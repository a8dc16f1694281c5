//! Tables of SNI and Host consistency (DESIGN "Consistency": domain fronting, SNI spoofing).

use crate::case::{Case, case, curl_with, raw_bytes, raw_until_closed, tls};

/// CONNECT to the allowed name with another SNI (or none): the tunnel is closed before
/// anything reaches the upstream. The gateway dials before it sees the ClientHello, so the
/// upstream may see a connection, but never a byte of it.
pub fn sni_other_than_the_connect_name(ca: &str) -> Vec<Case> {
    let request = "GET /sni-mismatch HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n";
    let mut cases: Vec<Case> = [Some("denied.test"), Some("dns.allowed.test"), None]
        .into_iter()
        .map(|sni| {
            case(
                format!("CONNECT allowed.test:443 with SNI {sni:?}"),
                tls("allowed.test:443", sni, request),
            )
            .closed()
        })
        .collect();
    // Same through curl: CONNECT allowed.test:443 but the TLS name (and SNI) is denied.test.
    cases.push(
        case(
            "curl --connect-to: CONNECT allowed.test, TLS to denied.test",
            curl_with(
                &[
                    "--cacert",
                    ca,
                    "--connect-to",
                    "denied.test:443:allowed.test:443",
                ],
                "https://denied.test/",
            ),
        )
        .closed(),
    );
    cases
}

/// A Host header differing from the target.
pub fn host_other_than_the_target() -> Vec<Case> {
    vec![
        case(
            "absolute-form Host: denied.test",
            curl_with(&["-H", "Host: denied.test"], "http://allowed.test/api/x"),
        )
        .refused(400, "host_mismatch"),
        case(
            "absolute-form to denied.test, Host: allowed.test",
            curl_with(&["-H", "Host: allowed.test"], "http://denied.test/api/x"),
        )
        .refused(400, "host_mismatch"),
        case(
            "absolute-form Host with another port",
            curl_with(
                &["-H", "Host: allowed.test:8080"],
                "http://allowed.test/api/x",
            ),
        )
        .refused(400, "host_mismatch"),
        // user@host: the authority names denied.test, whatever the "user" part says.
        case(
            "userinfo in the authority",
            raw_bytes(
                &b"GET http://allowed.test@denied.test/api/x HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n"[..],
            ),
        )
        .refused(400, "userinfo_in_authority"),
        case(
            "CONNECT with Host: denied.test",
            raw_bytes(&b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: denied.test:443\r\n\r\n"[..]),
        )
        .refused(400, "host_mismatch"),
        // Plain HTTP inside a tunnel to allowed.test:443 naming another Host: closed, not
        // relayed.
        case(
            "plaintext HTTP in a TLS tunnel naming another Host",
            raw_bytes(
                &b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\nGET / HTTP/1.1\r\nHost: denied.test\r\n\r\n"[..],
            ),
        )
        .closed(),
    ]
}

/// Plaintext HTTP in a tunnel: every request must name the CONNECT target, not only the first
/// (else one tunnel fronts for any virtual host at the address).
pub fn plaintext_requests_in_a_tunnel() -> Vec<Case> {
    vec![
        case(
            "the second request of a tunnel names another Host",
            raw_until_closed(
                &b"CONNECT dns.allowed.test:80 HTTP/1.1\r\nHost: dns.allowed.test:80\r\n\r\n\
                   GET /in-tunnel HTTP/1.1\r\nHost: dns.allowed.test\r\n\r\n\
                   GET /fronted HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n"[..],
            ),
        )
        .allowed(200)
        .contains("path=/in-tunnel host=dns.allowed.test")
        .contains("HTTP/1.1 400 ")
        .contains("x-perimeter-error: host_mismatch")
        .lacks("path=/fronted")
        .serves(["/in-tunnel"]),
    ]
}
