//! Tables of hostname spellings (DESIGN "Hostnames"): case, trailing dots, empty labels, and
//! IDN homographs.

use crate::case::{Case, case, curl, curl_with, raw_bytes, tls};
use crate::fixture::{HOMOGRAPH_PUNY, HOMOGRAPH_UTF8};

/// Trailing dots and mixed case name the same host as normalised; empty labels are not names.
pub fn spellings_of_one_name(ca: &str) -> Vec<Case> {
    let mut cases = vec![
        case(
            "upper case and a trailing dot",
            curl("http://ALLOWED.Test./api/case"),
        )
        .allowed(200)
        .serves(["/api/case"]),
        case(
            "upper case and a trailing dot, over TLS",
            curl_with(&["--cacert", ca], "https://Allowed.TEST./case"),
        )
        .allowed(200)
        .serves(["/case"]),
    ];
    for url in [
        "http://denied.test/api/x",
        "http://DENIED.test./api/x",
        "http://DeNiEd.TeSt/api/x",
        "http://other.test/api/x",
    ] {
        cases.push(case(url, curl(url)).refused(403, "no_rule_for_destination"));
    }
    for url in ["https://denied.test/", "https://DENIED.TEST./"] {
        cases.push(
            case(url, curl_with(&["--cacert", ca], url)).refused(403, "no_rule_for_destination"),
        );
    }
    for target in ["DENIED.test.:443", "denied.test.:443"] {
        cases.push(
            case(
                format!("CONNECT {target}"),
                raw_bytes(format!("CONNECT {target} HTTP/1.1\r\n\r\n")),
            )
            .refused(403, "no_rule_for_destination"),
        );
    }
    for target in [
        "allowed.test..:443",
        "denied.test..:443",
        ".allowed.test:443",
    ] {
        cases.push(
            case(
                format!("CONNECT {target}"),
                raw_bytes(format!("CONNECT {target} HTTP/1.1\r\n\r\n")),
            )
            .refused(400, "invalid_hostname"),
        );
    }
    cases
}

/// The IDN homograph of allowed.test (Cyrillic а) is another name, denied. The hosts file
/// points it at the allowed upstream, so a wrong allow would show there.
pub fn homographs(ca: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for url in [
        format!("http://{HOMOGRAPH_PUNY}/api/x"),
        format!("http://{HOMOGRAPH_UTF8}/api/x"),
    ] {
        cases.push(case(url.clone(), curl(url)).refused(403, "no_rule_for_destination"));
    }
    for url in [
        format!("https://{HOMOGRAPH_PUNY}/"),
        format!("https://{HOMOGRAPH_UTF8}/"),
    ] {
        cases.push(
            case(url.clone(), curl_with(&["--cacert", ca], url))
                .refused(403, "no_rule_for_destination"),
        );
    }
    // Raw UTF-8 on the wire, and the homograph as SNI inside an allowed tunnel.
    cases.push(
        case(
            "raw UTF-8 homograph in CONNECT",
            raw_bytes(format!(
                "CONNECT {HOMOGRAPH_UTF8}:443 HTTP/1.1\r\nHost: {HOMOGRAPH_UTF8}:443\r\n\r\n"
            )),
        )
        .refused_one_of(&[403, 400]),
    );
    cases.push(
        case(
            "the homograph as SNI in a tunnel to allowed.test",
            tls(
                "allowed.test:443",
                Some(HOMOGRAPH_PUNY),
                "GET /homograph HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
            ),
        )
        .closed(),
    );
    cases
}
