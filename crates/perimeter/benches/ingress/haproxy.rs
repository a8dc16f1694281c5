//! HAProxy as the reference TCP relay: the same allowlist as an ACL in front of the same
//! workload, so the figures show what the best-known proxy adds on this machine.
//!
//! Same conditions as `perimeter serve`'s listener: one thread per core (as its accept loops),
//! the allowlist's networks in an ACL file (`src -f`) checked on every connection before
//! anything is read, `splice(2)` both ways through 1 MiB pipes (`option splice-request` and
//! `splice-response`, `tune.pipesize`; the gateway's bulk goes through 1 MiB pipes too), and
//! one log line per connection written by the proxy to its stderr file (`option tcplog`; the
//! gateway logs each ingress decision to its own). Installed with apt-get when missing (as
//! root); without it the bench goes on without this column.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::{Proc, free_port, installed};
use crate::serve::entry_cidr;

/// HAProxy's binary, installed (`apt-get install haproxy`) when missing and this is root.
pub(crate) fn haproxy_binary() -> Result<PathBuf, String> {
    installed("/usr/sbin/haproxy", "haproxy")
}

/// Start HAProxy in the foreground with `threads` threads, admitting the `entries` networks of
/// the bench's allowlist and relaying to `workload`; its process and listening address.
pub(crate) fn start_haproxy(
    dir: &Path,
    bin: &Path,
    workload: SocketAddr,
    entries: u64,
    threads: usize,
) -> Result<(Proc, SocketAddr), String> {
    let hdir = dir.join("haproxy");
    std::fs::create_dir_all(&hdir).map_err(|e| format!("creating {}: {e}", hdir.display()))?;
    let acl: String = (0..entries)
        .map(|i| {
            let (ip, mask) = entry_cidr(i, entries);
            format!("{ip}/{mask}\n")
        })
        .collect();
    let acl_path = hdir.join("allowlist.lst");
    std::fs::write(&acl_path, acl).map_err(|e| format!("writing the ACL file: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let conf = format!(
        "global
    nbthread {threads}
    # Two descriptors per connection and two per pipe (a quarter of maxconn): within the
    # bench's descriptor limit.
    maxconn 4000
    tune.pipesize 1048576
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    option splice-request
    option splice-response
    timeout connect 5s
    timeout client 600s
    timeout server 600s
frontend sql
    bind {addr}
    acl allowlist src -f {acl}
    tcp-request connection reject if !allowlist
    default_backend workload
backend workload
    server workload {workload}
",
        acl = acl_path.display()
    );
    let conf_path = hdir.join("haproxy.cfg");
    std::fs::write(&conf_path, conf).map_err(|e| format!("writing haproxy.cfg: {e}"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-db").arg("-f").arg(&conf_path);
    let mut haproxy = Proc::spawn("haproxy", &mut cmd, hdir.join("stderr.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline || haproxy.child.try_wait().ok().flatten().is_some() {
            return Err(format!(
                "haproxy did not listen on {addr}; its stderr:\n{}",
                haproxy.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((haproxy, addr))
}
