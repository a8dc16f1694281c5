use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

fn parse(raw: &str) -> Result<Option<RequestHead>, HeadError> {
    parse_request_head(raw.as_bytes(), &HeadLimits::DEFAULT)
}

fn name(s: &str) -> Host {
    Host::Name(s.parse().unwrap())
}

fn auth(host: Host, port: u16) -> Authority {
    Authority { host, port }
}

/// Table of accepted heads: name, raw head, expected target, expected body framing.
#[test]
fn accepted_heads() {
    let v4 = Host::Ip(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)));
    let v6 = Host::Ip(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
    let cases: Vec<(&str, &str, RequestTarget, BodyFraming)> = vec![
        (
            "connect with host",
            "CONNECT Example.COM:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
            RequestTarget::Authority(auth(name("example.com"), 443)),
            BodyFraming::None,
        ),
        (
            "connect, host omits the connect port",
            "CONNECT example.com:8443 HTTP/1.1\r\nHost: EXAMPLE.com.\r\n\r\n",
            RequestTarget::Authority(auth(name("example.com"), 8443)),
            BodyFraming::None,
        ),
        (
            "connect without host",
            "CONNECT example.com:443 HTTP/1.1\r\nUser-Agent: curl\r\n\r\n",
            RequestTarget::Authority(auth(name("example.com"), 443)),
            BodyFraming::None,
        ),
        (
            "connect to ipv4",
            "CONNECT 198.51.100.10:443 HTTP/1.1\r\nHost: 198.51.100.10:443\r\n\r\n",
            RequestTarget::Authority(auth(v4.clone(), 443)),
            BodyFraming::None,
        ),
        (
            "connect to bracketed ipv6",
            "CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n\r\n",
            RequestTarget::Authority(auth(v6, 443)),
            BodyFraming::None,
        ),
        (
            "connect to idn",
            "CONNECT xn--bcher-kva.example:443 HTTP/1.1\r\n\r\n",
            RequestTarget::Authority(auth(name("bücher.example"), 443)),
            BodyFraming::None,
        ),
        (
            "absolute form, default port",
            "GET http://example.com/a/b?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            RequestTarget::Absolute {
                authority: auth(name("example.com"), 80),
                path: "/a/b?q=1".into(),
            },
            BodyFraming::None,
        ),
        (
            "absolute form, host names the default port",
            "GET HTTP://example.com HTTP/1.1\r\nHost: example.com:80\r\n\r\n",
            RequestTarget::Absolute {
                authority: auth(name("example.com"), 80),
                path: "/".into(),
            },
            BodyFraming::None,
        ),
        (
            "absolute form, query without path",
            "GET http://198.51.100.10:8080?x HTTP/1.1\r\nHost: 198.51.100.10:8080\r\n\r\n",
            RequestTarget::Absolute {
                authority: auth(v4, 8080),
                path: "/?x".into(),
            },
            BodyFraming::None,
        ),
        (
            "absolute form, http/1.0 without host",
            "GET http://example.com/ HTTP/1.0\r\n\r\n",
            RequestTarget::Absolute {
                authority: auth(name("example.com"), 80),
                path: "/".into(),
            },
            BodyFraming::None,
        ),
        (
            "origin form with content-length",
            "POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n",
            RequestTarget::Origin("/upload".into()),
            BodyFraming::ContentLength(5),
        ),
        (
            "identical content-length repeated",
            "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\ncontent-length: 5, 5\r\n\r\n",
            RequestTarget::Origin("/".into()),
            BodyFraming::ContentLength(5),
        ),
        (
            "chunked",
            "POST / HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: Chunked\r\n\r\n",
            RequestTarget::Origin("/".into()),
            BodyFraming::Chunked,
        ),
        (
            "options asterisk",
            "OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n",
            RequestTarget::Asterisk,
            BodyFraming::None,
        ),
    ];
    for (case, raw, target, body) in cases {
        let head = parse(raw)
            .unwrap_or_else(|e| panic!("{case}: {e}"))
            .unwrap_or_else(|| panic!("{case}: incomplete"));
        assert_eq!(head.target, target, "{case}");
        assert_eq!(head.body, body, "{case}");
        assert_eq!(head.head_len, raw.len(), "{case}");
    }
}

/// Table of refused heads: name, raw head, expected reason.
#[test]
fn refused_heads() {
    let cases: Vec<(&str, String, &str)> = vec![
        ("bare lf", "GET / HTTP/1.1\nHost: a.example\n\n".into(), "bare_lf"),
        ("bare lf in a header", "GET / HTTP/1.1\r\nHost: a.example\nX: y\r\n\r\n".into(), "bare_lf"),
        ("bare cr", "GET / HTTP/1.1\r\nHost: a.example\rX: y\r\n\r\n".into(), "bare_cr"),
        ("obs-fold", "GET / HTTP/1.1\r\nHost: a.example\r\nX-A: b\r\n  c\r\n\r\n".into(), "obs_fold"),
        ("leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n".into(), "malformed_request"),
        ("space before colon", "GET / HTTP/1.1\r\nHost : a.example\r\n\r\n".into(), "malformed_request"),
        ("http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(), "malformed_request"),
        ("two spaces in request line", "GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n".into(), "malformed_request"),
        ("too many headers", format!("GET / HTTP/1.1\r\nHost: a.example\r\n{}\r\n", "X: y\r\n".repeat(100)), "too_many_headers"),
        ("head too large", format!("GET /{} HTTP/1.1\r\n", "a".repeat(17 * 1024)), "head_too_large"),
        ("cl and te", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".into(), "ambiguous_framing"),
        ("differing cl", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".into(), "conflicting_content_length"),
        ("differing cl in a list", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5, 6\r\n\r\n".into(), "conflicting_content_length"),
        ("signed cl", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: +5\r\n\r\n".into(), "invalid_content_length"),
        ("huge cl", "POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 99999999999999999999\r\n\r\n".into(), "invalid_content_length"),
        ("te not chunked", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: gzip\r\n\r\n".into(), "unsupported_transfer_encoding"),
        ("te chunked twice", "POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".into(), "unsupported_transfer_encoding"),
        ("te on http/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".into(), "unsupported_transfer_encoding"),
        ("connect without port", "CONNECT example.com HTTP/1.1\r\n\r\n".into(), "connect_port_required"),
        ("connect port 0", "CONNECT example.com:0 HTTP/1.1\r\n\r\n".into(), "invalid_port"),
        ("connect port 65536", "CONNECT example.com:65536 HTTP/1.1\r\n\r\n".into(), "invalid_port"),
        ("connect port leading zero", "CONNECT example.com:0443 HTTP/1.1\r\n\r\n".into(), "invalid_port"),
        ("connect empty port", "CONNECT example.com: HTTP/1.1\r\n\r\n".into(), "invalid_port"),
        ("connect with path", "CONNECT example.com:443/x HTTP/1.1\r\n\r\n".into(), "invalid_port"),
        ("connect with userinfo", "CONNECT user:pw@example.com:443 HTTP/1.1\r\n\r\n".into(), "userinfo_in_authority"),
        ("absolute with userinfo", "GET http://allowed.example@evil.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n".into(), "userinfo_in_authority"),
        ("decimal ip", "CONNECT 2130706433:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("octal ip", "CONNECT 0177.0.0.1:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("hex ip", "CONNECT 0x7f.0.0.1:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("short ip", "GET http://127.1/ HTTP/1.1\r\nHost: 127.1\r\n\r\n".into(), "non_canonical_ip"),
        ("zero-padded ip", "CONNECT 127.000.0.1:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("ipv4 with trailing dot", "CONNECT 127.0.0.1.:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("unbracketed ipv6", "CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n".into(), "ipv6_brackets_required"),
        ("bracketed ipv4", "CONNECT [198.51.100.1]:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("ipv6 zone id", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("ipv6 unclosed bracket", "CONNECT [2001:db8::1:443 HTTP/1.1\r\n\r\n".into(), "non_canonical_ip"),
        ("ipv6 junk after bracket", "CONNECT [2001:db8::1]x:443 HTTP/1.1\r\n\r\n".into(), "invalid_port"),
        ("underscore name", "CONNECT a_b.example:443 HTTP/1.1\r\n\r\n".into(), "invalid_hostname"),
        ("single label", "CONNECT localhost:443 HTTP/1.1\r\n\r\n".into(), "invalid_hostname"),
        ("percent in host", "GET http://ex%61mple.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), "invalid_hostname"),
        ("https absolute form", "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), "unsupported_scheme"),
        ("ftp absolute form", "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), "unsupported_scheme"),
        ("relative target", "GET example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), "invalid_request_target"),
        ("fragment", "GET /a#b HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), "invalid_request_target"),
        ("asterisk with get", "GET * HTTP/1.1\r\nHost: example.com\r\n\r\n".into(), "invalid_request_target"),
        ("missing host", "GET / HTTP/1.1\r\n\r\n".into(), "missing_host"),
        ("two hosts", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\n\r\n".into(), "multiple_host_headers"),
        ("empty host", "GET / HTTP/1.1\r\nHost: \r\n\r\n".into(), "invalid_hostname"),
        ("connect host names another name", "CONNECT allowed.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".into(), "host_mismatch"),
        ("connect host names another port", "CONNECT allowed.example:443 HTTP/1.1\r\nHost: allowed.example:8443\r\n\r\n".into(), "host_mismatch"),
        ("connect host names the ip", "CONNECT allowed.example:443 HTTP/1.1\r\nHost: 198.51.100.10:443\r\n\r\n".into(), "host_mismatch"),
        ("absolute host differs", "GET http://allowed.example/ HTTP/1.1\r\nHost: evil.example\r\n\r\n".into(), "host_mismatch"),
        ("absolute host omits a non-default port", "GET http://allowed.example:8080/ HTTP/1.1\r\nHost: allowed.example\r\n\r\n".into(), "host_mismatch"),
        ("host with userinfo", "GET / HTTP/1.1\r\nHost: u@a.example\r\n\r\n".into(), "userinfo_in_authority"),
    ];
    for (case, raw, reason) in cases {
        match parse(&raw) {
            Err(e) => assert_eq!(e.as_str(), reason, "{case}: {e}"),
            Ok(head) => panic!("{case}: accepted {head:?}"),
        }
    }
}

#[test]
fn incomplete_heads_ask_for_more() {
    let raw = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    for end in 0..raw.len() {
        assert_eq!(parse(&raw[..end]), Ok(None), "prefix {end}");
    }
}

#[test]
fn tunnel_bytes_after_the_head_are_left_alone() {
    let mut raw = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n".to_vec();
    let head_len = raw.len();
    raw.extend_from_slice(&[22, 3, 1, 0, 5, b'\n', b'\r', 0, 0, 0]);
    let head = parse_request_head(&raw, &HeadLimits::DEFAULT)
        .unwrap()
        .unwrap();
    assert_eq!(head.head_len, head_len);
}

#[test]
fn limits_are_configurable() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_headers: 2,
    };
    let ok = b"GET / HTTP/1.1\r\nHost: a.example\r\nX: 1\r\n\r\n";
    assert!(parse_request_head(ok, &limits).unwrap().is_some());
    let three = b"GET / HTTP/1.1\r\nHost: a.example\r\nX: 1\r\nY: 2\r\n\r\n";
    assert_eq!(
        parse_request_head(three, &limits),
        Err(HeadError::TooManyHeaders { limit: 2 })
    );
    let long = format!(
        "GET /{} HTTP/1.1\r\nHost: a.example\r\n\r\n",
        "a".repeat(40)
    );
    assert_eq!(
        parse_request_head(long.as_bytes(), &limits),
        Err(HeadError::HeadTooLarge { limit: 64 })
    );
}

#[test]
fn destination_of_origin_form_comes_from_host() {
    let head = parse("GET /x HTTP/1.1\r\nHost: Example.com\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(head.destination(80), Some(auth(name("example.com"), 80)));
    let head = parse("GET /x HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert_eq!(head.destination(80), None);
    assert_eq!(
        head.header_values("host").count(),
        0,
        "no Host header was sent"
    );
}

#[test]
fn host_agreement_helper() {
    let target = auth(name("example.com"), 443);
    let cases: Vec<(&str, &str, u16, bool)> = vec![
        ("same name and port", "example.com:443", 443, true),
        ("normalised name", "EXAMPLE.com.:443", 443, true),
        (
            "port omitted, equal to the connect port",
            "example.com",
            443,
            true,
        ),
        ("port omitted, default differs", "example.com", 80, false),
        ("other port", "example.com:444", 443, false),
        ("subdomain", "www.example.com:443", 443, false),
        ("ip for a name", "198.51.100.10:443", 443, false),
    ];
    for (case, host, omitted, ok) in cases {
        let h = HostHeader::parse(host.as_bytes()).unwrap();
        assert_eq!(h.agrees_with(&target, omitted).is_ok(), ok, "{case}");
    }
}

#[test]
fn host_header_spellings() {
    assert_eq!(
        HostHeader::parse(b"  [2001:DB8::1]:8080 ").unwrap(),
        HostHeader {
            host: Host::Ip("2001:db8::1".parse().unwrap()),
            port: Some(8080)
        }
    );
    assert_eq!(
        HostHeader::parse(b"\xff.example"),
        Err(HeadError::HostNotText)
    );
    assert_eq!(
        HostHeader::parse("bücher.example".as_bytes()).unwrap().host,
        name("xn--bcher-kva.example")
    );
}

#[test]
fn authority_display_round_trips() {
    for s in ["example.com:443", "198.51.100.1:80", "[2001:db8::1]:8443"] {
        let (host, port) = parse_host_port(s).unwrap();
        let a = Authority {
            host,
            port: port.unwrap(),
        };
        assert_eq!(a.to_string(), s);
    }
}

// ---- properties ----

fn arb_host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z][a-zA-Z0-9-]{0,8}[a-zA-Z0-9]\\.(example|test|com)\\.?",
        any::<[u8; 4]>().prop_map(|o| Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
        "[0-9a-fx.:%\\[\\]@_]{1,16}",
    ]
}

fn arb_head() -> impl Strategy<Value = String> {
    let target = (
        arb_host(),
        proptest::option::of(0u32..70_000),
        "(/[a-z0-9?=&]{0,6}){0,3}",
    );
    let headers = proptest::collection::vec(
        prop_oneof![
            "X-[A-Za-z]{1,6}: [ -~]{0,10}",
            "Content-Length: [0-9]{1,3}",
            Just("Transfer-Encoding: chunked".to_owned()),
            arb_host().prop_map(|h| format!("Host: {h}")),
        ],
        0..5,
    );
    (any::<u8>(), target, headers).prop_map(|(form, (host, port, path), headers)| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let line = match form % 3 {
            0 => format!("CONNECT {host}{port} HTTP/1.1"),
            1 => format!("GET http://{host}{port}{path} HTTP/1.1"),
            _ => format!("GET /{path} HTTP/1.1"),
        };
        let mut raw = line;
        for h in headers {
            raw.push_str("\r\n");
            raw.push_str(&h);
        }
        raw.push_str("\r\n\r\n");
        raw
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_request_head(&data, &HeadLimits::DEFAULT);
    }

    #[test]
    fn accepted_heads_hold_invariants(raw in arb_head(), cut in any::<prop::sample::Index>()) {
        let result = parse(&raw);
        // Any prefix is incomplete or refused for a reason already visible in it.
        let end = cut.index(raw.len());
        let prefix = parse_request_head(&raw.as_bytes()[..end], &HeadLimits::DEFAULT);
        match (&result, &prefix) {
            (_, Ok(None)) => {}
            (Err(full), Err(part)) => prop_assert_eq!(full, part),
            (full, part) => prop_assert!(false, "prefix {end} gave {part:?}, whole gave {full:?}"),
        }
        if let Ok(Some(head)) = result {
            prop_assert_eq!(head.head_len, raw.len());
            // The destination is normalised: its display form parses to itself.
            if let Some(dest) = head.destination(80) {
                let (host, port) = parse_host_port(&dest.to_string()).unwrap();
                prop_assert_eq!(host, dest.host.clone());
                prop_assert_eq!(port, Some(dest.port));
            }
            if let (Some(h), Some(dest)) = (&head.host, head.destination(80)) {
                prop_assert_eq!(&h.host, &dest.host);
            }
        }
    }
}
