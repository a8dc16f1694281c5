//! Spawning the real `perimeter` binary for end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_perimeter");

/// A running `perimeter serve`, killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, as the server announced it.
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Server {
    /// Start `perimeter serve` on 127.0.0.1:0 with `data_dir`, extra args and env; learn the
    /// port from the address it announces, then wait for /health (30 s at most).
    pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = data_dir.join(format!("serve-{}-{n}.log", std::process::id()));
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--reconcile-interval-ms",
            "50",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env_remove("PERIMETER_ADMIN_API_KEY")
        .env_remove("PERIMETER_DATABASE_URL")
        .env_remove("PERIMETER_LISTEN")
        .env_remove("PERIMETER_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning perimeter serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(url) = text
                .lines()
                .find_map(|l| l.split("control plane listening on ").nth(1))
            {
                break url
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("perimeter serve did not announce its address; log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let s = Server {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        while Instant::now() < deadline {
            if curl(&[&format!("{}/health", s.url)]).0 == 200 {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "perimeter serve did not become healthy in 30 s; log:\n{}",
            s.log_text()
        );
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn admin_key_file(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-api-key"))
            .expect("admin-api-key")
            .trim()
            .to_string()
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "perimeter serve did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9, no chance to clean up.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run curl with `args`; returns (HTTP status, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

// ---------------------------------------------------------------------------------------------
// Shared by the gateway end-to-end tests (tests/gateway.rs has its own older copies).

/// Whether `perimeter serve --help` lists `flag` (for flags that land while tests are written).
pub fn serve_supports(flag: &str) -> bool {
    static HELP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HELP.get_or_init(|| {
        let out = Command::new(BIN)
            .args(["serve", "--help"])
            .output()
            .expect("perimeter serve --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .contains(flag)
}

/// A running `perimeter gateway` (explicit proxy on 127.0.0.1:0), killed on drop.
pub struct Gateway {
    pub child: Child,
    /// `127.0.0.1:<port>` of the explicit proxy, as the gateway announced it.
    pub proxy: String,
    /// The transparent listener's address, when the gateway runs one.
    pub transparent: Option<String>,
    /// `http://<addr>/metrics`, when the gateway serves metrics (`--metrics-listen`).
    pub metrics: Option<String>,
    pub log: PathBuf,
}

impl Gateway {
    /// Start `perimeter gateway` for `region` with a hosts file and a DNS server (never the
    /// system's: tests must not ask the machine's resolver); wait (30 s at most) until it
    /// announces its proxy address.
    pub fn start(
        dir: &Path,
        control_plane: &str,
        token: &str,
        region: &str,
        state_dir: &Path,
        hosts: &Path,
        dns: &str,
    ) -> Gateway {
        Self::start_with(
            dir,
            control_plane,
            token,
            region,
            state_dir,
            hosts,
            dns,
            &[],
        )
    }

    /// [`Gateway::start`] with further flags (e.g. `--transparent-listen`).
    #[allow(clippy::too_many_arguments)]
    pub fn start_with(
        dir: &Path,
        control_plane: &str,
        token: &str,
        region: &str,
        state_dir: &Path,
        hosts: &Path,
        dns: &str,
        extra: &[&str],
    ) -> Gateway {
        let mut args = vec!["--region", region];
        args.extend_from_slice(extra);
        Self::start_registered(dir, control_plane, token, state_dir, hosts, dns, &args)
    }

    /// [`Gateway::start_with`] without `--region`: the gateway takes its region from its
    /// registration alone.
    pub fn start_registered(
        dir: &Path,
        control_plane: &str,
        token: &str,
        state_dir: &Path,
        hosts: &Path,
        dns: &str,
        extra: &[&str],
    ) -> Gateway {
        std::fs::create_dir_all(dir).unwrap();
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = dir.join(format!("gateway-{}-{n}.log", std::process::id()));
        let logf = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "gateway",
                "--control-plane",
                control_plane,
                "--token",
                token,
            ])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--hosts-file")
            .arg(hosts)
            .args(["--dns-server", dns, "--dns-timeout-ms", "1000"])
            .args(["--poll-wait-seconds", "2", "--decisions-push-ms", "300"])
            .args(extra)
            .env_remove("PERIMETER_CONTROL_PLANE")
            .env_remove("PERIMETER_GATEWAY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawning perimeter gateway");
        let deadline = Instant::now() + Duration::from_secs(30);
        let proxy = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.split("perimeter: gateway listening on ").nth(1))
            {
                break addr.trim().to_string();
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                panic!("perimeter gateway did not announce its address; log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let metrics = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.split("perimeter: gateway metrics on ").nth(1))
            .map(|a| a.trim().to_string());
        let transparent = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.split("perimeter: gateway transparent listener on ")
                    .nth(1)
            })
            .map(|a| a.trim().to_string());
        Gateway {
            child,
            proxy,
            transparent,
            metrics,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(
                    st.success(),
                    "gateway exited with {st}; log:\n{}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API call with the admin key: (status, body).
pub fn api(
    s: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let url = format!("{}{path}", s.url);
    let auth = format!("Authorization: Bearer {key}");
    let mut args = vec![
        "-X",
        method,
        "-H",
        &auth,
        "-H",
        "content-type: application/json",
    ];
    let text;
    if let Some(b) = body {
        text = b.to_string();
        args.extend(["-d", text.as_str()]);
    }
    args.push(&url);
    curl(&args)
}

/// An API call that must succeed; its JSON body.
pub fn ok(
    s: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let (st, b) = api(s, key, method, path, body);
    assert!((200..300).contains(&st), "{method} {path}: {st} {b}");
    json(&b)
}

/// Poll `f` every 100 ms until it holds; panic after `secs`.
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the first header `name` in a response's text (case-insensitive name).
pub fn header_value(resp: &str, name: &str) -> Option<String> {
    resp.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A tiny HTTP/1.1 upstream on 127.0.0.1:0 answering `upstream-ok <path>` and closing.
pub fn http_upstream() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let body = format!("upstream-ok {path}\n");
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

/// A DNS server on 127.0.0.1:0 that answers NXDOMAIN to everything.
pub fn nxdomain_dns() -> String {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut reply = buf[..n].to_vec();
            reply[2] = 0x80 | (reply[2] & 0x79); // QR, keep opcode and RD
            reply[3] = 0x80 | 3; // RA, NXDOMAIN
            for b in &mut reply[6..12] {
                *b = 0; // no answer, authority or additional records
            }
            // Keep only the question section.
            let mut end = 12;
            while end < reply.len() && reply[end] != 0 {
                end += 1 + reply[end] as usize;
            }
            reply.truncate((end + 5).min(reply.len()));
            let _ = sock.send_to(&reply, peer);
        }
    });
    addr
}
