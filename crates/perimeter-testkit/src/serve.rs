//! `perimeter serve` as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::curl::curl;

/// Numbers the log files of processes started by this test process.
pub(crate) static STARTS: AtomicUsize = AtomicUsize::new(0);

/// A running `perimeter serve`, killed on drop.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:<port>`, as the server announced it.
    pub url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Server {
    /// Start `bin serve` on 127.0.0.1:0 with `data_dir`, extra args and env; learn the port
    /// from the address it announces, then wait for /health (30 s at most).
    pub fn start(bin: &str, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let n = STARTS.fetch_add(1, Ordering::SeqCst);
        let log = data_dir.join(format!("serve-{}-{n}.log", std::process::id()));
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        // A quick reconciler unless the test sets its own interval.
        if !args.contains(&"--reconcile-interval-ms") {
            cmd.args(["--reconcile-interval-ms", "50"]);
        }
        cmd.arg("--data-dir")
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

/// Whether `bin serve --help` lists `flag` (for flags that land while tests are written). The
/// help text is read once per test process: a process tests one binary.
pub fn serve_supports(bin: &str, flag: &str) -> bool {
    static HELP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HELP.get_or_init(|| {
        let out = Command::new(bin)
            .args(["serve", "--help"])
            .output()
            .expect("perimeter serve --help");
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
    .contains(flag)
}
