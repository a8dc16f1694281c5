//! Sinks: the bulk sink, the tunnel sinks, and the idle sinks as a process of their own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::procs::Proc;
use crate::{ADDRS, REPLY, TLS_ANSWER, loopback};

/// The bulk sink and the tunnel sinks, in this process.
pub(crate) struct Sinks {
    pub(crate) bulk: SocketAddr,
    /// One tunnel sink per loopback address 127.0.0.1-8: answers and closes.
    pub(crate) tunnel: Vec<SocketAddr>,
}

/// Bulk sink: reads a length (8 bytes LE) and that many bytes, discards them, answers the byte
/// count (8 bytes LE) and closes. (No half-close: Squid closes a tunnel on the first one.)
pub(crate) fn bulk_sink() -> SocketAddr {
    let l = TcpListener::bind((loopback(0), 0)).expect("binding the bulk sink");
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                let mut len = [0u8; 8];
                if s.read_exact(&mut len).is_err() {
                    return;
                }
                let want = u64::from_le_bytes(len);
                let mut buf = vec![0u8; 256 * 1024];
                let mut n = 0u64;
                while n < want {
                    let room = (want - n).min(buf.len() as u64) as usize;
                    match s.read(&mut buf[..room]) {
                        Ok(0) | Err(_) => break,
                        Ok(m) => n += m as u64,
                    }
                }
                let _ = s.write_all(&n.to_le_bytes());
            });
        }
    });
    addr
}

/// The bulk sink, and tunnel sinks on 127.0.0.1-8 served by one thread.
pub(crate) fn sinks() -> Sinks {
    let listeners: Vec<TcpListener> = (0..ADDRS)
        .map(|i| TcpListener::bind((loopback(i), 0)).expect("binding a tunnel sink"))
        .collect();
    let sinks = Sinks {
        bulk: bulk_sink(),
        tunnel: listeners.iter().map(|l| l.local_addr().unwrap()).collect(),
    };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(serve_sinks(listeners, false));
    });
    sinks
}

/// Accept on every listener and serve each connection ([`serve_one`]).
pub(crate) async fn serve_sinks(listeners: Vec<TcpListener>, hold: bool) {
    let mut tasks = Vec::new();
    for l in listeners {
        l.set_nonblocking(true).unwrap();
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                tokio::spawn(serve_one(s, hold));
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Read the client's first bytes (a TLS record, or an HTTP request head) and answer them: the
/// TLS alert or the HTTP reply. Then close; or, for an idle sink (`hold`), wait for the peer to
/// close first.
pub(crate) async fn serve_one(mut s: tokio::net::TcpStream, hold: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        let answer = loop {
            match s.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => return false,
                Ok(m) => n += m,
            }
            if buf[0] == 0x16 {
                if n >= 5 && n >= 5 + u16::from_be_bytes([buf[3], buf[4]]) as usize {
                    break TLS_ANSWER;
                }
            } else if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break REPLY;
            }
            if n == buf.len() {
                return false;
            }
        };
        s.write_all(answer).await.is_ok()
    })
    .await;
    if hold && answered == Ok(true) {
        // Until the peer closes; bounded, as every wait here.
        let _ = tokio::time::timeout(Duration::from_secs(600), async {
            while let Ok(m) = s.read(&mut buf[..1]).await {
                if m == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

/// The idle sinks: this bench's binary again (`--idle-sinks`), as a process of its own, so that
/// neither it nor this one needs more descriptors than a process may have. One listener per
/// loopback address 127.0.0.1-8; each answers the first bytes and holds the connection until
/// the peer closes it.
pub(crate) struct IdleSinks {
    pub(crate) proc_: Proc,
    pub(crate) addrs: Vec<SocketAddr>,
}

pub(crate) const IDLE_SINKS_MARKER: &str = "idle sinks listening on ";

pub(crate) fn start_idle_sinks(dir: &Path) -> IdleSinks {
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut proc_ = Proc::spawn(
        "idle sinks",
        Command::new(exe).arg("--idle-sinks"),
        dir.join("idle-sinks.log"),
    );
    let addrs = proc_
        .announced(IDLE_SINKS_MARKER, 30)
        .split(',')
        .map(|a| a.parse().expect("an idle sink's address"))
        .collect();
    IdleSinks { proc_, addrs }
}

/// `--idle-sinks`: serve the idle sinks until killed, or until the bench that started this is
/// gone (checked every second; an hour at most).
pub(crate) fn idle_sinks_main() {
    let listeners: Vec<TcpListener> = (0..ADDRS)
        .map(|i| TcpListener::bind((loopback(i), 0)).expect("binding an idle sink"))
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    eprintln!("{IDLE_SINKS_MARKER}{}", addrs.join(","));
    let parent = std::os::unix::process::parent_id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::spawn(serve_sinks(listeners, true));
        for _ in 0..3600 {
            if std::os::unix::process::parent_id() != parent {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}
