//! The upstream's network: a namespace of its own joined to this one by a veth pair, on a
//! documentation range the address guard does not hold special (198.51.100.224/28), and the
//! HTTPS upstream inside it. Loopback would not do: a loopback upstream needs a CIDR rule on its
//! port, and a CIDR rule on the port makes the gateway admit a name that only path rules allow
//! per address (spliced through the CIDR rule) instead of inspecting it.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use perimeter_testkit::lock::try_lock;
use perimeter_testkit::netns::{ip, ip_quiet, kill_inside};

use crate::PORT;
use crate::cleanup::CLEANUP;
use crate::procs::Proc;

const NS: &str = "perimeter-bench-insp";
const VETH: &str = "pbinspa";
const PEER: &str = "pbinspb";
/// This namespace's end of the link (one of the gateway's own addresses).
const ROOT_LINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 225);
/// The upstream: the namespace's end of the link. Outside the netns tests' slots
/// (198.51.100.0-127).
pub(crate) const UPSTREAM: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 226);

pub(crate) struct Net {
    /// Killed before the namespace goes (field order: dropped first).
    pub(crate) upstream: Proc,
    /// The upstream's certificate: the gateway's `--upstream-ca-file`, the spliced clients'
    /// trust.
    pub(crate) cert: PathBuf,
    _lock: UnixListener,
}

/// The namespace, the link and the upstream on [`UPSTREAM`]:[`PORT`], serving a certificate for
/// `names`.
pub(crate) fn start_net(dir: &Path, names: &[&str]) -> Net {
    let lock = try_lock("perimeter-bench-inspection")
        .expect("another inspection bench holds the lock perimeter-bench-inspection");
    // What a killed run left behind (we hold the lock: nobody else uses these names).
    kill_inside(NS);
    ip_quiet(&["netns", "del", NS]);
    ip_quiet(&["link", "del", VETH]);
    ip(&["netns", "add", NS]);
    CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).netns = Some(NS.to_string());
    ip(&[
        "link", "add", VETH, "type", "veth", "peer", "name", PEER, "netns", NS,
    ]);
    ip(&["addr", "add", &format!("{ROOT_LINK}/28"), "dev", VETH]);
    ip(&["link", "set", VETH, "up"]);
    ip(&["-n", NS, "link", "set", "lo", "up"]);
    ip(&[
        "-n",
        NS,
        "addr",
        "add",
        &format!("{UPSTREAM}/28"),
        "dev",
        PEER,
    ]);
    ip(&["-n", NS, "link", "set", PEER, "up"]);

    let certs = dir.join("upstream");
    std::fs::create_dir_all(&certs).unwrap();
    let made = perimeter_testkit::certs::self_signed(&certs, names);
    let exe = std::env::current_exe().expect("this bench's path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", NS])
        .arg(exe)
        .arg("--upstream")
        .arg(SocketAddr::from((UPSTREAM, PORT)).to_string())
        .arg(&made.cert)
        .arg(&made.key);
    let mut upstream = Proc::spawn("upstream", &mut cmd, dir.join("upstream.log"));
    upstream.announced("upstream listening on ", 20);
    Net {
        upstream,
        cert: made.cert,
        _lock: lock,
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = self.upstream.child.kill();
        kill_inside(NS);
        // The veth pair goes with its end inside.
        ip_quiet(&["netns", "del", NS]);
        ip_quiet(&["link", "del", VETH]);
        CLEANUP.lock().unwrap_or_else(|e| e.into_inner()).netns = None;
    }
}
