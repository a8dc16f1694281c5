//! moto's server mode, the AWS-compatible server of the credentials and inspection tests (STS,
//! IAM, S3; over HTTP, or HTTPS with a certificate of the test's own CA), and
//! the real AWS clients beside it (boto3, the aws CLI), all from the project-local virtual
//! environment that `.ci/run` makes (`.venv`, from `.ci/requirements.txt`). A missing
//! environment fails the test with the command that makes it: never a silent skip.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::wait::wait_until;

/// The virtual environment: `$PERIMETER_TEST_VENV`, else `<workspace>/.venv`.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("PERIMETER_TEST_VENV").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
        PathBuf::from,
    );
    let python = dir.join("bin/python");
    assert!(
        python.exists()
            && Command::new(&python)
                .args(["-c", "import moto.server, boto3, awscli"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
        "the tests' Python environment is missing or incomplete at {}: run .ci/run, or \
         `python3 -m venv .venv && .venv/bin/pip install -r .ci/requirements.txt` at the \
         workspace root",
        dir.display()
    );
    dir
}

/// A program of the environment (`python`, `aws`).
pub fn venv_bin(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

/// A free port on `host` (bound and released: the server that takes it starts at once).
fn free_port(host: &str) -> u16 {
    std::net::TcpListener::bind((host, 0))
        .expect("bind a probe port")
        .local_addr()
        .expect("probe address")
        .port()
}

/// Whether an HTTP server answers `GET /moto-api/` at `addr`.
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /moto-api/ HTTP/1.1\r\nhost: moto\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// Whether moto answers `GET /moto-api/` over HTTPS at `addr`, verifying its certificate
/// against `ca` (the certificate names the address).
fn answers_tls(addr: SocketAddr, ca: &Path) -> bool {
    let (code, _) = crate::curl::curl(&[
        "--noproxy",
        "*",
        "--connect-timeout",
        "1",
        "--cacert",
        ca.to_str().expect("UTF-8 path"),
        &format!("https://{addr}/moto-api/"),
    ]);
    code == 200
}

/// moto's TLS: its certificate and key, and the CA that issued the certificate (which must
/// name the address moto listens on: the readiness probe and [`Moto::python`] verify it).
#[derive(Debug, Clone)]
pub struct MotoTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A running moto server, killed on drop.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    tls: Option<MotoTls>,
}

/// The launcher that runs moto with AWS PrivateLink's behaviour (endpoint acceptance, the
/// endpoint lifecycle, ClientToken idempotency, connections of endpoint services) and test
/// controls (throttling, states set as AWS's own clock would, a request log).
pub fn privatelink_launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/moto_privatelink.py")
}

impl Moto {
    /// moto on 127.0.0.1 at a free port.
    pub fn start() -> Moto {
        Moto::start_with(&[], "127.0.0.1", free_port("127.0.0.1"), &[])
    }

    /// moto with PrivateLink's behaviour ([`privatelink_launcher`]) on 127.0.0.1 at a free
    /// port: what the `aws` provider's tests run against.
    pub fn start_privatelink() -> Moto {
        let launcher = privatelink_launcher();
        let launcher = launcher.to_str().expect("UTF-8 path");
        Moto::start_script(launcher, "127.0.0.1", free_port("127.0.0.1"))
    }

    fn start_script(script: &str, host: &str, port: u16) -> Moto {
        Moto::launch(&[], Some(script), host, port, &[], None)
    }

    /// moto on `host:port`, its command line prefixed by `prefix` (`ip netns exec <ns>`), with
    /// extra environment.
    pub fn start_with(prefix: &[&str], host: &str, port: u16, env: &[(&str, &str)]) -> Moto {
        Moto::start_on(prefix, host, port, env, None)
    }

    /// [`Moto::start_with`], serving HTTPS with `tls` (`moto.server --ssl-cert --ssl-key`).
    pub fn start_https(
        prefix: &[&str],
        host: &str,
        port: u16,
        env: &[(&str, &str)],
        tls: MotoTls,
    ) -> Moto {
        Moto::start_on(prefix, host, port, env, Some(tls))
    }

    fn start_on(
        prefix: &[&str],
        host: &str,
        port: u16,
        env: &[(&str, &str)],
        tls: Option<MotoTls>,
    ) -> Moto {
        Moto::launch(prefix, None, host, port, env, tls)
    }

    /// moto's server (`script`, or `-m moto.server`) on `host:port`.
    fn launch(
        prefix: &[&str],
        script: Option<&str>,
        host: &str,
        port: u16,
        env: &[(&str, &str)],
        tls: Option<MotoTls>,
    ) -> Moto {
        let python = venv_bin("python");
        let log = std::env::temp_dir().join(format!(
            "perimeter-moto-{}-{host}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("moto log");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&python);
                c
            }
            None => Command::new(&python),
        };
        match script {
            Some(s) => cmd.arg(s),
            None => cmd.args(["-m", "moto.server"]),
        };
        cmd.args(["-H", host, "-p", &port.to_string()]);
        if let Some(t) = &tls {
            cmd.arg("--ssl-cert")
                .arg(&t.cert)
                .arg("--ssl-key")
                .arg(&t.key);
        }
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start moto");
        let addr: SocketAddr = format!("{host}:{port}").parse().expect("moto address");
        let mut moto = Moto {
            child,
            addr,
            log,
            tls,
        };
        wait_until("moto answers", 60, || {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited ({status}):\n{}", moto.log_text());
            }
            match &moto.tls {
                None => answers(moto.addr),
                Some(t) => answers_tls(moto.addr, &t.ca),
            }
        });
        moto
    }

    /// `http://<addr>`, or `https://<addr>` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run a Python script of the environment with boto3 pointed at this server (dummy base
    /// keys, region us-east-1); its stdout, or a panic with both streams.
    pub fn python(&self, script: &str) -> String {
        let out = self.python_output(script);
        assert!(
            out.status.success(),
            "python failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`Moto::python`]'s output, whatever it is. Over HTTPS, boto3 verifies moto's certificate
    /// against its CA (`AWS_CA_BUNDLE`).
    pub fn python_output(&self, script: &str) -> Output {
        let mut cmd = Command::new(venv_bin("python"));
        if let Some(t) = &self.tls {
            cmd.env("AWS_CA_BUNDLE", &t.ca);
        }
        cmd.args(["-c", script])
            .env("MOTO_URL", self.url())
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "setup-secret")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .output()
            .expect("run python")
    }

    /// One HTTP/1.1 exchange with the server (plain HTTP only): status and body.
    fn exchange(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        assert!(
            self.tls.is_none(),
            "test controls are reached over plain HTTP"
        );
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .expect("connect to moto");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).expect("send to moto");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read moto's answer");
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, body.to_string())
    }

    /// A test control of [`privatelink_launcher`] (`POST /perimeter-moto/<name>`): its JSON
    /// answer, or a panic with the error.
    pub fn control(&self, name: &str, body: &serde_json::Value) -> serde_json::Value {
        let (status, text) = self.exchange(
            "POST",
            &format!("/perimeter-moto/{name}"),
            &body.to_string(),
        );
        assert_eq!(status, 200, "moto control {name} {body}: {text}");
        serde_json::from_str(&text).expect("a JSON answer")
    }

    /// Every EC2 and Route 53 request the server saw, in order:
    /// `{"service", "action", "t" (seconds, monotonic), "throttled"}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let (status, text) = self.exchange("GET", "/perimeter-moto/requests", "");
        assert_eq!(status, 200, "moto request log: {text}");
        serde_json::from_str(&text).expect("a JSON list")
    }

    /// A platform network in each region (VPC, subnet, security group, network load
    /// balancer), and the `--provider-config` text that names it with this server as
    /// `endpoint_url`.
    pub fn aws_platform(&self, regions: &[&str]) -> String {
        let script = format!(
            r#"
import boto3, json, os
url = os.environ["MOTO_URL"]
out = []
for i, region in enumerate({regions:?}):
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
    elb = boto3.client("elbv2", region_name=region, endpoint_url=url)
    vpc = ec2.create_vpc(CidrBlock=f"10.{{i}}.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.{{i}}.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="perimeter-endpoints", Description="interface endpoints", VpcId=vpc)["GroupId"]
    nlb = elb.create_load_balancer(Name=f"ingress-{{i}}", Subnets=[subnet], Type="network", Scheme="internal")["LoadBalancers"][0]["LoadBalancerArn"]
    out.append((region, vpc, subnet, sg, nlb))
print(json.dumps(out))
"#
        );
        let nets: Vec<(String, String, String, String, String)> =
            serde_json::from_str(self.python(&script).trim()).expect("the platform network");
        let mut toml = format!("endpoint_url = \"{}\"\n", self.url());
        for (region, vpc, subnet, sg, nlb) in nets {
            toml.push_str(&format!(
                "[regions.{region}]\nvpc_id = \"{vpc}\"\nsubnet_ids = [\"{subnet}\"]\nsecurity_group_ids = [\"{sg}\"]\nnlb_arns = [\"{nlb}\"]\n"
            ));
        }
        toml
    }

    /// Turn on moto's IAM checks (signatures and policies) for every later request.
    pub fn enforce_iam(&self) {
        self.python(
            "import os, urllib.request\n\
             urllib.request.urlopen(urllib.request.Request(os.environ['MOTO_URL'] + \
             '/moto-api/reset-auth', data=b'0', method='POST', \
             headers={'Content-Type': 'text/plain'})).read()",
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
