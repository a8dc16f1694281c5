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

/// One client connection to the explicit proxy, written and read by hand, every read bounded.
pub struct Conn {
    stream: std::net::TcpStream,
    /// The client's address as the gateway sees it (the decision event's `source`).
    pub source: String,
    /// Bytes read and not consumed yet.
    buf: Vec<u8>,
}

/// What came back for a request.
#[derive(Debug)]
pub enum Reply {
    /// A complete response: status, `x-perimeter-error`, head and body.
    Response {
        status: u16,
        reason: Option<String>,
        text: String,
    },
    /// The proxy closed the connection first; what it had sent (lossy text).
    Closed(String),
    /// Nothing complete within the bound; what had come (lossy text).
    Silent(String),
}

impl Reply {
    /// For a failure's message.
    pub fn describe(&self) -> String {
        match self {
            Reply::Response {
                status,
                reason,
                text,
            } => format!("{status} (x-perimeter-error {reason:?}): {text:?}"),
            Reply::Closed(text) => format!("the connection closed after {text:?}"),
            Reply::Silent(text) => format!("no complete answer, only {text:?}"),
        }
    }
}

impl Conn {
    pub fn open(proxy: &str) -> Conn {
        let stream = std::net::TcpStream::connect(proxy).unwrap();
        let source = stream.local_addr().unwrap().to_string();
        Conn {
            stream,
            source,
            buf: Vec::new(),
        }
    }

    /// Write `bytes`; an error (the proxy closed) is returned, not raised.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// A second handle on the socket (for a writer thread).
    pub fn writer(&self) -> std::net::TcpStream {
        self.stream.try_clone().unwrap()
    }

    /// Read more, until `deadline`: `Ok(0)` at the end of the stream, `Err` at the deadline.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ()> {
        use std::io::Read;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        self.stream.set_read_timeout(Some(left)).unwrap();
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(())
            }
            // A reset ends the stream as a close does.
            Err(_) => Ok(0),
        }
    }

    /// Read one response (head, and a body of `content-length`), `secs` at most.
    pub fn response(&mut self, secs: u64) -> Reply {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize = header_value(&head, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let text: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    return Reply::Response {
                        status,
                        reason: header_value(&head, "x-perimeter-error"),
                        text: String::from_utf8_lossy(&text).into_owned(),
                    };
                }
            }
            match self.fill(deadline) {
                Ok(0) => return Reply::Closed(self.take_text()),
                Ok(_) => {}
                Err(()) => return Reply::Silent(self.take_text()),
            }
        }
    }

    /// Read until the proxy closes the connection: what it sent (lossy text), or `Err` with what
    /// had come if it was still open after `secs`.
    pub fn until_closed(&mut self, secs: u64) -> Result<String, String> {
        let lossy = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
        self.bytes_until_closed(secs).map(lossy).map_err(lossy)
    }

    /// [`Conn::until_closed`], as bytes.
    pub fn bytes_until_closed(&mut self, secs: u64) -> Result<Vec<u8>, Vec<u8>> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self.fill(deadline) {
                Ok(0) => return Ok(self.take_bytes()),
                Ok(_) => {}
                Err(()) => return Err(self.take_bytes()),
            }
        }
    }

    /// Read until the bytes read contain `text`, `secs` at most; whether they did.
    pub fn read_until(&mut self, text: &[u8], secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if self.buf.windows(text.len()).any(|w| w == text) {
                return true;
            }
            match self.fill(deadline) {
                Ok(0) | Err(()) => return false,
                Ok(_) => {}
            }
        }
    }

    /// `CONNECT target` (Host the same); `Err` with the answer's head unless it is 200.
    pub fn connect(&mut self, target: &str) -> Result<(), String> {
        let head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        if let Err(e) = self.send(head.as_bytes()) {
            return Err(format!("sending CONNECT: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                let head = String::from_utf8_lossy(&head).into_owned();
                return if head.starts_with("HTTP/1.1 200 ") {
                    Ok(())
                } else {
                    Err(head.trim_end().to_string())
                };
            }
            match self.fill(deadline) {
                Ok(0) => return Err(format!("closed: {:?}", self.take_text())),
                Ok(_) => {}
                Err(()) => return Err("no answer to CONNECT in 10 s".into()),
            }
        }
    }

    /// Everything read and not consumed, as (lossy) text.
    pub fn take_text(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// Everything read and not consumed, as bytes.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}
