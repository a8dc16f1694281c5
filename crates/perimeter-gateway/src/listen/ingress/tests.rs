use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use perimeter_policy::{
    AllowlistDoc, IngressDoc, IngressListener, POLICY_FORMAT, PolicyDocument, Snapshot,
    TrafficPolicy, WorkloadDoc, compile,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

use super::serve_ingress;
use crate::decision::DecisionSink;
use crate::dns::{Resolver, ResolverConfig};
use crate::listen::{GatewayLimits, OwnAddresses, ProxyContext};

const REGION: &str = "us-east-1";

fn snapshot(
    version: u64,
    allowlist: &[(&str, bool, bool)],
    region: &str,
    sql: Option<SocketAddr>,
) -> Arc<Snapshot> {
    Arc::new(
        compile(&PolicyDocument {
            format: POLICY_FORMAT,
            version,
            cluster_id: "c-1".into(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            tls_inspection: None,
            rules: vec![],
            private_endpoints: vec![],
            ingress: IngressDoc {
                allowlist: allowlist
                    .iter()
                    .map(|(cidr, sql, ui)| AllowlistDoc {
                        cidr: cidr.to_string(),
                        name: String::new(),
                        sql: *sql,
                        ui: *ui,
                    })
                    .collect(),
                workloads: vec![WorkloadDoc {
                    region: region.into(),
                    sql: sql.map(|a| a.to_string()).unwrap_or_default(),
                    ui: String::new(),
                }],
                ..Default::default()
            },
        })
        .unwrap(),
    )
}

/// A TCP echo workload; counts its connections.
pub(crate) async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, count)
}

/// Serve the sql ingress listener on loopback; its address and the sender of snapshots.
async fn listener(first: Arc<Snapshot>) -> (SocketAddr, watch::Sender<Arc<Snapshot>>) {
    let (tx, rx) = watch::channel(first);
    let resolver = Resolver::new(ResolverConfig {
        servers: vec!["127.0.0.1:9".parse().unwrap()],
        hosts_file: None,
        timeout: Duration::from_millis(200),
    })
    .unwrap();
    let ctx = ProxyContext {
        inspection: Default::default(),
        endpoint_answer: None,
        snapshots: rx,
        resolver: Arc::new(resolver),
        limits: GatewayLimits::default(),
        sink: DecisionSink::new(REGION),
        own: OwnAddresses::fixed([]),
    };
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_ingress(
        l,
        IngressListener::Sql,
        ctx,
        std::future::pending(),
    ));
    (addr, tx)
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::from((source, 0))).unwrap();
    s.connect(to).await.unwrap()
}

/// Read until the end of stream (or a reset), at most 5 s; what was read.
pub(crate) async fn read_to_close(c: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
        .await
        .expect("the gateway closes the connection");
    got
}

#[tokio::test]
async fn admits_refuses_and_cuts_on_a_new_snapshot() {
    let (workload, connections) = echo().await;
    let (addr, tx) = listener(snapshot(
        1,
        &[("127.0.0.2/32", true, false)],
        REGION,
        Some(workload),
    ))
    .await;

    let mut admitted = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await;
    admitted.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), admitted.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");

    let mut refused = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr).await;
    let _ = refused.write_all(b"never relayed").await;
    assert!(read_to_close(&mut refused).await.is_empty());
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "the refused one never reached it"
    );

    // The entry keeps the source but drops the sql flag: the open connection is cut.
    tx.send(snapshot(
        2,
        &[("127.0.0.2/32", false, true)],
        REGION,
        Some(workload),
    ))
    .unwrap();
    assert!(read_to_close(&mut admitted).await.is_empty());
}

#[tokio::test]
async fn an_admitted_source_without_a_workload_address_is_closed() {
    let (workload, connections) = echo().await;
    // The workload address is another region's.
    let (addr, _tx) = listener(snapshot(
        1,
        &[("127.0.0.0/8", true, true)],
        "eu-west-1",
        Some(workload),
    ))
    .await;
    let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 2), addr).await;
    let _ = c.write_all(b"hello").await;
    assert!(read_to_close(&mut c).await.is_empty());
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

/// A workload that echoes and keeps every byte it received, from all its connections.
async fn recorder(greeting: &'static [u8]) -> (SocketAddr, Arc<std::sync::Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                if c.write_all(greeting).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = c.read(&mut buf).await {
                    kept.lock().unwrap().extend_from_slice(&buf[..n]);
                    if c.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The sql ingress listener with 127.0.0.1 as a trusted proxy and a 1 s header timeout.
async fn trusting_listener(first: Arc<Snapshot>) -> SocketAddr {
    let (_, rx) = watch::channel(first);
    let resolver = Resolver::new(ResolverConfig {
        servers: vec!["127.0.0.1:9".parse().unwrap()],
        hosts_file: None,
        timeout: Duration::from_millis(200),
    })
    .unwrap();
    let ctx = ProxyContext {
        inspection: Default::default(),
        endpoint_answer: None,
        snapshots: rx,
        resolver: Arc::new(resolver),
        limits: GatewayLimits {
            header_read_timeout: Duration::from_secs(1),
            trusted_proxies: Arc::from(["127.0.0.1/32".parse::<perimeter_policy::Cidr>().unwrap()]),
            ..GatewayLimits::default()
        },
        sink: DecisionSink::new(REGION),
        own: OwnAddresses::fixed([]),
    };
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_ingress(
        l,
        IngressListener::Sql,
        ctx,
        std::future::pending(),
    ));
    addr
}

pub(crate) async fn echoed(c: &mut TcpStream, want: &[u8]) {
    let mut buf = vec![0u8; want.len()];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .expect("an answer in time")
        .expect("the echo");
    assert_eq!(buf, want);
}

#[tokio::test]
async fn a_trusted_proxy_header_names_the_judged_source() {
    let (workload, seen) = recorder(b"").await;
    let addr = trusting_listener(snapshot(
        1,
        &[
            ("198.51.100.0/24", true, false),
            ("127.0.0.2/32", true, false),
        ],
        REGION,
        Some(workload),
    ))
    .await;
    let local = Ipv4Addr::LOCALHOST;
    // v1, the client's first bytes in the same write as the header.
    let mut c = connect_from(local, addr).await;
    c.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5432\r\nv1-ping")
        .await
        .unwrap();
    echoed(&mut c, b"v1-ping").await;
    // v2 with the AWS TLV, split across writes.
    let header = crate::listen::endpoint::proxy_header::encode(
        "198.51.100.8:40001".parse().unwrap(),
        addr,
        "vpce-1",
    );
    let mut c2 = connect_from(local, addr).await;
    for part in header.chunks(7) {
        c2.write_all(part).await.unwrap();
        c2.flush().await.unwrap();
    }
    c2.write_all(b"v2-ping").await.unwrap();
    echoed(&mut c2, b"v2-ping").await;
    assert_eq!(seen.lock().unwrap().as_slice(), b"v1-pingv2-ping");

    // A header naming a source the allowlist refuses: closed, nothing relayed. The proxy
    // itself (127.0.0.1) is not allowlisted either, so LOCAL is refused too.
    for refused in [
        b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 5432\r\nnever".to_vec(),
        b"PROXY UNKNOWN\r\nnever".to_vec(),
        crate::listen::endpoint::proxy_header::encode(
            "[2001:db8::1]:1".parse().unwrap(),
            addr,
            "vpce-1",
        ),
    ] {
        let mut c = connect_from(local, addr).await;
        let _ = c.write_all(&refused).await;
        assert!(read_to_close(&mut c).await.is_empty());
    }
    assert_eq!(seen.lock().unwrap().as_slice(), b"v1-pingv2-ping");
}

#[tokio::test]
async fn a_trusted_proxy_without_a_valid_header_in_time_is_closed_unrelayed() {
    let (workload, seen) = recorder(b"hello from the workload").await;
    let addr = trusting_listener(snapshot(
        1,
        &[
            ("127.0.0.0/8", true, false),
            ("198.51.100.0/24", true, false),
        ],
        REGION,
        Some(workload),
    ))
    .await;
    let local = Ipv4Addr::LOCALHOST;
    // No header at all, a malformed one, one over 107 bytes.
    let mut too_long = b"PROXY TCP4 198.51.100.7 127.0.0.1 1 2".to_vec();
    too_long.resize(120, b' ');
    for bytes in [
        b"SELECT 1;\r\n".to_vec(),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 01 2\r\nSELECT 1".to_vec(),
        b"PROXY TCP4 198.51.100.7\n".to_vec(),
        too_long,
    ] {
        let mut c = connect_from(local, addr).await;
        let _ = c.write_all(&bytes).await;
        assert!(read_to_close(&mut c).await.is_empty(), "{bytes:?}");
    }
    // Truncated: the proxy ends its stream mid-header.
    let mut c = connect_from(local, addr).await;
    c.write_all(b"PROXY TCP4 198.51.100.7 127.0.")
        .await
        .unwrap();
    c.shutdown().await.unwrap();
    assert!(read_to_close(&mut c).await.is_empty());
    // Slow: part of a header, then nothing; closed after the header timeout.
    let mut c = connect_from(local, addr).await;
    let started = std::time::Instant::now();
    c.write_all(&[b'\r', b'\n', b'\r', b'\n', 0]).await.unwrap();
    assert!(read_to_close(&mut c).await.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the workload"
    );
}

#[tokio::test]
async fn an_untrusted_peer_opening_with_a_proxy_header_is_refused() {
    let (workload, seen) = recorder(b"greeting\n").await;
    let addr = trusting_listener(snapshot(
        1,
        &[
            ("127.0.0.0/8", true, false),
            ("198.51.100.0/24", true, false),
        ],
        REGION,
        Some(workload),
    ))
    .await;
    let untrusted = Ipv4Addr::new(127, 0, 0, 2);
    // The workload speaks first: its greeting reaches the client before the client's bytes,
    // and a client that opens with a PROXY header (whole, or a byte at a time) is cut.
    for parts in [
        vec![b"PROXY TCP4 198.51.100.7 127.0.0.1 1 2\r\nnever".to_vec()],
        b"PROXY ".iter().map(|b| vec![*b]).collect(),
        vec![crate::listen::endpoint::proxy_header::encode(
            "198.51.100.7:1".parse().unwrap(),
            addr,
            "vpce-1",
        )],
    ] {
        let mut c = connect_from(untrusted, addr).await;
        echoed(&mut c, b"greeting\n").await;
        for p in parts {
            let _ = c.write_all(&p).await;
            let _ = c.flush().await;
        }
        assert!(read_to_close(&mut c).await.is_empty());
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the workload"
    );
    // Bytes that only start like a signature are relayed as they are.
    let mut c = connect_from(untrusted, addr).await;
    echoed(&mut c, b"greeting\n").await;
    c.write_all(b"PRO").await.unwrap();
    c.flush().await.unwrap();
    c.write_all(b"FILE").await.unwrap();
    echoed(&mut c, b"PROFILE").await;
    assert_eq!(seen.lock().unwrap().as_slice(), b"PROFILE");
}
