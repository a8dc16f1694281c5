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
            },
        })
        .unwrap(),
    )
}

/// A TCP echo workload; counts its connections.
async fn echo() -> (SocketAddr, Arc<AtomicUsize>) {
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
async fn read_to_close(c: &mut TcpStream) -> Vec<u8> {
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
