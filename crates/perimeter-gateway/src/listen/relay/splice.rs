//! Bulk through the kernel: a direction that carries bulk moves it socket to pipe to socket
//! with `splice(2)`, never through the gateway's memory.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{Activity, Direction, Stop, pass_end_on};
use crate::listen::revoke::Revocation;

/// Capacity asked for each direction's pipe (the kernel may grant less; the default is 64 KiB).
const PIPE_SIZE: usize = 1024 * 1024;

/// Congestion control that paces its sends, and the one used instead towards a loopback peer.
const PACING_CONGESTION_CONTROL: &str = "bbr";
const LOOPBACK_CONGESTION_CONTROL: &str = "cubic";

/// A bulk direction sending to a peer on the same host (an embedded gateway's workloads, or a
/// loopback upstream a CIDR rule admits) does not pace. BBR without the `fq` qdisc paces in
/// TCP itself, with a timer per burst; on loopback there is no link to be fair to or queue to
/// keep short, so the timers only cost CPU and leave gaps: relaying to a loopback peer ran at
/// about two thirds of the rate it reaches unpaced, at 1.3x the CPU per byte (the gateway
/// bench). Any other congestion control, and every peer off the host, is left as the host set
/// it. Best effort: a host without `cubic` keeps its own.
pub(super) fn unpaced_on_loopback(dst: &TcpStream) {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt::TcpCongestion};
    if !dst
        .peer_addr()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback())
    {
        return;
    }
    let paced = getsockopt(dst, TcpCongestion)
        .is_ok_and(|cc| cc.as_encoded_bytes() == PACING_CONGESTION_CONTROL.as_bytes());
    if paced && let Err(e) = setsockopt(dst, TcpCongestion, &LOOPBACK_CONGESTION_CONTROL.into()) {
        tracing::debug!(error = %e, "cannot turn pacing off towards a loopback peer");
    }
}

/// One direction's pipe for `splice(2)`.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    pub(super) fn new() -> io::Result<Pipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A larger pipe means fewer splices per byte; the kernel may refuse (per-user pipe
        // limits), and then the default capacity does.
        let _ = fcntl(write.as_fd(), FcntlArg::F_SETPIPE_SZ(PIPE_SIZE as i32));
        let capacity = fcntl(write.as_fd(), FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|c| usize::try_from(c).ok())
            .filter(|c| *c > 0)
            .unwrap_or(64 * 1024);
        Ok(Pipe {
            read,
            write,
            capacity,
        })
    }

    /// Fill the pipe from `src` when it is empty, then drain it into `dst` completely. Filling
    /// only an empty pipe keeps `EAGAIN` unambiguous: from the socket into an empty pipe it
    /// can only mean "no data", and from a non-empty pipe into the socket only "socket full",
    /// which is what tokio's readiness needs to be told.
    pub(super) async fn pump(
        &self,
        src: &TcpStream,
        dst: &TcpStream,
        dir: Direction,
        activity: &Activity,
        ended: &AtomicU8,
        mut revocation: Option<&mut Revocation>,
    ) -> Result<(), Stop> {
        let err = |e| Stop::Io(dir, e);
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            let mut in_pipe = loop {
                src.readable().await.map_err(err)?;
                match src.try_io(Interest::READABLE, || {
                    splice(src, None, &self.write, None, self.capacity, flags)
                        .map_err(io::Error::from)
                }) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(err(e)),
                }
            };
            if in_pipe == 0 {
                return pass_end_on(dst, ended).map_err(err);
            }
            // What sits in the pipe is dropped, never sent, once the policy revoked.
            if let Some(r) = revocation.as_deref_mut() {
                r.check().map_err(Stop::Revoked)?;
            }
            while in_pipe > 0 {
                dst.writable().await.map_err(err)?;
                match dst.try_io(Interest::WRITABLE, || {
                    splice(&self.read, None, dst, None, in_pipe, flags).map_err(io::Error::from)
                }) {
                    Ok(n) => {
                        activity.add(dir, n as u64);
                        in_pipe -= n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(err(e)),
                }
            }
        }
    }
}
