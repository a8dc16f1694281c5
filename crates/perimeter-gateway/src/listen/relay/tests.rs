//! The relay over real loopback sockets: exact bytes both ways (small exchanges and bulk that
//! goes through splice), the pending bytes first, half-close, the idle timeout and `stop`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use perimeter_policy::{POLICY_FORMAT, PolicyDocument, RuleDoc, RuleType, Snapshot, TrafficPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Activity, RelayEnd, relay, relay_stream};
use crate::listen::own::OwnAddresses;
use crate::listen::revoke::Revocation;
use crate::listen::target::{Target, TargetHost};

/// A connected pair on loopback: (the relay's end, the test's end).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (mine, _) = l.accept().await.unwrap();
    (mine, peer)
}

/// Deterministic bytes that differ between offsets and seeds.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Write `out` then half-close; read to the end meanwhile; returns what was read.
fn exchange(peer: TcpStream, out: Vec<u8>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let (mut r, mut w) = peer.into_split();
        let writer = tokio::spawn(async move {
            w.write_all(&out).await.unwrap();
            w.shutdown().await.unwrap();
            w
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        drop(writer.await.unwrap());
        got
    })
}

/// A policy for the relay's connections (127.0.0.1:1): allowed by a CIDR rule until
/// [`Policy::revoke`] applies a version without it.
struct Policy {
    tx: watch::Sender<Arc<Snapshot>>,
}

fn snapshot(version: u64, allow: bool) -> Snapshot {
    let rules = if allow {
        vec![RuleDoc {
            id: "r-1".into(),
            name: "loopback".into(),
            rule_type: RuleType::Cidr,
            destination: "127.0.0.0/8".into(),
            ports: vec![],
            paths: vec![],
            crl_managed: false,
        }]
    } else {
        vec![]
    };
    perimeter_policy::compile(&PolicyDocument {
        format: POLICY_FORMAT,
        version,
        cluster_id: "c-1".into(),
        traffic_policy: TrafficPolicy::DefaultDeny,
        rules,
        ingress: Default::default(),
        private_endpoints: vec![],
        tls_inspection: None,
    })
    .unwrap()
}

impl Policy {
    fn new() -> Self {
        Self {
            tx: watch::Sender::new(Arc::new(snapshot(1, true))),
        }
    }

    fn revocation(&self) -> Revocation {
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        Revocation::watching(
            self.tx.subscribe(),
            OwnAddresses::fixed([]),
            self.tx.borrow().clone(),
            Target {
                host: TargetHost::Ip(addr.ip()),
                port: 1,
            },
            addr,
            None,
        )
    }

    /// Apply a version that still allows (a change that must not close anything).
    fn change(&self, version: u64) {
        self.tx.send_replace(Arc::new(snapshot(version, true)));
    }

    fn revoke(&self, version: u64) {
        self.tx.send_replace(Arc::new(snapshot(version, false)));
    }
}

/// A revocation that never fires: its policy is gone, so the snapshot in hand stands.
/// A relay of `client` and `upstream` with nothing pending, no revocation and a 30 s idle
/// timeout, on its own task.
fn spawn_plain(client: TcpStream, upstream: TcpStream) -> JoinHandle<RelayEnd> {
    tokio::spawn(relay(
        client,
        upstream,
        Bytes::new(),
        Activity::new(),
        Duration::from_secs(30),
        never(),
        None,
    ))
}

fn never() -> Revocation {
    Policy::new().revocation()
}

async fn bytes_both_ways(up_len: usize, down_len: usize) {
    let (client, client_peer) = pair().await;
    let (upstream, upstream_peer) = pair().await;
    let first = Bytes::from_static(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let up = data(up_len, 1);
    let down = data(down_len, 2);
    let activity = Activity::new();
    let relayed = tokio::spawn(relay(
        client,
        upstream,
        first.clone(),
        activity.clone(),
        Duration::from_secs(30),
        never(),
        None,
    ));
    let at_client = exchange(client_peer, up.clone());
    let at_upstream = exchange(upstream_peer, down.clone());
    let at_upstream = within("upstream's bytes", at_upstream).await.unwrap();
    let at_client = within("client's bytes", at_client).await.unwrap();
    let end = within("the relay to end", relayed).await.unwrap();

    let mut want_up = first.to_vec();
    want_up.extend_from_slice(&up);
    assert_eq!(at_upstream.len(), want_up.len(), "bytes upstream");
    assert!(at_upstream == want_up, "upstream got other bytes");
    assert_eq!(at_client.len(), down.len(), "bytes to the client");
    assert!(at_client == down, "the client got other bytes");
    assert!(matches!(end, RelayEnd::Closed), "{end:?}");
    assert_eq!(activity.up(), want_up.len() as u64);
    assert_eq!(activity.down(), down.len() as u64);
}

#[tokio::test]
async fn small_exchange_is_exact() {
    bytes_both_ways(100, 300).await;
}

#[tokio::test]
async fn nothing_but_pending_bytes() {
    bytes_both_ways(0, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_is_exact() {
    // Large enough to fill the first buffer and go through the pipes, several times over.
    bytes_both_ways(8 * 1024 * 1024 + 17, 5 * 1024 * 1024 + 3).await;
}

#[tokio::test]
async fn half_close_is_passed_on_and_the_other_way_keeps_going() {
    let (client, mut client_peer) = pair().await;
    let (upstream, mut upstream_peer) = pair().await;
    let activity = Activity::new();
    let relayed = tokio::spawn(relay(
        client,
        upstream,
        Bytes::new(),
        activity.clone(),
        Duration::from_secs(30),
        never(),
        None,
    ));
    client_peer.write_all(b"request").await.unwrap();
    client_peer.shutdown().await.unwrap();
    // The upstream sees the request and then the end of it ...
    let mut got = Vec::new();
    within(
        "the end of the request",
        upstream_peer.read_to_end(&mut got),
    )
    .await
    .unwrap();
    assert_eq!(got, b"request");
    // ... and can still answer, in two writes, the second one bulk.
    let reply = data(300 * 1024, 3);
    upstream_peer.write_all(b"reply:").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!relayed.is_finished(), "the relay ended on a half-close");
    upstream_peer.write_all(&reply).await.unwrap();
    upstream_peer.shutdown().await.unwrap();
    let mut back = Vec::new();
    within("the reply", client_peer.read_to_end(&mut back))
        .await
        .unwrap();
    assert_eq!(&back[..6], b"reply:");
    assert!(back[6..] == reply[..], "the reply differs");
    let end = within("the relay to end", relayed).await.unwrap();
    assert!(matches!(end, RelayEnd::Closed), "{end:?}");
    assert_eq!(
        (activity.up(), activity.down()),
        (7, 6 + reply.len() as u64)
    );
}

/// Bytes that come with their end of stream go out held back for the FIN (`MSG_MORE`): they
/// must still arrive, whole and followed by the end, whether the FIN comes from the half-close
/// (the first direction to end) or from the close (the second).
#[tokio::test]
async fn last_bytes_before_the_end_arrive_with_it() {
    let (client, mut client_peer) = pair().await;
    let (upstream, mut upstream_peer) = pair().await;
    // Both sides have said everything before the relay reads: each read finds bytes and FIN.
    client_peer.write_all(b"the request").await.unwrap();
    client_peer.shutdown().await.unwrap();
    upstream_peer.write_all(b"the answer").await.unwrap();
    upstream_peer.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let activity = Activity::new();
    let relayed = tokio::spawn(relay(
        client,
        upstream,
        Bytes::new(),
        activity.clone(),
        Duration::from_secs(30),
        never(),
        None,
    ));
    let mut at_upstream = Vec::new();
    within("the request", upstream_peer.read_to_end(&mut at_upstream))
        .await
        .unwrap();
    let mut at_client = Vec::new();
    within("the answer", client_peer.read_to_end(&mut at_client))
        .await
        .unwrap();
    assert_eq!(at_upstream, b"the request");
    assert_eq!(at_client, b"the answer");
    let end = within("the relay to end", relayed).await.unwrap();
    assert!(matches!(end, RelayEnd::Closed), "{end:?}");
    assert_eq!((activity.up(), activity.down()), (11, 10));
}

#[tokio::test]
async fn idle_tunnel_is_closed_after_the_last_byte_plus_the_timeout() {
    let (client, mut client_peer) = pair().await;
    let (upstream, mut upstream_peer) = pair().await;
    let idle = Duration::from_millis(300);
    let started = Instant::now();
    let relayed = tokio::spawn(relay(
        client,
        upstream,
        Bytes::new(),
        Activity::new(),
        idle,
        never(),
        None,
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    client_peer.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    upstream_peer.read_exact(&mut one).await.unwrap();
    let end = within("the idle timeout", relayed).await.unwrap();
    let took = started.elapsed();
    assert!(matches!(end, RelayEnd::Idle), "{end:?}");
    assert!(
        took >= Duration::from_millis(480),
        "closed {took:?} after the start, less than the timeout after the last byte"
    );
    // Both sides see the tunnel closed.
    let mut rest = Vec::new();
    let n = within(
        "the client to see the close",
        client_peer.read_to_end(&mut rest),
    )
    .await;
    assert!(n.map(|n| n == 0).unwrap_or(true));
    let n = within(
        "the upstream to see the close",
        upstream_peer.read_to_end(&mut rest),
    )
    .await;
    assert!(n.map(|n| n == 0).unwrap_or(true));
}

#[tokio::test]
async fn a_revoking_policy_closes_the_tunnel_and_nothing_read_after_it_goes_upstream() {
    let (client, mut client_peer) = pair().await;
    let (upstream, mut upstream_peer) = pair().await;
    let policy = Policy::new();
    let relayed = tokio::spawn(relay(
        client,
        upstream,
        Bytes::new(),
        Activity::new(),
        Duration::from_secs(30),
        policy.revocation(),
        None,
    ));
    client_peer.write_all(b"ping").await.unwrap();
    let mut four = [0u8; 4];
    within("ping", upstream_peer.read_exact(&mut four))
        .await
        .unwrap();
    upstream_peer.write_all(b"pong").await.unwrap();
    within("pong", client_peer.read_exact(&mut four))
        .await
        .unwrap();
    assert_eq!(&four, b"pong");
    // A change that still allows keeps the tunnel.
    policy.change(2);
    client_peer.write_all(b"more").await.unwrap();
    within("more", upstream_peer.read_exact(&mut four))
        .await
        .unwrap();
    assert_eq!(&four, b"more");
    // Revoked: bytes the client sends from now on never reach the upstream.
    policy.revoke(3);
    let _ = client_peer.write_all(b"AFTER-REVOKE").await;
    match within("the relay to stop", relayed).await.unwrap() {
        RelayEnd::Revoked(why) => {
            assert_eq!(why.version, 3);
            assert_eq!(why.reason.as_str(), "special_address");
        }
        other => panic!("{other:?}"),
    }
    let mut rest = Vec::new();
    let _ = within(
        "the upstream to see the close",
        upstream_peer.read_to_end(&mut rest),
    )
    .await;
    assert!(
        rest.is_empty(),
        "bytes after the revocation went upstream: {rest:?}"
    );
    let n = within(
        "the client to see the close",
        client_peer.read_to_end(&mut rest),
    )
    .await;
    assert!(n.map(|n| n == 0).unwrap_or(true));
}

/// Bytes already read (and waiting in the relay) when the policy is revoked are not sent:
/// the check sits between the read and the write, for the copying and the splicing paths.
#[tokio::test]
async fn bytes_in_flight_when_revoked_are_dropped_on_every_path() {
    for bulk in [false, true] {
        let (client, mut client_peer) = pair().await;
        let (upstream, mut upstream_peer) = pair().await;
        let policy = Policy::new();
        let revocation = policy.revocation();
        // Revoked before any byte was relayed, with the pending bytes and the first reads
        // already queued: none of them may arrive.
        let burst = if bulk {
            data(4 * 1024 * 1024, 9)
        } else {
            b"small".to_vec()
        };
        let writer = tokio::spawn(async move {
            let _ = client_peer.write_all(&burst).await;
            client_peer
        });
        policy.revoke(2);
        let end = within(
            "the relay to stop",
            relay(
                client,
                upstream,
                Bytes::from_static(b"pending"),
                Activity::new(),
                Duration::from_secs(30),
                revocation,
                None,
            ),
        )
        .await;
        assert!(matches!(end, RelayEnd::Revoked(_)), "{end:?}");
        let mut got = Vec::new();
        let _ = within(
            "the upstream to see the close",
            upstream_peer.read_to_end(&mut got),
        )
        .await;
        assert!(
            got.is_empty(),
            "bulk={bulk}: {} bytes went upstream",
            got.len()
        );
        drop(writer);
    }
}

#[tokio::test]
async fn a_reset_is_a_failure() {
    let (client, client_peer) = pair().await;
    let (upstream, _upstream_peer) = pair().await;
    let relayed = spawn_plain(client, upstream);
    // SO_LINGER 0: close sends a reset.
    let std = client_peer.into_std().unwrap();
    socket_linger_zero(&std);
    drop(std);
    let end = within("the relay to end", relayed).await.unwrap();
    assert!(matches!(end, RelayEnd::Failed { .. }), "{end:?}");
}

fn socket_linger_zero(s: &std::net::TcpStream) {
    nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::Linger,
        &nix::libc::linger {
            l_onoff: 1,
            l_linger: 0,
        },
    )
    .unwrap();
}

#[tokio::test]
async fn a_stream_that_is_not_a_socket_is_copied() {
    let (client, mut client_peer) = tokio::io::duplex(64 * 1024);
    let (upstream, upstream_peer) = pair().await;
    let activity = Activity::new();
    let relayed = tokio::spawn(relay_stream(
        client,
        upstream,
        Bytes::from_static(b"first:"),
        activity.clone(),
        Duration::from_secs(30),
        never(),
    ));
    let down = data(200 * 1024, 4);
    let at_upstream = exchange(upstream_peer, down.clone());
    let up = data(100 * 1024, 5);
    client_peer.write_all(&up).await.unwrap();
    client_peer.shutdown().await.unwrap();
    let mut back = Vec::new();
    within("the download", client_peer.read_to_end(&mut back))
        .await
        .unwrap();
    let got = within("the upload", at_upstream).await.unwrap();
    assert_eq!(&got[..6], b"first:");
    assert!(got[6..] == up[..]);
    assert!(back == down);
    let end = within("the relay to end", relayed).await.unwrap();
    assert!(matches!(end, RelayEnd::Closed), "{end:?}");
    assert_eq!(activity.up(), 6 + up.len() as u64);
    assert_eq!(activity.down(), down.len() as u64);
}

fn congestion_control(s: &TcpStream) -> std::io::Result<String> {
    let cc = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::TcpCongestion)?;
    Ok(cc.to_string_lossy().into_owned())
}

fn set_congestion_control(s: &TcpStream, name: &str) -> std::io::Result<()> {
    nix::sys::socket::setsockopt(
        s,
        nix::sys::socket::sockopt::TcpCongestion,
        &std::ffi::OsString::from(name),
    )?;
    Ok(())
}

#[tokio::test]
async fn bulk_towards_a_loopback_peer_is_not_paced() {
    let (mine, _peer) = pair().await;
    if set_congestion_control(&mine, "bbr").is_err() {
        eprintln!("skipped: this kernel offers no bbr");
        return;
    }
    super::unpaced_on_loopback(&mine);
    assert_eq!(congestion_control(&mine).unwrap(), "cubic");

    // Any other choice of the host's is kept.
    let (mine, _peer) = pair().await;
    set_congestion_control(&mine, "reno").unwrap();
    super::unpaced_on_loopback(&mine);
    assert_eq!(congestion_control(&mine).unwrap(), "reno");
}

/// Every idle tunnel holds one relay: its state must stay small (the splice loop is boxed, the
/// transfer and the revocation watch are lent to the supervisor, not moved into it).
#[tokio::test]
async fn a_relay_holds_little_state() {
    let (client, _c) = pair().await;
    let (upstream, _u) = pair().await;
    let f = relay(
        client,
        upstream,
        Bytes::new(),
        Activity::new(),
        Duration::from_secs(1),
        never(),
        None,
    );
    let size = std::mem::size_of_val(&f);
    assert!(size <= 3 * 1024, "the relay's future grew to {size} bytes");
}

/// While the destination is full, the source's segments do not wake the relay (its low-water
/// mark is raised); once the relay reads the source again, a few bytes get through at once.
#[tokio::test]
async fn a_source_is_quiet_while_its_destination_is_full_and_heard_after() {
    use super::splice::RcvLowWat;
    use nix::sys::socket::getsockopt;

    let (client, client_peer) = pair().await;
    let (upstream, mut upstream_peer) = pair().await;
    // A second descriptor of the relay's client socket, to read its low-water mark.
    let client = client.into_std().unwrap();
    let watched = client.try_clone().unwrap();
    let client = TcpStream::from_std(client).unwrap();
    let relayed = spawn_plain(client, upstream);
    // More than the destination and its peer can hold unread on any usual host (the sender
    // keeps at most tcp_wmem's maximum, 4 MiB by default, beside a window its unread peer
    // never grows).
    let bulk = data(32 * 1024 * 1024, 5);
    let (mut client_read, mut client_write) = client_peer.into_split();
    let sent = bulk.clone();
    let writer = tokio::spawn(async move {
        client_write.write_all(&sent).await.unwrap();
        client_write
    });
    assert_eq!(getsockopt(&watched, RcvLowWat).unwrap(), 1);
    // The upstream reads nothing yet: the relay fills it and waits for room, its source quiet.
    within("the source to be quieted", async {
        while getsockopt(&watched, RcvLowWat).unwrap() <= 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    let mut got = vec![0u8; bulk.len()];
    within("the bulk upstream", upstream_peer.read_exact(&mut got))
        .await
        .unwrap();
    assert!(got == bulk, "upstream got other bytes");
    // Four bytes, far below the raised mark: they arrive only if the relay hears its source again.
    let mut client_write = within("the client's writes", writer).await.unwrap();
    client_write.write_all(b"tail").await.unwrap();
    let mut tail = [0u8; 4];
    within(
        "the bytes after the bulk",
        upstream_peer.read_exact(&mut tail),
    )
    .await
    .unwrap();
    assert_eq!(&tail, b"tail");
    assert_eq!(getsockopt(&watched, RcvLowWat).unwrap(), 1);
    // The relay's last end of stream goes out when it closes the socket: no other descriptor
    // of it may stay open.
    drop(watched);
    drop(client_write);
    drop(upstream_peer);
    let mut rest = Vec::new();
    within("the client's end", client_read.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty(), "the upstream sent nothing");
    let end = within("the relay to end", relayed).await.unwrap();
    assert!(matches!(end, RelayEnd::Closed), "{end:?}");
}
