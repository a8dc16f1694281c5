//! Bulk through the kernel: a direction that carries bulk moves it socket to pipe to socket
//! with `splice(2)`, never through the gateway's memory.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU8;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use nix::libc;
use nix::sys::socket::{getsockopt, setsockopt, sockopt::RcvBuf};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};
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
    use nix::sys::socket::sockopt::TcpCongestion;
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
        let mut quiet = Quiet::default();
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
                    // The destination is full: its reader sets the pace now.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => quiet.hush(src),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(err(e)),
                }
            }
            quiet.restore(src);
        }
    }
}

// `SO_RCVLOWAT`, which nix does not name: declared with nix's own macro for options it lacks.
sockopt_impl!(RcvLowWat, Both, libc::SOL_SOCKET, libc::SO_RCVLOWAT, i32);

/// A source told to wake the relay only once a good part of its receive buffer waits, while
/// the relay waits for room at the destination.
///
/// Each segment arriving at a socket wakes an edge-triggered poller, whether or not anyone
/// waits to read it. A relay whose destination is full waits for room there, not for the
/// source, so every segment its source receives meanwhile wakes the thread for nothing (and
/// costs the sender's kernel a wakeup of it). HAProxy stops polling a source it cannot drain
/// (`epoll_ctl`); tokio's registration cannot drop one interest, so the source's
/// `SO_RCVLOWAT` is raised instead, to 3/8 of its receive buffer, and set back to 1 before the
/// source is read again. Lowering it wakes the poller at once if bytes wait, so nothing stalls
/// below the mark; the peer's end of stream and a nearly closed window wake it regardless.
///
/// Measured in the ingress bench under `strace -f`, 8 GiB to a slower workload, on the
/// relaying thread: 8,792 `epoll_wait` returns without the mark (HAProxy's thread in the same
/// run: 1,297), 2,481 with it. Marks of 1/8 and 1/4 of the buffer did little (10,016 and
/// 6,656): that much was usually queued already.
///
/// What Linux does with the mark: it caps it at half of `tcp_rmem`'s maximum (at half the
/// buffer, and grows nothing, if the buffer was set by hand), and where the window the mark
/// needs would not fit the buffer (segments whose payload is under 3/8 of their memory, as on
/// some NICs) it grows the buffer to fit and clamps the window at the mark. That happens only
/// when the mark is above the largest window the buffer allowed, so the clamp is no smaller
/// than what the socket could advertise then; both outlast the wait. So the mark is computed
/// once per pipe, from the buffer before any wait: a later wait sets the same mark, which then
/// fits, and the buffer cannot ratchet up wait after wait. While fewer bytes than the mark
/// wait, Linux also acknowledges each arrival of more than one segment at once rather than
/// delaying it, so the sender sees a few more ACKs during the wait.
#[derive(Default)]
struct Quiet {
    /// The mark, computed at the first wait (`None` before it, `Some(None)` when the buffer
    /// could not be read or is too small to bother).
    mark: Option<Option<i32>>,
    /// Raised for the wait in progress.
    raised: bool,
}

impl Quiet {
    /// The destination is full: raise the source's mark for this wait (once).
    fn hush(&mut self, src: &TcpStream) {
        if self.raised {
            return;
        }
        let mark = *self.mark.get_or_insert_with(|| {
            let buffer = getsockopt(src, RcvBuf).ok()?;
            i32::try_from(buffer / 8 * 3).ok().filter(|m| *m > 1)
        });
        let Some(mark) = mark else {
            return;
        };
        match setsockopt(src, RcvLowWat, &mark) {
            Ok(()) => self.raised = true,
            Err(e) => tracing::debug!(error = %e, "cannot quiet a relay's source"),
        }
    }

    /// The wait is over: the source's mark back to 1, before it is read again.
    fn restore(&mut self, src: &TcpStream) {
        if std::mem::take(&mut self.raised)
            && let Err(e) = setsockopt(src, RcvLowWat, &1)
        {
            tracing::debug!(error = %e, "cannot restore a relay's source");
        }
    }
}
