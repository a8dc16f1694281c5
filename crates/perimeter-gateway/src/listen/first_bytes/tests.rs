use proptest::prelude::*;

use super::*;

const MAX: usize = 16 * 1024;

#[test]
fn first_bytes_are_classified() {
    use FirstBytes::{Http, Invalid, NeedMore, Other};
    let cases: &[(&str, &[u8], FirstBytes)] = &[
        ("nothing yet", b"", NeedMore),
        ("method so far", b"GE", NeedMore),
        (
            "head so far",
            b"GET / HTTP/1.1\r\nHost: a.example.com\r\n",
            NeedMore,
        ),
        (
            "a request",
            b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
            Http,
        ),
        (
            "leading empty line",
            b"\r\nGET /secret HTTP/1.1\r\nHost: vhost.test\r\n\r\n",
            Http,
        ),
        (
            "leading bare LF lines",
            b"\n\nGET /secret HTTP/1.1\r\nHost: vhost.test\r\n\r\n",
            Http,
        ),
        (
            "bare LF line ends",
            b"GET /secret HTTP/1.1\nHost: vhost.test\n\n",
            Http,
        ),
        (
            "lowercase method",
            b"get /secret HTTP/1.1\r\nHost: vhost.test\r\n\r\n",
            Http,
        ),
        (
            "extension method",
            b"PURGE /secret HTTP/1.1\r\nHost: vhost.test\r\n\r\n",
            Http,
        ),
        (
            "http/1.0 without host",
            b"GET /secret HTTP/1.0\r\n\r\n",
            Http,
        ),
        (
            "leading space",
            b" GET /secret HTTP/1.1\r\nHost: vhost.test\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "leading tab",
            b"\tGET /secret HTTP/1.1\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "tab delimiters",
            b"GET\t/secret\tHTTP/1.1\r\nHost: vhost.test\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "double space",
            b"GET  /secret HTTP/1.1\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "trailing space",
            b"GET / HTTP/1.1 \r\nHost: other.example\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "lowercase version",
            b"GET / http/1.1\r\nHost: other.example\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost : other.example\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        (
            "control byte in target",
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            Invalid(Why::InvalidHttpRequest),
        ),
        ("http/0.9", b"GET /secret\r\n", Invalid(Why::Http09Request)),
        (
            "http/0.9 lowercase, bare LF",
            b"get /secret\n",
            Invalid(Why::Http09Request),
        ),
        (
            "http/0.9 after empty lines",
            b"\r\n\r\nGET /secret\r\n",
            Invalid(Why::Http09Request),
        ),
        (
            "http/0.9 absolute",
            b"GET http://vhost.test/secret\r\n",
            Invalid(Why::Http09Request),
        ),
        ("only empty lines so far", b"\r\n\r\n", NeedMore),
        ("raw text", b"hello raw\n", Other),
        ("binary", b"\x00\x00\x00\x08\x04\xd2\x16\x2f", Other),
        ("binary with high bit", b"\xc3\x11\x9a\x00\x42\x17", Other),
        ("EHLO so far", b"EHLO", NeedMore),
        ("EHLO and host so far", b"EHLO mail", NeedMore),
        ("SMTP", b"EHLO mail.example.com\r\n", Other),
        ("Redis inline", b"SET k v\r\n", Other),
        ("Redis RESP", b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", Other),
        ("command without argument", b"QUIT\r\n", Other),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(
            &classify(bytes, MAX),
            want,
            "{name}: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn tls_first_bytes_are_judged_by_the_hello_parser() {
    assert_eq!(
        classify(&[0x80, 0x2e, 0x01, 0x03, 0x01], MAX),
        FirstBytes::Invalid(Why::Tls(crate::tls::InvalidHello::Sslv2Hello))
    );
    assert_eq!(classify(&[0x16, 0x03], MAX), FirstBytes::NeedMore);
    // A hello that never completes within the limit.
    let mut big = vec![
        0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xf0, 0x03, 0x03,
    ];
    big.resize(100, 0);
    assert_eq!(
        classify(&big, 64),
        FirstBytes::Invalid(Why::ClientHelloTooLarge)
    );
}

#[test]
fn a_head_that_never_ends_is_refused_at_the_limit() {
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(200, b'a');
    assert_eq!(
        classify(&head, 200),
        FirstBytes::Invalid(Why::RequestHeadTooLarge)
    );
    let mut line = b"GET /".to_vec();
    line.resize(200, b'a');
    assert_eq!(
        classify(&line, 200),
        FirstBytes::Invalid(Why::RequestHeadTooLarge)
    );
}

fn lenient_request() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            prop::sample::select(vec![&b"\r\n"[..], b"\n", b" ", b"\t"]),
            0..3,
        ),
        "[A-Za-z]{1,10}",
        prop::sample::select(vec![&b" "[..], b"\t", b"  "]),
        "/[a-z0-9/._%-]{0,20}",
        prop::sample::select(vec![&b" "[..], b"\t", b"  "]),
        prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]),
        prop::sample::select(vec![&b"\r\n"[..], b"\n"]),
        "[a-z]{1,10}\\.test",
    )
        .prop_map(|(lead, method, sp1, target, sp2, version, eol, host)| {
            let mut out = lead.concat();
            out.extend_from_slice(method.as_bytes());
            out.extend_from_slice(sp1);
            out.extend_from_slice(target.as_bytes());
            out.extend_from_slice(sp2);
            out.extend_from_slice(version.as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(b"Host: ");
            out.extend_from_slice(host.as_bytes());
            out.extend_from_slice(eol);
            out.extend_from_slice(eol);
            out
        })
}

proptest! {
    /// Whatever leniency a server might have, a request is never relayed as another protocol:
    /// it is served request by request (Host and path checked) or refused.
    #[test]
    fn requests_in_any_lenient_spelling_are_never_other(req in lenient_request()) {
        let got = classify(&req, MAX);
        prop_assert!(
            matches!(got, FirstBytes::Http | FirstBytes::Invalid(_)),
            "{:?} -> {:?}", String::from_utf8_lossy(&req), got
        );
    }

    /// What httparse (hyper's parser, which serves the requests) reads as a complete request
    /// is served as HTTP or refused, never relayed unchecked.
    #[test]
    fn what_httparse_parses_is_never_relayed_unchecked(bytes in prop::collection::vec(any::<u8>(), 0..64), req in lenient_request()) {
        for input in [bytes.clone(), [req.clone(), bytes.clone()].concat()] {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let parsed = matches!(
                httparse::Request::new(&mut headers).parse(&input),
                Ok(httparse::Status::Complete(_))
            );
            let got = classify(&input, MAX);
            if parsed {
                prop_assert!(
                    matches!(got, FirstBytes::Http | FirstBytes::Invalid(_) | FirstBytes::Tls { .. }),
                    "{:?} -> {:?}", String::from_utf8_lossy(&input), got
                );
            }
        }
    }
}
