//! The first request head: what takes the fast path and what goes to hyper, and the proxy
//! end to end over loopback on both paths (a CONNECT answered without hyper, with bytes sent
//! before the answer; a refusal followed by a CONNECT on the same connection, which hyper
//! serves and whose tunnel still relays through the socket; a head that never completes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use perimeter_policy::{POLICY_FORMAT, PolicyDocument, RuleDoc, RuleType, TrafficPolicy};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::decision::DecisionSink;
use crate::dns::{Resolver, ResolverConfig};
use crate::http_head::HeadError;
use crate::listen::refusal::{Refusal, Then, Why};
use crate::listen::{GatewayLimits, OwnAddresses, ProxyContext};

fn head(bytes: &[u8]) -> Option<FirstHead> {
    classify(&mut BytesMut::from(bytes), 16 * 1024)
}

#[test]
fn plain_connect_is_taken_with_what_follows_its_head() {
    assert_eq!(
        head(b"CONNECT a.example.com:443 HTTP/1.1\r\nHost: a.example.com:443\r\nProxy-Connection: keep-alive\r\n\r\n\x16\x03\x01"),
        Some(FirstHead::Connect {
            authority: "a.example.com:443".into(),
            host: HostField::One(Bytes::from_static(b"a.example.com:443")),
            rest: Bytes::from_static(b"\x16\x03\x01"),
        })
    );
    assert_eq!(
        head(b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n"),
        Some(FirstHead::Connect {
            authority: "127.0.0.1:80".into(),
            host: HostField::Many,
            rest: Bytes::new(),
        })
    );
    assert_eq!(
        head(b"CONNECT 127.0.0.1:80 HTTP/1.1\r\n\r\n"),
        Some(FirstHead::Connect {
            authority: "127.0.0.1:80".into(),
            host: HostField::None,
            rest: Bytes::new(),
        })
    );
}

#[test]
fn everything_else_goes_to_hyper_whole() {
    for other in [
        &b"GET http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\n\r\nrest"[..],
        b"CONNECT a.example.com:443 HTTP/1.0\r\n\r\n",
        b"CONNECT a.example.com:443 HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"CONNECT a.example.com:443 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        b"CONNECT a.example.com:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        // hyper serves these as it always did; the handler names what is wrong.
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET http://a.example.com/ HTTP/1.1\nHost: a.example.com\n\n",
    ] {
        assert_eq!(
            head(other),
            Some(FirstHead::Other(Bytes::copy_from_slice(other))),
            "{:?}",
            String::from_utf8_lossy(other)
        );
    }
    assert_eq!(head(b"CONNECT a.example.com:443 HTTP/1.1\r\nHost: a"), None);
}

#[test]
fn heads_with_bad_framing_or_syntax_are_refused_with_the_parser_s_reason() {
    for (bad, reason) in [
        (
            &b"POST http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            "ambiguous_framing",
        ),
        (
            b"POST http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "ambiguous_framing",
        ),
        (
            b"POST http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "conflicting_content_length",
        ),
        (
            b"POST http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: gzip\r\n\r\n",
            "unsupported_transfer_encoding",
        ),
        (b"GET /\x01 HTTP/1.1\r\n\r\n", "malformed_request"),
        // Destination and Host problems of the first head are named here too, whatever hyper
        // would make of them (a target it cannot parse gets its bare 400).
        (b"CONNECT http://a.example.com/ HTTP/1.1\r\n\r\n", "invalid_port"),
        (b"CONNECT /path HTTP/1.1\r\n\r\n", "invalid_hostname"),
        (b"GET http://0177.0.0.1/ HTTP/1.1\r\nHost: 0177.0.0.1\r\n\r\n", "non_canonical_ip"),
        (b"GET http://a.example.com/ HTTP/1.1\r\nHost: b.example.com\r\n\r\n", "host_mismatch"),
        ("CONNECT \u{430}llowed.test:443 HTTP/1.1\r\n\r\n".as_bytes(), "invalid_request_target"),
        ("CONNECT allowed.test:\u{ff14}\u{ff14}\u{ff13} HTTP/1.1\r\n\r\n".as_bytes(), "invalid_request_target"),
        (b"CONNECT allowed.test:80:80 HTTP/1.1\r\n\r\n", "ipv6_brackets_required"),
        ("GET http://\u{430}llowed.test/ HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(), "invalid_request_target"),
        (b"GET http://a.example.com/ HTTP/1.1\nHost: b.example.com\n\n", "host_mismatch"),
        (
            b"GET http://a.example.com/ HTTP/1.1\r\nHost: a.example.com\r\nX: a\rb\r\n\r\n",
            "bare_cr",
        ),
    ] {
        match head(bad) {
            Some(FirstHead::Refused(e)) => {
                assert_eq!(e.as_str(), reason, "{:?}", String::from_utf8_lossy(bad));
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
        }
    }
    let big = [
        b"GET http://a.example.com/ HTTP/1.1\r\nX: ".as_slice(),
        &[b'a'; 100],
    ]
    .concat();
    match classify(&mut BytesMut::from(&big[..]), 64) {
        Some(FirstHead::Refused(e)) => {
            assert_eq!(e.as_str(), "head_too_large");
            assert_eq!(
                Why::from(e).status(),
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn refusals_read_like_hyper_s() {
    let r = Refusal::new(
        Why::Policy(perimeter_policy::Reason::NoRuleForDestination),
        "no rule",
    )
    .to_bytes(Then::KeepAlive);
    assert_eq!(
        String::from_utf8(r).unwrap(),
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\nx-perimeter-error: no_rule_for_destination\r\ncontent-length: 8\r\n\r\nno rule\n"
    );
    let r = Refusal::new(Why::Head(HeadError::AmbiguousFraming), "both").to_bytes(Then::Close);
    assert_eq!(
        String::from_utf8(r).unwrap(),
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nx-perimeter-error: ambiguous_framing\r\ncontent-length: 5\r\nconnection: close\r\n\r\nboth\n"
    );
}

/// An upstream on loopback that echoes everything until the client's end of stream.
async fn echo_upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// The explicit proxy on 127.0.0.1:0 under DEFAULT_DENY with one CIDR rule: 127.0.0.0/8 on
/// `port`.
async fn proxy(port: u16, limits: GatewayLimits) -> SocketAddr {
    let doc = PolicyDocument {
        format: POLICY_FORMAT,
        version: 1,
        cluster_id: "c-1".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        rules: vec![RuleDoc {
            id: "r-1".into(),
            name: "loopback".into(),
            rule_type: RuleType::Cidr,
            destination: "127.0.0.0/8".into(),
            ports: vec![port],
            paths: vec![],
            crl_managed: false,
        }],
        ingress: Default::default(),
        private_endpoints: vec![],
        tls_inspection: None,
    };
    let snap = perimeter_policy::compile(&doc).unwrap();
    let (tx, snapshots) = watch::channel(Arc::new(snap));
    let ctx = context(snapshots, limits);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _keep = tx;
        super::super::serve(l, ctx, std::future::pending()).await
    });
    addr
}

/// A listener context on `snapshots`, resolving with a server that never answers (the tests
/// dial literals only).
fn context(
    snapshots: watch::Receiver<Arc<perimeter_policy::Snapshot>>,
    limits: GatewayLimits,
) -> ProxyContext {
    let resolver = Resolver::new(ResolverConfig {
        servers: vec!["127.0.0.1:9".parse().unwrap()],
        hosts_file: None,
        timeout: Duration::from_secs(1),
    })
    .unwrap();
    ProxyContext {
        inspection: Default::default(),
        endpoint_answer: None,
        snapshots,
        resolver: Arc::new(resolver),
        limits,
        sink: DecisionSink::new("test"),
        own: OwnAddresses::fixed([]),
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Read one response (head and content-length body) off `s`; returns the head and the body.
async fn response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0);
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

/// Write `data`, half-close, read everything back.
async fn echo_through(mut s: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let (mut r, mut w) = s.split();
    let send = async {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    };
    let mut back = Vec::new();
    let recv = r.read_to_end(&mut back);
    let (_, got) = tokio::join!(send, recv);
    got.unwrap();
    back
}

#[tokio::test]
async fn a_plain_connect_is_answered_without_hyper_and_its_early_bytes_go_first() {
    let port = echo_upstream().await;
    let p = proxy(port, GatewayLimits::default()).await;
    let mut s = TcpStream::connect(p).await.unwrap();
    // The CONNECT and the tunnel's first bytes in one write.
    s.write_all(
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nhello raw\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = vec![0u8; ESTABLISHED.len()];
    within("the 200", s.read_exact(&mut head)).await.unwrap();
    assert_eq!(head, ESTABLISHED);
    let more: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let back = within("the echo", echo_through(s, more.clone())).await;
    assert_eq!(&back[..10], b"hello raw\n");
    assert!(back[10..] == more[..], "the echo differs");
}

#[tokio::test]
async fn after_a_refusal_the_connection_is_hyper_s_and_its_tunnel_still_relays() {
    let port = echo_upstream().await;
    let p = proxy(port, GatewayLimits::default()).await;
    let mut s = TcpStream::connect(p).await.unwrap();
    // Loopback, but no rule for port 1: refused on the fast path; the connection stays open.
    s.write_all(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = within("the refusal", response(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    assert!(
        head.contains("x-perimeter-error: special_address"),
        "{head}"
    );
    assert!(!body.is_empty());
    // A non-canonical spelling: 400 with its reason, on the same connection (hyper now).
    s.write_all(b"CONNECT 0177.0.0.1:80 HTTP/1.1\r\nHost: 0177.0.0.1:80\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = within("the 400", response(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(
        head.contains("x-perimeter-error: non_canonical_ip"),
        "{head}"
    );
    // Then an allowed CONNECT, served by hyper; bulk goes through the socket.
    s.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = within("the 200", response(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let back = within("the echo", echo_through(s, data.clone())).await;
    assert!(back == data, "the echo differs ({} bytes back)", back.len());
}

#[tokio::test]
async fn a_head_that_never_completes_is_closed_after_the_header_timeout() {
    let port = echo_upstream().await;
    let limits = GatewayLimits {
        header_read_timeout: Duration::from_millis(300),
        ..GatewayLimits::default()
    };
    let p = proxy(port, limits).await;
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let started = std::time::Instant::now();
    let _ = within("the close", s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn accepted_sockets_inherit_nodelay_from_the_listener() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut nodelay = crate::listen::NoDelay::new(&l);
    let _c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    nodelay.apply(&s);
    assert!(s.nodelay().unwrap());
    assert_eq!(
        nodelay.inherited,
        Some(true),
        "Linux passes TCP_NODELAY from a listener on to the sockets it accepts"
    );
}

/// A server that speaks first, as SMTP does: greets, then answers each line of the client's
/// with `250 <line>`. Every byte it received is sent on `got` when the client leaves.
async fn greeting_upstream() -> (u16, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, got) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = s.write_all(b"220 upstream ready\r\n").await;
                let mut all = Vec::new();
                let mut line = Vec::new();
                let mut byte = [0u8; 1];
                while let Ok(1) = s.read(&mut byte).await {
                    all.push(byte[0]);
                    line.push(byte[0]);
                    if byte[0] == b'\n' {
                        let reply = [b"250 ".as_slice(), &line].concat();
                        let _ = s.write_all(&reply).await;
                        line.clear();
                    }
                }
                let _ = tx.send(all);
            });
        }
    });
    (port, got)
}

async fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while s.read(&mut byte).await.unwrap() == 1 {
        line.push(byte[0]);
        if byte[0] == b'\n' {
            break;
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[tokio::test]
async fn a_server_that_speaks_first_is_heard_and_the_client_is_still_checked() {
    let (port, mut got) = greeting_upstream().await;
    let limits = GatewayLimits {
        first_bytes_timeout: Duration::from_millis(400),
        ..GatewayLimits::default()
    };
    let p = proxy(port, limits).await;

    // The greeting comes through before the client says anything, and the client may answer
    // after the first-bytes timeout: the server's greeting started the exchange.
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0u8; ESTABLISHED.len()];
    within("the 200", s.read_exact(&mut head)).await.unwrap();
    assert_eq!(
        within("the greeting", read_line(&mut s)).await,
        "220 upstream ready\r\n"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    s.write_all(b"EHLO client.example\r\n").await.unwrap();
    assert_eq!(
        within("the answer", read_line(&mut s)).await,
        "250 EHLO client.example\r\n"
    );
    s.write_all(b"QUIT\r\n").await.unwrap();
    assert_eq!(
        within("the second answer", read_line(&mut s)).await,
        "250 QUIT\r\n"
    );
    drop(s);
    assert_eq!(
        within("what the upstream got", got.recv()).await.unwrap(),
        b"EHLO client.example\r\nQUIT\r\n"
    );

    // After the greeting, plaintext HTTP is served request by request: a Host that disagrees
    // with the CONNECT target (another port) is refused, and nothing of it reaches the
    // upstream.
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    within("the 200", s.read_exact(&mut head)).await.unwrap();
    assert_eq!(
        within("the greeting", read_line(&mut s)).await,
        "220 upstream ready\r\n"
    );
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        .await
        .unwrap();
    let (refusal, _) = within("the refusal", response(&mut s)).await;
    assert!(refusal.starts_with("HTTP/1.1 400 "), "{refusal}");
    assert!(
        refusal.contains("x-perimeter-error: host_mismatch"),
        "{refusal}"
    );
    drop(s);
    assert_eq!(
        within("what the upstream got", got.recv()).await.unwrap(),
        b""
    );

    // A silent client with a silent server still meets the first-bytes timeout.
    let (quiet_port, quiet) = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (l.local_addr().unwrap().port(), l)
    };
    let p = proxy(
        quiet_port,
        GatewayLimits {
            first_bytes_timeout: Duration::from_millis(300),
            ..GatewayLimits::default()
        },
    )
    .await;
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(format!("CONNECT 127.0.0.1:{quiet_port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    within("the 200", s.read_exact(&mut head)).await.unwrap();
    let mut rest = Vec::new();
    within("the timeout", s.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    drop(quiet);
}

#[tokio::test]
async fn a_head_with_both_content_length_and_chunked_gets_400_and_the_connection_closes() {
    let port = echo_upstream().await;
    let p = proxy(port, GatewayLimits::default()).await;
    let mut s = TcpStream::connect(p).await.unwrap();
    s.write_all(
        format!(
            "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (head, body) = within("the refusal", response(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(
        head.contains("x-perimeter-error: ambiguous_framing"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("Content-Length and Transfer-Encoding"));
    let mut rest = Vec::new();
    within("the close", s.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

/// Every idle tunnel holds its connection's task: its future must stay small (the phases it
/// is not in are boxed).
#[tokio::test]
async fn a_connection_task_holds_little_besides_its_phase() {
    let (_tx, snapshots) = watch::channel(Arc::new(perimeter_policy::Snapshot::empty_deny()));
    let ctx = context(snapshots, GatewayLimits::default());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, peer) = l.accept().await.unwrap();
    let permit = Arc::new(tokio::sync::Semaphore::new(1))
        .try_acquire_owned()
        .unwrap();
    let f = super::super::serve_connection(ctx, s, peer, permit);
    eprintln!(
        "serve_connection future: {} bytes",
        std::mem::size_of_val(&f)
    );
    drop(c);
}

/// An HTTP/1.1 upstream on loopback that answers every request of a connection with `ok`,
/// and counts the connections it accepted and the requests it served.
async fn counting_upstream() -> (
    u16,
    Arc<std::sync::atomic::AtomicUsize>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (conns, reqs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (conns.clone(), reqs.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        r.fetch_add(1, Ordering::SeqCst);
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (port, conns, reqs)
}

/// Plaintext HTTP in a tunnel is checked request by request. A tunnel whose first request is
/// strictly well-formed is relayed over the connection dialled for it, each later head checked
/// as it passes: one naming another host closes the tunnel, and nothing of it goes. A first
/// request in a lenient spelling is served by hyper, which answers a bad one with its reason
/// and goes on.
#[tokio::test]
async fn requests_in_a_tunnel_share_the_connection_dialled_for_it() {
    use std::sync::atomic::Ordering;
    let (port, conns, reqs) = counting_upstream().await;
    let p = proxy(port, GatewayLimits::default()).await;
    let open = |p| async move {
        let mut s = TcpStream::connect(p).await.unwrap();
        s.write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut established = [0u8; 19];
        within("the 200", s.read_exact(&mut established))
            .await
            .unwrap();
        s
    };
    let mut s = open(p).await;
    for i in 0..3 {
        s.write_all(format!("GET /r{i} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (head, body) = within("a response", response(&mut s)).await;
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert_eq!(body, b"ok");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1, "one upstream connection");
    // A request naming another host ends the tunnel: the request before it (sent in the same
    // write) is answered, then the refusal comes, and nothing of it reached the upstream.
    s.write_all(
        format!(
            "GET /r3 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nGET /x HTTP/1.1\r\nHost: other.example\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut rest = Vec::new();
    within("the answers and the close", s.read_to_end(&mut rest))
        .await
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    let refusal = rest.find("HTTP/1.1 400 ").expect("a refusal");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert!(
        rest[refusal..].contains("x-perimeter-error: host_mismatch"),
        "{rest}"
    );
    assert_eq!(reqs.load(Ordering::SeqCst), 4);

    // Bare LF line ends: hyper serves it, over one more upstream connection.
    let mut s = open(p).await;
    s.write_all(format!("GET /lf HTTP/1.1\nHost: 127.0.0.1:{port}\n\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = within("a response", response(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    s.write_all(b"GET /x HTTP/1.1\r\nHost: other.example\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = within("the refusal", response(&mut s)).await;
    assert!(head.contains("x-perimeter-error: host_mismatch"), "{head}");
    s.write_all(format!("GET /last HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = within("the last response", response(&mut s)).await;
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(reqs.load(Ordering::SeqCst), 6);
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "each tunnel's requests went over its own upstream connection"
    );
}
