//! The clients of the namespace tests: curl and `openssl s_client` through the explicit
//! proxy, raw bytes to it, and curl inside the workload namespace (for the transparent
//! listener).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use perimeter_testkit::header_value;

use crate::fixture::Workload;

/// What curl saw through the proxy.
#[derive(Debug)]
pub struct Resp {
    /// Status of the (final) response; 0 when there was none (a refused CONNECT).
    pub code: u16,
    /// Status of the CONNECT response (0 without a tunnel).
    pub connect: u16,
    /// Response heads (the CONNECT one too) and body.
    pub text: String,
}

impl Resp {
    /// The status the gateway answered: the CONNECT response's for a tunnel, else the final.
    pub fn status(&self) -> u16 {
        if self.connect != 0 && self.connect != 200 {
            self.connect
        } else {
            self.code
        }
    }

    pub fn error(&self) -> Option<String> {
        header_value(&self.text, "x-perimeter-error")
    }
}

/// curl through `proxy`. Proxy environment variables are removed and `--noproxy ""` given,
/// so curl never talks to anything but the proxy.
pub fn curl_via(proxy: &str, extra: &[&str], url: &str) -> Resp {
    let out = Command::new("curl")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("no_proxy")
        .env_remove("NO_PROXY")
        .args(["-s", "-i", "-m", "10", "--noproxy", ""])
        .args(["-x", &format!("http://{proxy}")])
        .args(["-w", "\n%{http_code} %{http_connect}"])
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, codes) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let mut codes = codes.split_whitespace().map(|c| c.parse().unwrap_or(0));
    Resp {
        code: codes.next().unwrap_or(0),
        connect: codes.next().unwrap_or(0),
        text: body.to_string(),
    }
}

/// `openssl s_client` through `proxy` to `connect` (`host:port`) with `servername` as SNI
/// (`None`: no SNI), verifying against `cafile`; sends `request` and returns (exit success,
/// stdout + stderr). 20 s at most.
pub fn s_client(
    proxy: &str,
    connect: &str,
    servername: Option<&str>,
    cafile: &Path,
    request: &str,
) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-proxy", proxy, "-connect", connect])
        .arg("-CAfile")
        .arg(cafile)
        .args(["-verify_return_error", "-quiet"]);
    match servername {
        Some(sni) => cmd.args(["-servername", sni]),
        None => cmd.arg("-noservername"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(request.as_bytes());
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "openssl s_client -connect {connect} -servername {servername:?} did not end in 20 s: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Send `request` raw to the proxy and return the response: for a refusal, its head and body
/// (the proxy may keep the connection open); for an established tunnel, everything until the
/// proxy closes it (10 s at most).
pub fn raw(proxy: &str, request: &[u8]) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_string();
            let tunnel = request.starts_with(b"CONNECT ") && head.starts_with("HTTP/1.1 200");
            let len: usize = header_value(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if !tunnel && out.len() >= end + 4 + len {
                break;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Send `request` raw to the proxy and return everything until it closes (10 s at most).
pub fn raw_all(proxy: &str, request: &[u8]) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

/// curl inside the workload namespace, no proxy; `resolve` pins names as the workload's own
/// resolver would. Returns (status, `x-perimeter-error`, the whole output, exit success).
pub fn workload_curl(w: &Workload, args: &[&str]) -> (u16, Option<String>, String, bool) {
    let out = w
        .command("curl")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .args([
            "-s",
            "-i",
            "-m",
            "10",
            "--noproxy",
            "*",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl in the workload namespace");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let code = text
        .rsplit_once('\n')
        .and_then(|(_, c)| c.trim().parse().ok())
        .unwrap_or(0);
    let reason = header_value(&text, "x-perimeter-error");
    (code, reason, text, out.status.success())
}
