//! `perimeter creds serve` as a child process, killed on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct CredsServe {
    child: Child,
    /// `127.0.0.1:<port>`, as it announced.
    pub addr: String,
    /// The token it made in its token file.
    pub token: String,
    pub token_file: PathBuf,
    pub log: PathBuf,
    /// What it printed on stdout at start.
    pub banner: String,
}

impl CredsServe {
    /// Write `config` to `dir/creds.toml` and start `bin creds serve` on it (listening on
    /// 127.0.0.1:0, token file `dir/creds-token`) with `env` added; wait (30 s at most) for it
    /// to announce its address. The child gets no AWS_* or proxy variable but those in `env`.
    pub fn start(bin: &str, dir: &Path, config: &str, env: &[(&str, &str)]) -> CredsServe {
        std::fs::create_dir_all(dir).expect("dir");
        let path = dir.join("creds.toml");
        std::fs::write(&path, config).expect("config");
        let token_file = dir.join("creds-token");
        let log = dir.join("creds-serve.log");
        let mut cmd = Command::new(bin);
        cmd.args(["creds", "serve", "--config"])
            .arg(&path)
            .args(["--listen", "127.0.0.1:0", "--token-file"])
            .arg(&token_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"));
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.to_ascii_lowercase().ends_with("_proxy") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start creds serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.push(line);
                let _ = tx.send(lines.join("\n"));
            }
        });
        let mut banner = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Some(a) = banner
                .lines()
                .find_map(|l| l.strip_prefix("credential endpoint listening on http://"))
                .filter(|_| banner.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI"))
            {
                break a.to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "creds serve exited ({status}): {banner}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "creds serve did not start: {banner}"
            );
            if let Ok(b) = rx.recv_timeout(Duration::from_millis(200)) {
                banner = b;
            }
        };
        let token = std::fs::read_to_string(&token_file)
            .expect("token file")
            .trim()
            .to_string();
        CredsServe {
            child,
            addr,
            token,
            token_file,
            log,
            banner,
        }
    }

    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI` of a profile.
    pub fn uri(&self, profile: &str) -> String {
        format!("http://{}/v1/credentials/{profile}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for CredsServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
