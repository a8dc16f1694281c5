//! Processes: children killed on drop, their CPU time and resident set; the machine's busy
//! time; whether this one runs as root.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup::CLEANUP;

/// A child process, killed (and reaped) on drop.
pub(crate) struct Proc {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Proc {
        let logf = std::fs::File::create(&log).expect("creating a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        CLEANUP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .push(child.id());
        Proc { name, child, log }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (bounded) for a line of the log containing `marker`; returns what follows it.
    pub(crate) fn announced(&mut self, marker: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let text = self.log_text();
            if let Some(rest) = text.lines().find_map(|l| l.split(marker).nth(1)) {
                return rest.split_whitespace().next().unwrap_or("").to_string();
            }
            if Instant::now() > deadline || self.child.try_wait().ok().flatten().is_some() {
                panic!("{} did not announce {marker:?}; log:\n{text}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// User + system CPU seconds of the process so far (all its threads).
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let pid = self.child.id();
        CLEANUP
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pids
            .retain(|&p| p != pid);
    }
}

/// User + system CPU seconds of process `pid` so far, all its threads (ended ones too), at
/// nanosecond resolution: its POSIX CPU-time clock (`clock_getcpuclockid`), which Linux lets any
/// process read. `/proc/<pid>/stat` counts 10 ms ticks: on a 0.4 s bulk run that is 2.5% per
/// reading, enough to flip a CPU comparison near 1x. Falls back to those ticks where the clock
/// cannot be read.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    use nix::time::{clock_getcpuclockid, clock_gettime};
    let clock = clock_getcpuclockid(nix::unistd::Pid::from_raw(pid as i32));
    match clock.and_then(clock_gettime) {
        Ok(t) => t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9,
        Err(_) => stat_cpu_seconds(pid),
    }
}

/// utime + stime from /proc/<pid>/stat, in seconds (clock ticks of 1/100 s, Linux's USER_HZ).
fn stat_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3; utime is field 14 and stime 15.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// Resident set of a process, in KiB (VmRSS of /proc/<pid>/status).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The resident set once it holds still: two readings 250 ms apart within 64 KiB (10 s at most).
pub(crate) async fn settled_rss_kib(pid: u32) -> u64 {
    let mut last = rss_kib(pid);
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid);
        if now.abs_diff(last) <= 64 {
            return now;
        }
        last = now;
    }
    last
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// (busy, total) clock ticks of all CPUs, from /proc/stat.
pub(crate) fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Share of the machine's CPU time that was busy since `ticks0` ([`machine_ticks`]), 0..1.
pub(crate) fn busy_since(ticks0: (u64, u64)) -> f64 {
    let t = machine_ticks();
    (t.0 - ticks0.0) as f64 / ((t.1 - ticks0.1).max(1)) as f64
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The program `bin`, installed from Debian's `package` (`apt-get install`) when it is missing
/// and this runs as root.
pub(crate) fn installed(bin: &str, package: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(bin);
    if path.exists() {
        return Ok(path);
    }
    if !is_root() {
        return Err(format!(
            "{bin} is missing and this is not root: apt-get install {package}"
        ));
    }
    eprintln!("bench: installing {package} (apt-get install -y {package}) ...");
    let st = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match st {
        Ok(s) if s.success() && path.exists() => Ok(path),
        _ => Err(format!("apt-get install {package} failed")),
    }
}
