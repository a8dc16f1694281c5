//! Squid: installed when missing, configured as a plain CONNECT proxy.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::procs::{Proc, free_port, installed};

pub(crate) fn squid_binary() -> Result<PathBuf, String> {
    installed("/usr/sbin/squid", "squid")
}

pub(crate) fn start_squid(
    dir: &Path,
    bin: &Path,
    sink_ports: &[u16],
    hosts: &Path,
    max_fds: u64,
) -> Result<(Proc, SocketAddr), String> {
    use std::os::unix::fs::PermissionsExt;
    let sdir = dir.join("squid");
    std::fs::create_dir_all(&sdir).unwrap();
    // Squid drops root for its `proxy` user: it must reach and write its directory.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    let _ = std::fs::set_permissions(&sdir, std::fs::Permissions::from_mode(0o777));
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ports = sink_ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let d = sdir.display();
    let h = hosts.display();
    // Like the gateway's decision log, one line per connection, written by the proxy itself;
    // BENCH_SQUID_ACCESS_LOG=0 turns it off.
    let access_log = if std::env::var("BENCH_SQUID_ACCESS_LOG").as_deref() == Ok("0") {
        "none".to_string()
    } else {
        format!("stdio:{d}/access.log")
    };
    let conf = format!(
        "http_port 127.0.0.1:{port}
acl sink_ports port {ports}
acl CONNECT method CONNECT
http_access deny CONNECT !sink_ports
http_access allow all
cache deny all
cache_mem 8 MB
workers 1
max_filedescriptors {max_fds}
hosts_file {h}
dns_nameservers 127.0.0.1
ipcache_size 64
fqdncache_size 64
access_log {access_log}
cache_log {d}/cache.log
cache_store_log none
pid_filename {d}/squid.pid
coredump_dir {d}
shutdown_lifetime 0 seconds
client_db off
forwarded_for delete
via off
visible_hostname perimeter-bench
"
    );
    let conf_path = sdir.join("squid.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-N").arg("-f").arg(&conf_path);
    let squid = Proc::spawn("squid", &mut cmd, sdir.join("stderr.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            let cache = std::fs::read_to_string(sdir.join("cache.log")).unwrap_or_default();
            return Err(format!(
                "squid did not listen on {addr}; stderr:\n{}\ncache.log:\n{cache}",
                squid.log_text()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((squid, addr))
}
