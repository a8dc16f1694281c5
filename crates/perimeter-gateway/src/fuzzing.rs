//! Entry points for the fuzz targets in `fuzz/` (one per parser). Each parses arbitrary bytes,
//! asserts the parser's invariants and must never panic otherwise. They also run under
//! `cargo test` over generated inputs.

use crate::http_head::{HeadLimits, RequestHead, parse_host_port, parse_request_head};
use crate::tls::{ClientHello, parse_client_hello};

/// `parse_client_hello` never panics; never asks for more than its wire cap; and answers
/// monotonically: once a prefix of the input yields a final answer, the whole input yields the
/// same one (a `NeedMore(n)` hint is a lower bound: bytes already seen may be rejected early).
pub fn fuzz_client_hello(data: &[u8]) {
    let whole = parse_client_hello(data);
    if let ClientHello::NeedMore(n) = whole {
        assert!(n >= 1);
        assert!(
            data.len() + n <= crate::tls::client_hello::MAX_CLIENT_HELLO_WIRE_LEN,
            "asked for {n} more bytes after {}",
            data.len()
        );
    }
    for end in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        match parse_client_hello(&data[..end]) {
            ClientHello::NeedMore(n) => {
                let still = (end + n - 1).min(data.len());
                // The hint is a lower bound: a longer prefix may still need more, or may already
                // answer (early rejection of bytes seen), but then with the whole input's answer.
                if still < data.len() {
                    match parse_client_hello(&data[..still]) {
                        ClientHello::NeedMore(_) => {}
                        answer => assert_eq!(answer, whole, "prefix {still} answered differently"),
                    }
                }
            }
            prefix => assert_eq!(prefix, whole, "prefix {end} answered differently"),
        }
    }
    if let ClientHello::Parsed { sni: Some(sni), .. } = &whole {
        assert!(!sni.is_empty() && sni.bytes().all(|b| b.is_ascii_graphic()));
    }
}

/// The classification of a tunnel's first bytes never panics; never asks for more bytes once
/// it holds its limit (so a client cannot make the gateway buffer without bound); and what it
/// serves as HTTP is a complete request head by hyper's parser.
pub fn fuzz_first_bytes(data: &[u8]) {
    use crate::listen::first_bytes::{FirstBytes, classify};
    for max in [data.len().max(1), 64, 16 * 1024] {
        let got = classify(data, max);
        if data.len() >= max {
            assert_ne!(got, FirstBytes::NeedMore, "more asked at the limit {max}");
        }
        if got == FirstBytes::Http {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let parsed = httparse::Request::new(&mut headers).parse(data);
            assert!(
                matches!(parsed, Ok(httparse::Status::Complete(_))),
                "served as HTTP but not a complete head: {parsed:?}"
            );
        }
    }
}

/// `parse_request_head` never panics; a complete head re-parses to itself from its own bytes;
/// its destination is normalised; and prefixes are incomplete or refused the same way.
pub fn fuzz_http_head(data: &[u8]) {
    let limits = HeadLimits {
        max_head_bytes: 4096,
        max_headers: 32,
    };
    let whole = parse_request_head(data, &limits);
    if let Ok(Some(head)) = &whole {
        check_head(head, data, &limits);
    }
    let end = data.len() / 2;
    match (parse_request_head(&data[..end], &limits), &whole) {
        (Ok(None), _) => {}
        // The whole head fits in the prefix (what follows it is a body).
        (Ok(Some(part)), Ok(Some(full))) => {
            assert_eq!(&part, full, "prefix {end} parsed differently")
        }
        (Err(part), Err(full)) => assert_eq!(&part, full, "prefix {end} refused differently"),
        (part, full) => panic!("prefix {end} gave {part:?}, whole gave {full:?}"),
    }
}

fn check_head(head: &RequestHead, data: &[u8], limits: &HeadLimits) {
    assert!(head.head_len <= data.len() && head.head_len <= limits.max_head_bytes);
    assert!(data[..head.head_len].ends_with(b"\r\n\r\n"));
    let again = parse_request_head(&data[..head.head_len], limits)
        .expect("a head re-parses")
        .expect("a head is complete");
    assert_eq!(&again, head);
    if let Some(dest) = head.destination(80) {
        let (host, port) = parse_host_port(&dest.to_string()).expect("destination re-parses");
        assert_eq!(host, dest.host);
        assert_eq!(port, Some(dest.port));
    }
}

#[cfg(test)]
mod tests;
