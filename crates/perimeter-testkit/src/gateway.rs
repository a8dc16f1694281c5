//! `perimeter gateway` as a child process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::STARTS;

/// The tracing target of the gateway's decision events.
pub const DECISION_TARGET: &str = "perimeter::decision";

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
    /// Start `bin gateway` for `region` with a hosts file and a DNS server (never the
    /// system's: tests must not ask the machine's resolver); wait (30 s at most) until it
    /// announces its proxy address.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        bin: &str,
        dir: &Path,
        control_plane: &str,
        token: &str,
        region: &str,
        state_dir: &Path,
        hosts: &Path,
        dns: &str,
    ) -> Gateway {
        Self::start_with(
            bin,
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
        bin: &str,
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
        Self::start_registered(bin, dir, control_plane, token, state_dir, hosts, dns, &args)
    }

    /// [`Gateway::start_with`] without `--region`: the gateway takes its region from its
    /// registration alone.
    #[allow(clippy::too_many_arguments)]
    pub fn start_registered(
        bin: &str,
        dir: &Path,
        control_plane: &str,
        token: &str,
        state_dir: &Path,
        hosts: &Path,
        dns: &str,
        extra: &[&str],
    ) -> Gateway {
        std::fs::create_dir_all(dir).unwrap();
        let n = STARTS.fetch_add(1, Ordering::SeqCst);
        let log = dir.join(format!("gateway-{}-{n}.log", std::process::id()));
        let logf = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(bin)
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

    /// The decision events logged so far (their fields: `source`, `destination`, `port`,
    /// `sni_or_host`, `path`, `verdict`, `rule`, `reason`, bytes...), in order. Needs a gateway
    /// started with `--log-format json`.
    pub fn decisions(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == DECISION_TARGET)
            .map(|v| v["fields"].clone())
            .collect()
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
