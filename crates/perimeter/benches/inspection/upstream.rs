//! The HTTPS upstream: keep-alive HTTP/1.1 over rustls with the upstream's own certificate,
//! answering every request `200` with a 2-byte body. It runs as a process of its own (this
//! binary with `--upstream ADDR CERT KEY`), started inside the bench's network namespace.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clients::head_end;

const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";

/// The upstream's main: `--upstream ADDR CERT KEY`. Announces `upstream listening on ADDR` on
/// stderr, then serves until killed.
pub(crate) fn upstream_main() {
    let args: Vec<String> = std::env::args().collect();
    let at = args
        .iter()
        .position(|a| a == "--upstream")
        .expect("--upstream");
    let (addr, cert, key) = match &args[at + 1..] {
        [addr, cert, key, ..] => (addr, cert, key),
        _ => panic!("--upstream ADDR CERT KEY"),
    };
    let addr: SocketAddr = addr.parse().expect("--upstream ADDR");
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .expect("the upstream's certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("the upstream's key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the upstream's certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    // Two threads: on two cores it is never the one that waits on the other.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("binding the upstream on {addr}: {e}"));
        eprintln!("upstream listening on {}", listener.local_addr().unwrap());
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = serve(tls).await;
                }
            });
        }
    });
}

/// Answer each request head (GET: no body) until the client closes.
async fn serve<S>(mut s: S) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut answered = false;
        while let Some(end) = head_end(&buf) {
            buf.drain(..end);
            s.write_all(ANSWER).await?;
            answered = true;
        }
        if answered {
            s.flush().await?;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("a request head past 64 KiB"));
        }
    }
}
