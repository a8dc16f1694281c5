use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use perimeter_policy::{
    AllowlistDoc, IngressDoc, POLICY_FORMAT, PolicyDocument, Snapshot, TrafficPolicy, WorkloadDoc,
    compile,
};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::serve_private_ingress;
use crate::decision::DecisionSink;
use crate::dns::{Resolver, ResolverConfig};
use crate::listen::endpoint::proxy_header::encode;
use crate::listen::ingress::tests::{echo, echoed, read_to_close};
use crate::listen::{GatewayLimits, OwnAddresses, ProxyContext, serve_public_ingress};

const REGION: &str = "us-east-1";

fn snapshot(version: u64, public: bool, endpoints: &[&str], sql: SocketAddr) -> Arc<Snapshot> {
    Arc::new(
        compile(&PolicyDocument {
            format: POLICY_FORMAT,
            version,
            cluster_id: "c-1".into(),
            traffic_policy: TrafficPolicy::DefaultDeny,
            rules: vec![],
            private_endpoints: vec![],
            ingress: IngressDoc {
                // Every source is allowlisted: the private listener must not care.
                allowlist: vec![AllowlistDoc {
                    cidr: "0.0.0.0/0".into(),
                    name: "everyone".into(),
                    sql: true,
                    ui: true,
                }],
                workloads: vec![WorkloadDoc {
                    region: REGION.into(),
                    sql: sql.to_string(),
                    ui: String::new(),
                }],
                public,
                private_endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            },
            tls_inspection: None,
        })
        .unwrap(),
    )
}

fn context(
    first: Arc<Snapshot>,
    limits: GatewayLimits,
) -> (ProxyContext, watch::Sender<Arc<Snapshot>>) {
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
        limits,
        sink: DecisionSink::new(REGION),
        own: OwnAddresses::fixed([]),
    };
    (ctx, tx)
}

async fn private_listener(
    first: Arc<Snapshot>,
    limits: GatewayLimits,
) -> (SocketAddr, watch::Sender<Arc<Snapshot>>) {
    let (ctx, tx) = context(first, limits);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(serve_private_ingress(l, ctx, std::future::pending()));
    (addr, tx)
}

/// A PROXY v2 header as an NLB sends it for endpoint `id`.
fn header(to: SocketAddr, id: &str) -> Vec<u8> {
    encode("198.51.100.7:40000".parse().unwrap(), to, id)
}

/// A PROXY v2 header with the same addresses and no TLV.
fn header_without_tlv(to: SocketAddr) -> Vec<u8> {
    let full = header(to, "x");
    let mut h = full[..16 + 12].to_vec();
    h[14..16].copy_from_slice(&12u16.to_be_bytes());
    h
}

#[tokio::test]
async fn a_known_endpoint_id_is_admitted_and_cut_when_its_connection_goes() {
    let (workload, connections) = echo().await;
    let (addr, tx) = private_listener(
        snapshot(1, false, &["vpce-0a1b2c3d4e5f67890"], workload),
        GatewayLimits::default(),
    )
    .await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    // The header and the client's first bytes in one write: the bytes past the header reach
    // the workload.
    let mut first = header(addr, "vpce-0a1b2c3d4e5f67890");
    first.extend_from_slice(b"hello");
    c.write_all(&first).await.unwrap();
    echoed(&mut c, b"hello").await;
    c.write_all(b" again").await.unwrap();
    echoed(&mut c, b" again").await;
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // The connection is deleted: the next snapshot no longer admits the endpoint.
    tx.send_replace(snapshot(2, false, &["vpce-other"], workload));
    assert!(read_to_close(&mut c).await.is_empty());
}

#[tokio::test]
async fn unknown_ids_missing_tlvs_and_missing_headers_never_reach_the_workload() {
    let (workload, connections) = echo().await;
    let limits = GatewayLimits {
        header_read_timeout: Duration::from_millis(300),
        ..GatewayLimits::default()
    };
    let (addr, _tx) = private_listener(snapshot(1, true, &["vpce-known"], workload), limits).await;
    let v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 5432\r\n".to_vec();
    let truncated = header(addr, "vpce-known")[..20].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown id", header(addr, "vpce-unknown")),
        ("v2 without the TLV", header_without_tlv(addr)),
        ("v1 (no TLVs)", v1),
        ("no header", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        ("truncated and silent", truncated),
        ("nothing at all", Vec::new()),
    ];
    for (what, bytes) in cases {
        let mut c = TcpStream::connect(addr).await.unwrap();
        if !bytes.is_empty() {
            c.write_all(&bytes).await.unwrap();
        }
        c.write_all(b"payload").await.ok();
        assert!(read_to_close(&mut c).await.is_empty(), "{what}");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_public_listener_closes_under_private_visibility_and_opens_again() {
    let (workload, _) = echo().await;
    let (ctx, tx) = context(snapshot(1, true, &[], workload), GatewayLimits::default());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (open_tx, mut open) = watch::channel(false);
    tokio::spawn(serve_public_ingress(
        l,
        perimeter_policy::IngressListener::Sql,
        ctx,
        std::future::pending(),
        open_tx,
    ));
    let until = |want: bool| {
        let mut open = open.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), open.wait_for(|o| *o == want))
                .await
                .expect("the listener changes within 5 s")
                .unwrap();
        }
    };
    until(true).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"ping").await.unwrap();
    echoed(&mut c, b"ping").await;

    tx.send_replace(snapshot(2, false, &[], workload));
    until(false).await;
    // Closed: the open connection is cut and new ones are refused by the kernel.
    assert!(read_to_close(&mut c).await.is_empty());
    assert!(TcpStream::connect(addr).await.is_err());

    tx.send_replace(snapshot(3, true, &[], workload));
    until(true).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(b"pong").await.unwrap();
    echoed(&mut c, b"pong").await;
    assert!(*open.borrow_and_update());
}
