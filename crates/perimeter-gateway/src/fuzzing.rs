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

/// `proxy_protocol::parse` never panics; never asks for more than its cap; a header's length
/// lies within the input and its bytes alone parse to it; and it answers monotonically: a
/// prefix of the input needs more or gives the whole input's answer (a prefix shorter than a
/// header needs more).
pub fn fuzz_proxy_protocol(data: &[u8]) {
    use crate::proxy_protocol::{MAX_HEADER_LEN, Parsed, parse, starts_with_signature};
    let whole = parse(data);
    match &whole {
        Parsed::NeedMore => assert!(data.len() < MAX_HEADER_LEN, "more asked past the cap"),
        Parsed::Header(h) => {
            assert!(h.header_len <= data.len() && h.header_len <= MAX_HEADER_LEN);
            assert_eq!(parse(&data[..h.header_len]), whole);
            assert_eq!(starts_with_signature(data), Some(true));
        }
        Parsed::Invalid(_) => {}
    }
    for end in [data.len() / 3, data.len() / 2, data.len().saturating_sub(1)] {
        match (parse(&data[..end]), &whole) {
            (Parsed::NeedMore, _) => {}
            (_, Parsed::Header(h)) if end < h.header_len => {
                panic!("prefix {end} of a {}-byte header answered", h.header_len)
            }
            (prefix, _) => assert_eq!(&prefix, &whole, "prefix {end} answered differently"),
        }
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

/// The DNS listener's query path ([`answer_bytes`](crate::listen::dns_listener::answer_bytes))
/// never panics, over UDP and TCP; answers every message of a header's length or more that is
/// not itself a response, with the query's id, as a response with one of the listener's
/// response codes; and never sends a UDP answer larger than 512 bytes (or what an EDNS client
/// advertised, up to [`MAX_UDP_PAYLOAD`](crate::listen::dns_listener::MAX_UDP_PAYLOAD)).
/// The policy names an endpoint and a rule; allowed names resolve against a loopback port
/// that answers nothing, so nothing leaves the machine.
pub fn fuzz_dns_query(data: &[u8]) {
    use hickory_server::net::xfer::Protocol;
    use hickory_server::proto::op::{Message, MessageType, ResponseCode};

    use crate::listen::dns_listener::{MAX_UDP_PAYLOAD, answer_bytes};

    let (rt, handler) = dns_fuzz_handler();
    let client = std::net::SocketAddr::from(([127, 0, 0, 1], 40000));
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let Some(answer) = rt.block_on(answer_bytes(handler, data, client, protocol)) else {
            assert!(
                data.len() < 12 || data[2] & 0x80 != 0,
                "no answer to a query: {data:?}"
            );
            continue;
        };
        let m = Message::from_vec(&answer).expect("an answer decodes");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_eq!(m.metadata.id, u16::from_be_bytes([data[0], data[1]]));
        assert!(matches!(
            m.metadata.response_code,
            ResponseCode::NoError
                | ResponseCode::FormErr
                | ResponseCode::Refused
                | ResponseCode::NotImp
                | ResponseCode::NXDomain
                | ResponseCode::ServFail
        ));
        if protocol == Protocol::Udp {
            let limit = Message::from_vec(data)
                .ok()
                .and_then(|q| q.edns)
                .map_or(512, |e| e.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            assert!(
                answer.len() <= usize::from(limit),
                "{} bytes over UDP",
                answer.len()
            );
        }
    }
}

/// One runtime and handler for every fuzz input.
fn dns_fuzz_handler() -> &'static (
    tokio::runtime::Runtime,
    crate::listen::dns_listener::DnsHandler,
) {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use crate::decision::DecisionSink;
    use crate::dns::{Resolver, ResolverConfig};
    use crate::listen::dns_listener::DnsHandler;
    use crate::listen::{GatewayLimits, OwnAddresses, ProxyContext};

    static HANDLER: OnceLock<(tokio::runtime::Runtime, DnsHandler)> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let doc = perimeter_policy::PolicyDocument {
            format: perimeter_policy::POLICY_FORMAT,
            version: 1,
            cluster_id: "fuzz".into(),
            traffic_policy: perimeter_policy::TrafficPolicy::DefaultDeny,
            rules: vec![perimeter_policy::RuleDoc {
                id: "r-1".into(),
                name: "allowed".into(),
                rule_type: perimeter_policy::RuleType::Fqdn,
                destination: "*.example.com".into(),
                ports: vec![443],
                paths: vec![],
                crl_managed: false,
            }],
            ingress: Default::default(),
            private_endpoints: vec![perimeter_policy::EndpointDoc {
                id: "pe-1".into(),
                endpoint_address: "pe-1.example.net".into(),
                domain_names: vec!["*.example.org".into()],
                backends: vec![perimeter_policy::BackendDoc::plain("127.0.0.1:9")],
                region: "us-east-1".into(),
                connection_id: "pe-1-connection".into(),
                ports: vec![],
                proxy_protocol: false,
                special_addresses: false,
            }],
            tls_inspection: None,
        };
        let snap = perimeter_policy::compile(&doc).expect("the fuzz policy compiles");
        let resolver = Resolver::new(ResolverConfig {
            servers: vec![std::net::SocketAddr::from(([127, 0, 0, 1], 9))],
            hosts_file: None,
            timeout: Duration::from_millis(20),
        })
        .expect("a resolver");
        let (tx, snapshots) = tokio::sync::watch::channel(Arc::new(snap));
        // The policy never changes: the sender may go.
        drop(tx);
        let ctx = ProxyContext {
            inspection: Default::default(),
            endpoint_answer: None,
            snapshots,
            resolver: Arc::new(resolver),
            limits: GatewayLimits::default(),
            sink: DecisionSink::new("fuzz"),
            own: OwnAddresses::fixed([]),
        };
        let handler = DnsHandler::new(ctx, Some(std::net::IpAddr::from([127, 0, 0, 77])));
        (rt, handler)
    })
}

#[cfg(test)]
mod tests;
