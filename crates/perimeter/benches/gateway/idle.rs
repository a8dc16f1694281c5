//! Idle tunnels held through a proxy and what they cost it in memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clients::{Dest, Via, idle_tunnel};
use crate::procs::{Proc, settled_rss_kib};
use crate::{IDLE_CONCURRENCY, loopback};

/// Idle tunnels held through a proxy and what they cost it in memory.
pub(crate) struct Idle {
    /// `BENCH_IDLE_TUNNELS`.
    pub(crate) requested: u64,
    /// What the descriptor limit left room for (at most `requested`).
    pub(crate) wanted: u64,
    pub(crate) held: u64,
    pub(crate) open_secs: f64,
    pub(crate) rss_before_kib: u64,
    pub(crate) rss_after_kib: u64,
    /// Descriptors of the proxy before and while the tunnels were held.
    pub(crate) fds_before: u64,
    pub(crate) fds_held: u64,
    pub(crate) first_error: Option<String>,
}

impl Idle {
    pub(crate) fn kib_per_tunnel(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) / self.held.max(1) as f64
    }
}

/// Open descriptors of a process (entries of /proc/<pid>/fd).
pub(crate) fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Open `requested` tunnels (fewer if a process's descriptor limit `nofile` leaves no room)
/// through `proxy` to the idle sinks, 64 being opened at a time and 120 s at most, each up to
/// its sink's answer. The proxy's resident set is read before, and again once the count
/// settled (the proxy holds two more descriptors per tunnel, the sinks one) and the figure
/// holds still; then every tunnel is closed and the proxy and the sinks are seen to let them
/// go (bounded).
pub(crate) fn idle_tunnels(
    via: Via,
    dests: &Arc<Vec<Dest>>,
    requested: u64,
    proxy: &Proc,
    sinks: &Proc,
    nofile: u64,
) -> Idle {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pid, spid) = (proxy.pid(), sinks.pid());
    let (fds0, sfds0) = (fds(pid), fds(spid));
    // Room in each process, with a margin for its own descriptors (and Squid's reserve).
    let room = |used: u64, per_tunnel: u64| nofile.saturating_sub(used + 128) / per_tunnel;
    let n = requested
        .min(room(fds0, 2))
        .min(room(sfds0, 1))
        .min(room(fds(std::process::id()), 1));
    rt.block_on(async {
        let rss_before_kib = settled_rss_kib(pid).await;
        let next = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let first_error = Arc::new(Mutex::new(None::<String>));
        let started = Instant::now();
        let deadline = started + Duration::from_secs(120);
        let mut tasks = Vec::new();
        for _ in 0..IDLE_CONCURRENCY {
            let (next, errors, first_error, dests) = (
                next.clone(),
                errors.clone(),
                first_error.clone(),
                dests.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= n || Instant::now() > deadline || errors.load(Ordering::Relaxed) > 100 {
                        return mine;
                    }
                    let i = k as usize;
                    let r = tokio::time::timeout(
                        Duration::from_secs(10),
                        idle_tunnel(via, loopback(i as u8), &dests[i % dests.len()]),
                    )
                    .await;
                    match r {
                        Ok(Ok(s)) => mine.push(s),
                        other => {
                            let e = match other {
                                Ok(Err(e)) => e.to_string(),
                                _ => "idle tunnel not open after 10 s".to_string(),
                            };
                            first_error.lock().unwrap().get_or_insert(e);
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let mut streams = Vec::new();
        for t in tasks {
            streams.extend(t.await.unwrap_or_default());
        }
        let open_secs = started.elapsed().as_secs_f64();
        let count = streams.len() as u64;
        // The count settles: every tunnel held has its two descriptors in the proxy and its
        // one at the sinks (10 s at most).
        let settle = Instant::now() + Duration::from_secs(10);
        while (fds(pid) < fds0 + 2 * count || fds(spid) < sfds0 + count) && Instant::now() < settle
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fds_held = fds(pid);
        let rss_after_kib = settled_rss_kib(pid).await;
        drop(streams);
        let gone = Instant::now() + Duration::from_secs(30);
        while (fds(pid) > fds0 + 16 || fds(spid) > sfds0) && Instant::now() < gone {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first_error = first_error.lock().unwrap().take();
        Idle {
            requested,
            wanted: n,
            held: count,
            open_secs,
            rss_before_kib,
            rss_after_kib,
            fds_before: fds0,
            fds_held,
            first_error,
        }
    })
}
