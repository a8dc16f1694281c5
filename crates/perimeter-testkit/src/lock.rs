//! Machine-wide locks: an abstract Unix socket is held while the lock is, and released when it
//! is dropped or when the process dies, so a killed test never leaves a lock behind.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::time::{Duration, Instant};

/// Take the lock `name` if it is free.
pub fn try_lock(name: &str) -> Option<UnixListener> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixListener::bind_addr(&addr).ok()
}

/// Take the lock `name`, waiting for it `secs` at most (then panic).
pub fn lock_within(name: &str, secs: u64) -> UnixListener {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(l) = try_lock(name) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "could not take the lock {name} within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
