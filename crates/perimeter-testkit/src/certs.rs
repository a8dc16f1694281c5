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

/// A certificate authority of its own (a private object store's, an untrusted one), made with
/// `openssl`: it signs server certificates with [`Authority::issue`], valid now or expired.
pub struct Authority {
    /// The CA's certificate (what a client trusts).
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: PathBuf,
    name: String,
}

/// How long an issued certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From now, for this many days.
    Days(u32),
    /// 1 to 2 January 2020: signed by the CA, its names right, its not-after long past.
    Expired,
}

/// A P-256 CA `CN=<name> test CA` (CA:TRUE, path length 0, certificate signing), valid for two
/// days, written to `dir/<name>-ca.pem` and `dir/<name>-ca-key.pem`.
pub fn authority(dir: &Path, name: &str) -> Authority {
    let cert = dir.join(format!("{name}-ca.pem"));
    let key = dir.join(format!("{name}-ca-key.pem"));
    openssl(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec"])
            .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args([
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name} test CA"),
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE,pathlen:0"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        "openssl req -x509 (CA)",
    );
    Authority {
        cert,
        key,
        dir: dir.to_path_buf(),
        name: name.to_string(),
    }
}

impl Authority {
    /// A P-256 server certificate signed by this CA for `names` (DNS names, or IP addresses:
    /// each becomes a subject alternative name of its kind; the first is the CN), written to
    /// `dir/<stem>.pem` and `dir/<stem>-key.pem`. Made with `openssl ca`, which sets any
    /// validity period (an [`Validity::Expired`] one included).
    pub fn issue(&self, stem: &str, names: &[&str], validity: Validity) -> SelfSigned {
        let cert = self.dir.join(format!("{stem}.pem"));
        let key = self.dir.join(format!("{stem}-key.pem"));
        let csr = self.dir.join(format!("{stem}.csr"));
        let cn = format!("/CN={}", names.first().copied().unwrap_or("localhost.test"));
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec"])
                .args(["-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .args(["-nodes", "-subj", &cn])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
            "openssl req -new",
        );
        let san = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        // `openssl ca` keeps a database of what it issued: one per issued certificate here.
        let db = self.dir.join(format!("{stem}-{}-index.txt", self.name));
        std::fs::write(&db, "").expect("write the CA index");
        let config = self.dir.join(format!("{stem}-{}-ca.cnf", self.name));
        std::fs::write(
            &config,
            format!(
                "[ca]\ndefault_ca = issuing\n\n\
                 [issuing]\ndatabase = {db}\nnew_certs_dir = {dir}\nrand_serial = yes\n\
                 default_md = sha256\npolicy = any_name\nunique_subject = no\n\
                 copy_extensions = none\nx509_extensions = server\n\n\
                 [any_name]\ncommonName = supplied\n\n\
                 [server]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n\
                 subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
                 subjectAltName = {san}\n",
                db = db.display(),
                dir = self.dir.display(),
            ),
        )
        .expect("write the CA configuration");
        let mut cmd = Command::new("openssl");
        cmd.args(["ca", "-batch", "-notext", "-config"])
            .arg(&config)
            .arg("-cert")
            .arg(&self.cert)
            .arg("-keyfile")
            .arg(&self.key)
            .arg("-in")
            .arg(&csr)
            .arg("-out")
            .arg(&cert);
        match validity {
            Validity::Days(days) => cmd.args(["-days", &days.to_string()]),
            Validity::Expired => cmd.args([
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
            ]),
        };
        openssl(&mut cmd, "openssl ca");
        SelfSigned { cert, key }
    }
}

/// Run an `openssl` command to success, or panic with what it printed.
fn openssl(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("running openssl (the openssl command line is needed)");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
