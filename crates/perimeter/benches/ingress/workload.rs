//! The cluster's workload: one TCP server on loopback, the region's `sql` workload address and
//! the direct path's destination alike. A connection says what it is with its first byte:
//! [`BULK`] (then a length, 8 bytes LE, and that many bytes, discarded, answered with the byte
//! count, 8 bytes LE) or anything else, echoed back with every byte after it until the peer
//! closes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// First byte of an upload.
pub(crate) const BULK: u8 = b'B';
/// First byte of a connection setup; echoed. (Neither opens a PROXY protocol signature, which
/// the ingress listener would refuse from a peer it does not trust.)
pub(crate) const PING: u8 = b'e';
/// Longest life of one connection at the workload.
const CONNECTION_BOUND: Duration = Duration::from_secs(600);

/// Start the workload on its own thread (a current-thread runtime); its address.
pub(crate) fn start_workload() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the workload");
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::Builder::new()
        .name("workload".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    match l.accept().await {
                        Ok((s, _)) => {
                            tokio::spawn(serve_one(s));
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            });
        })
        .expect("spawning the workload's thread");
    addr
}

async fn serve_one(mut s: tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let _ = tokio::time::timeout(CONNECTION_BOUND, async {
        let mut first = [0u8; 1];
        if s.read_exact(&mut first).await.is_err() {
            return;
        }
        if first[0] == BULK {
            discard(&mut s).await;
        } else {
            echo(&mut s, first[0]).await;
        }
    })
    .await;
}

async fn discard(s: &mut tokio::net::TcpStream) {
    let mut len = [0u8; 8];
    if s.read_exact(&mut len).await.is_err() {
        return;
    }
    let want = u64::from_le_bytes(len);
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    while n < want {
        let room = (want - n).min(buf.len() as u64) as usize;
        match s.read(&mut buf[..room]).await {
            Ok(0) | Err(_) => break,
            Ok(m) => n += m as u64,
        }
    }
    let _ = s.write_all(&n.to_le_bytes()).await;
}

async fn echo(s: &mut tokio::net::TcpStream, first: u8) {
    if s.write_all(&[first]).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
