use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_resolver::proto::op::{Message, MessageType, OpCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA};
use hickory_resolver::proto::rr::{RData, Record};
use tokio::net::UdpSocket;

use super::*;

fn host(s: &str) -> Hostname {
    s.parse().unwrap()
}

#[test]
fn hosts_file_syntax() {
    let hosts = HostsFile::parse(
        "# static names\n\
         127.0.0.1\tlocalhost\n\
         198.51.100.10  allowed.test  Alias.Allowed.TEST. # comment after names\n\
         \n\
         2001:db8::10 allowed.test v6only.test\n\
         198.51.100.10 allowed.test\n\
         203.0.113.7 second.test\n\
         203.0.113.8 second.test\n\
         fe80::1%eth0 zoned.test\n\
         127.1 short.test\n\
         [2001:db8::1] bracketed.test\n\
         #198.51.100.99 commented.test\n\
         198.51.100.20 bad_name.test good.test\n",
    );
    let cases: Vec<(&str, Option<Vec<IpAddr>>)> = vec![
        (
            "allowed.test",
            Some(vec![
                "198.51.100.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ]),
        ),
        (
            "alias.allowed.test",
            Some(vec!["198.51.100.10".parse().unwrap()]),
        ),
        ("v6only.test", Some(vec!["2001:db8::10".parse().unwrap()])),
        (
            "second.test",
            Some(vec![
                "203.0.113.7".parse().unwrap(),
                "203.0.113.8".parse().unwrap(),
            ]),
        ),
        ("good.test", Some(vec!["198.51.100.20".parse().unwrap()])),
        ("zoned.test", None),
        ("short.test", None),
        ("bracketed.test", None),
        ("commented.test", None),
        ("missing.test", None),
    ];
    for (name, want) in cases {
        assert_eq!(
            hosts.get(&host(name)).map(<[IpAddr]>::to_vec),
            want,
            "{name}"
        );
    }
}

/// A DNS server on 127.0.0.1:0 with fixed answers: `allowed.test` A 198.51.100.10 (twice, to
/// check de-duplication) and AAAA 2001:db8::10, `rebind.test` A 127.0.0.1, `v4only.test` A
/// only (NOERROR, no AAAA), `servfail.test` SERVFAIL, NXDOMAIN for the rest. Counts queries.
async fn spawn_dns_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let count = queries.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = request.queries.first().cloned() else {
                continue;
            };
            let mut response =
                Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
            response.metadata.recursion_desired = request.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.add_query(query.clone());
            let qname = query.name.to_ascii().to_ascii_lowercase();
            let qtype = query.query_type;
            let answer = |data: RData| Record::from_rdata(query.name.clone(), 60, data);
            match (qname.as_str(), qtype) {
                ("allowed.test.", RecordType::A) => {
                    let a = RData::A(A(Ipv4Addr::new(198, 51, 100, 10)));
                    response.add_answer(answer(a.clone()));
                    response.add_answer(answer(a));
                }
                ("allowed.test.", RecordType::AAAA) => {
                    response.add_answer(answer(RData::AAAA(AAAA(Ipv6Addr::new(
                        0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10,
                    )))));
                }
                ("rebind.test.", RecordType::A) => {
                    response.add_answer(answer(RData::A(A(Ipv4Addr::LOCALHOST))));
                }
                ("v4only.test.", RecordType::A) => {
                    response.add_answer(answer(RData::A(A(Ipv4Addr::new(203, 0, 113, 5)))));
                }
                ("rebind.test." | "v4only.test." | "empty.test.", _) => {}
                ("servfail.test.", _) => response.metadata.response_code = ResponseCode::ServFail,
                _ => response.metadata.response_code = ResponseCode::NXDomain,
            }
            let bytes = response.to_vec().unwrap();
            let _ = socket.send_to(&bytes, peer).await;
        }
    });
    (addr, queries)
}

fn resolver(servers: Vec<SocketAddr>, hosts_file: Option<PathBuf>, timeout: Duration) -> Resolver {
    Resolver::new(ResolverConfig {
        servers,
        hosts_file,
        timeout,
    })
    .unwrap()
}

/// Every wait is bounded, with a message saying what hung.
async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn answers_from_a_loopback_dns_server() {
    let (server, _) = spawn_dns_server().await;
    let r = resolver(vec![server], None, Duration::from_secs(5));
    let cases: Vec<(&str, Result<Vec<IpAddr>, &str>)> = vec![
        (
            "allowed.test",
            Ok(vec![
                "198.51.100.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ]),
        ),
        (
            "Allowed.TEST.",
            Ok(vec![
                "198.51.100.10".parse().unwrap(),
                "2001:db8::10".parse().unwrap(),
            ]),
        ),
        ("rebind.test", Ok(vec!["127.0.0.1".parse().unwrap()])),
        ("v4only.test", Ok(vec!["203.0.113.5".parse().unwrap()])),
        ("missing.test", Err("not_found")),
        ("empty.test", Err("no_records")),
        ("servfail.test", Err("server_failure")),
    ];
    for (name, want) in cases {
        let got = bounded(name, r.resolve(&host(name))).await;
        match (got, want) {
            (Ok(addrs), Ok(want)) => assert_eq!(addrs, want, "{name}"),
            (Err(e), Err(kind)) => {
                let got_kind = match e {
                    DnsError::NotFound { .. } => "not_found",
                    DnsError::NoRecords { .. } => "no_records",
                    DnsError::Timeout { .. } => "timeout",
                    DnsError::ServerFailure { .. } => "server_failure",
                };
                assert_eq!(got_kind, kind, "{name}: {e}");
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn hosts_file_wins_over_dns() {
    let (server, queries) = spawn_dns_server().await;
    let dir = std::env::temp_dir().join(format!("perimeter-gw-hosts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hosts");
    std::fs::write(
        &path,
        "203.0.113.20 allowed.test # pinned\n2001:db8::20 allowed.test\n",
    )
    .unwrap();
    let r = resolver(vec![server], Some(path), Duration::from_secs(5));
    let addrs = bounded("hosts lookup", r.resolve(&host("allowed.test")))
        .await
        .unwrap();
    assert_eq!(
        addrs,
        vec![
            "203.0.113.20".parse::<IpAddr>().unwrap(),
            "2001:db8::20".parse().unwrap()
        ]
    );
    assert_eq!(queries.load(Ordering::SeqCst), 0, "DNS was asked");
    // Names not in the file still go to DNS.
    let addrs = bounded("dns lookup", r.resolve(&host("rebind.test")))
        .await
        .unwrap();
    assert_eq!(addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert!(queries.load(Ordering::SeqCst) > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_hosts_file_is_a_setup_error() {
    let err = Resolver::new(ResolverConfig {
        servers: vec!["127.0.0.1:53".parse().unwrap()],
        hosts_file: Some("/nonexistent/perimeter/hosts".into()),
        timeout: Duration::from_secs(1),
    })
    .unwrap_err();
    assert!(matches!(err, ResolverSetupError::HostsFile { .. }), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // Bound but never read: queries are swallowed.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let r = resolver(vec![addr], None, Duration::from_millis(600));
    let started = std::time::Instant::now();
    let err = bounded("silent server", r.resolve(&host("allowed.test")))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}
