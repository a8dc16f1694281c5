//! Certificates for TLS upstreams under test, made with the real `openssl` command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A self-signed certificate and its key.
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed P-256 certificate for `names` (the first is the subject's CN; all are DNS
/// subject alternative names), valid for two days, written to `dir/cert.pem` and
/// `dir/key.pem`. Clients trust it by taking `cert` as their CA file. It is a server
/// certificate (CA:FALSE, serverAuth), not the CA `openssl req -x509` makes by default: strict
/// verifiers (webpki, the gateway's upstream side under TLS inspection) refuse a CA certificate
/// presented by a server.
pub fn self_signed(dir: &Path, names: &[&str]) -> SelfSigned {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let cn = format!("/CN={}", names.first().copied().unwrap_or("localhost.test"));
    let san = names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .collect::<Vec<_>>()
        .join(",");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec"])
        .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-nodes", "-days", "2", "-subj", &cn])
        .args(["-addext", &format!("subjectAltName={san}")])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .output()
        .expect("running openssl req (the openssl command line is needed)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    SelfSigned { cert, key }
}
