//! HAProxy as the reference TCP relay: the same allowlist as an ACL in front of the same
//! workload, so the figures show what the best-known proxy adds on this machine.
//!
//! Same conditions as `perimeter serve`'s listener: one thread per core (as its accept loops),
//! the allowlist's networks in an ACL file (`src -f`) checked on every connection before
//! anything is read, 1 MiB pipes for `splice(2)` (`tune.pipesize`; the gateway's bulk goes
//! through 1 MiB pipes too), and one log line per connection written by the proxy to its stderr
//! file (`option tcplog`; the gateway logs each ingress decision to its own). Installed with
//! apt-get when missing (as root); without it the bench goes on without this column.
//!
//! The gateway copies short exchanges and splices a direction once it carries bulk. HAProxy
//! has no one setting that does both here: `option splice-auto` never spliced this bench's
//! upload (0.22x direct at 0.79 CPU s per GiB, measured), and splicing always (`option
//! splice-request` and `splice-response`) sends every one-byte echo of the setups through
//! pipes. So HAProxy gets its better setting for each: [`Splice::Always`] for bulk,
//! [`Splice::Auto`] for setups, as two instances of the same configuration otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::connects::setup_once;
use crate::procs::{Proc, free_port, installed};
use crate::serve::entry_cidr;
use crate::source;

/// HAProxy's binary, installed (`apt-get install haproxy`) when missing and this is root.
pub(crate) fn haproxy_binary() -> Result<PathBuf, String> {
    installed("/usr/sbin/haproxy", "haproxy")
}

/// HAProxy's version line (`haproxy -v`), or what kept it from answering.
pub(crate) fn haproxy_version(bin: &Path) -> String {
    match Command::new(bin).arg("-v").output() {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("HAProxy (no version line)")
            .to_string(),
        Err(e) => format!("HAProxy (haproxy -v: {e})"),
    }
}

/// When HAProxy splices.
#[derive(Clone, Copy)]
pub(crate) enum Splice {
    /// `option splice-auto`: when it judges it worthwhile (the setups' instance).
    Auto,
    /// `option splice-request` and `splice-response`: whenever it can (the bulk instance).
    Always,
}

/// Start HAProxy in the foreground with `threads` threads, admitting the `entries` networks of
/// the bench's allowlist and relaying to `workload` with `splice`, then wait (30 s at most) until
/// a connection through it is echoed; its process and listening address.
pub(crate) fn start_haproxy(
    dir: &Path,
    bin: &Path,
    workload: SocketAddr,
    entries: u64,
    threads: usize,
    splice: Splice,
) -> Result<(Proc, SocketAddr), String> {
    let (name, splice_options) = match splice {
        Splice::Auto => ("haproxy-auto", "option splice-auto"),
        Splice::Always => (
            "haproxy-always",
            "option splice-request\n    option splice-response",
        ),
    };
    let hdir = dir.join(name);
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
    {splice_options}
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
    let haproxy = Proc::spawn("haproxy", &mut cmd, hdir.join("stderr.log"));
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match setup_once(source(0), addr) {
            Ok(_) => return Ok((haproxy, addr)),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "no echo through {name} ({addr}) after 30 s: {last}; its stderr:\n{}",
        haproxy.log_text()
    ))
}
