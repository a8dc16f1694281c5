//! Cleanup: what the bench changed on the host, undone on exit, on a panic and on a signal.

use std::path::PathBuf;
use std::sync::Mutex;

use crate::cc::CC_SYSCTL;

/// The child processes alive and the host's congestion control to put back, for the signal
/// handler (drops do the same on a normal exit or a panic).
pub(crate) static CLEANUP: Mutex<Cleanup> = Mutex::new(Cleanup {
    pids: Vec::new(),
    cc: None,
    dir: None,
    netns: None,
});

pub(crate) struct Cleanup {
    pub(crate) pids: Vec<u32>,
    pub(crate) cc: Option<String>,
    /// The temporary directory (logs, the control plane's data, Squid's files).
    pub(crate) dir: Option<PathBuf>,
    /// A network namespace the bench created (deleted with its links).
    pub(crate) netns: Option<String>,
}

/// On SIGINT or SIGTERM: kill every child, restore the congestion control, remove the temporary
/// directory and the network namespace, exit.
pub(crate) fn cleanup_on_signal(rt: &tokio::runtime::Runtime) {
    rt.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        let c = CLEANUP.lock().unwrap_or_else(|e| e.into_inner());
        for &pid in &c.pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(cc) = &c.cc {
            let _ = std::fs::write(CC_SYSCTL, cc);
        }
        if let Some(dir) = &c.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(ns) = &c.netns {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
        eprintln!("bench: interrupted; children killed, congestion control restored");
        std::process::exit(130);
    });
}

/// Raise RLIMIT_NOFILE (children inherit it) to hold `idle` tunnels; returns the soft limit.
pub(crate) fn raise_nofile(idle: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // The proxy holds two descriptors per idle tunnel (client and upstream), this process and
    // the idle sinks one each, besides their own.
    let want = (2 * idle + 8192).max(65_536);
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    if soft >= want {
        return soft;
    }
    // Raising the hard limit needs root (CAP_SYS_RESOURCE); else the soft one goes up to it.
    if setrlimit(Resource::RLIMIT_NOFILE, want, want.max(hard)).is_ok() {
        return want;
    }
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(s, _)| s)
}
