//! Relaying an admitted connection: [`relay`] moves bytes both ways between a client and its
//! upstream until both sides closed, one failed, the tunnel idled out or `stop` (a policy
//! revocation) resolved; [`Activity`] counts the bytes and the time of the last one.
//!
//! Between two TCP sockets, each direction starts with plain reads and writes through a small
//! buffer that doubles on every full read (a short request and reply never pays for more: no
//! pipe, no large buffer) and, once a read fills its largest size, switches to `splice(2)`
//! ([`splice`]) through a pipe of its own, so bulk data moves from socket to socket inside the
//! kernel without being copied through the gateway. A client stream that is not a plain
//! socket goes through [`relay_stream`], which copies.

mod counted;
mod splice;

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

pub(crate) use self::counted::{Activity, Counted, Direction, Guarded};
use self::splice::{Pipe, unpaced_on_loopback};
use super::refusal::{Refusal, Then, Why};
use super::requests::Checked;
use super::revoke::{Revocation, Revoked};

// ---------------------------------------------------------------------------------------------
// The relay

/// How a relay ended. The byte counts are in the [`Activity`] it was given.
#[derive(Debug)]
pub(crate) enum RelayEnd {
    /// Both sides closed their sending halves (each end of stream was passed on).
    Closed,
    /// A socket failed (reset, broken pipe ...) while moving bytes in `direction`.
    Failed {
        direction: Direction,
        error: io::Error,
    },
    /// No byte either way for the idle timeout.
    Idle,
    /// A newer policy no longer allows the connection.
    Revoked(Revoked),
    /// A plaintext request in the client's stream was refused (with the Host it sent).
    Refused { why: Why, host: Option<String> },
}

/// Why a direction stopped early.
enum Stop {
    Io(Direction, io::Error),
    Revoked(Revoked),
    Refused(Why, Option<String>),
}

impl From<(Direction, io::Error)> for Stop {
    fn from((d, e): (Direction, io::Error)) -> Self {
        Stop::Io(d, e)
    }
}

/// Size of the buffer each direction starts with; a read that fills it doubles it.
const FIRST_BUF: usize = 2 * 1024;

/// Largest buffer of a direction; a read that fills it switches that direction to `splice(2)`.
const SMALL_BUF: usize = 16 * 1024;
/// Relay between `client` and `upstream` until both closed, one failed, nothing moved for
/// `idle`, or the policy revoked the connection. `pending_up` (client bytes already read, such
/// as the checked ClientHello) is sent upstream before anything else from the client. End of
/// stream from one side is passed on as a half-close (`shutdown(SHUT_WR)`) of the other; the
/// other direction keeps going. Both sockets are closed when this returns.
///
/// Every client byte is checked against `revocation` after it was read and before it is sent
/// upstream: none read after a revoking snapshot was applied goes upstream.
///
/// Shared by the listeners: the CONNECT tunnel and the transparent listener.
///
/// With `checked` (a plaintext HTTP tunnel), the client's stream is checked request by request
/// as it passes ([`Checked`]); that direction then copies rather than splices.
pub(crate) async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    pending_up: Bytes,
    activity: Arc<Activity>,
    idle: Duration,
    revocation: Revocation,
    checked: Option<Box<Checked>>,
) -> RelayEnd {
    // Directions that reached their end of stream.
    let ended = AtomicU8::new(0);
    // A refused request in a checked stream: the client's direction ends there (the upstream
    // is told no more requests come), the upstream's answers to the requests before it still
    // reach the client, and then the client gets the refusal.
    let refused: OnceLock<(Why, Option<String>)> = OnceLock::new();
    let stop = revocation.clone().revoked();
    let transfer = async {
        let up = async {
            let mut revocation = revocation;
            let mut checked = checked;
            revocation.check().map_err(Stop::Revoked)?;
            let sent = send(
                &upstream,
                &pending_up,
                Direction::Up,
                &activity,
                checked.as_deref_mut(),
            )
            .await;
            // Sent: its buffer (the first bytes' read buffer, a few KiB) is not kept for the
            // life of the tunnel.
            drop(pending_up);
            let pumped = match sent {
                Ok(()) => {
                    pump(
                        &client,
                        &upstream,
                        Direction::Up,
                        &activity,
                        &ended,
                        Some(&mut revocation),
                        checked.as_deref_mut(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match pumped {
                Err(Stop::Refused(why, host)) => {
                    let _ = refused.set((why, host));
                    pass_end_on(&upstream, &ended).map_err(|e| Stop::Io(Direction::Up, e))
                }
                other => other,
            }
        };
        let down = pump(
            &upstream,
            &client,
            Direction::Down,
            &activity,
            &ended,
            None,
            None,
        );
        tokio::try_join!(up, down).map(|_| ())
    };
    // Pinned here and lent to `supervise`: moved into it, both would take their room twice in
    // this future (every idle tunnel holds one).
    tokio::pin!(transfer, stop);
    let end = supervise(transfer, &activity, idle, stop).await;
    match (end, refused.get().cloned()) {
        (RelayEnd::Closed | RelayEnd::Idle, Some((why, host))) => {
            let answer = Refusal::new(
                why.clone(),
                "a request in this tunnel does not name the tunnel's destination; the requests before it were answered",
            )
            .to_bytes(Then::Close);
            let _ = write_all(&client, &answer, Direction::Down, &activity).await;
            RelayEnd::Refused { why, host }
        }
        (end, _) => end,
    }
}

/// [`relay`] for a client stream that is not a plain socket (copies through user space).
pub(crate) async fn relay_stream<C>(
    mut client: C,
    upstream: TcpStream,
    pending_up: Bytes,
    activity: Arc<Activity>,
    idle: Duration,
    revocation: Revocation,
) -> RelayEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let stop = revocation.clone().revoked();
    let mut upstream = Guarded::new(Counted::new(upstream, activity.clone()), revocation);
    let transfer = async {
        upstream.check().map_err(Stop::Revoked)?;
        upstream
            .write_all(&pending_up)
            .await
            .map_err(|error| upstream.stop(error))?;
        drop(pending_up);
        tokio::io::copy_bidirectional(&mut client, &mut upstream)
            .await
            .map_err(|error| upstream.stop(error))
            .map(|_| ())
    };
    tokio::pin!(transfer, stop);
    supervise(transfer, &activity, idle, stop).await
}

/// Drive `transfer` while watching the idle timeout and `stop`.
async fn supervise(
    mut transfer: Pin<&mut impl Future<Output = Result<(), Stop>>>,
    activity: &Activity,
    idle: Duration,
    mut stop: Pin<&mut impl Future<Output = Revoked>>,
) -> RelayEnd {
    // One timer, pushed back to `idle` after the last byte whenever it fires early.
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            r = &mut transfer => return match r {
                Ok(()) => RelayEnd::Closed,
                Err(Stop::Io(direction, error)) => RelayEnd::Failed { direction, error },
                Err(Stop::Revoked(why)) => RelayEnd::Revoked(why),
                Err(Stop::Refused(why, host)) => RelayEnd::Refused { why, host },
            },
            why = &mut stop => return RelayEnd::Revoked(why),
            _ = &mut sleep => {
                let quiet = activity.idle_for();
                if quiet >= idle {
                    return RelayEnd::Idle;
                }
                sleep.as_mut().reset(tokio::time::Instant::now() + (idle - quiet));
            }
        }
    }
}
/// Move bytes from `src` to `dst` until `src` ends (then half-close `dst`) or fails.
async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Direction,
    activity: &Activity,
    ended: &AtomicU8,
    mut revocation: Option<&mut Revocation>,
    mut checked: Option<&mut Checked>,
) -> Result<(), Stop> {
    let err = |e| Stop::Io(dir, e);
    let eof = || pass_end_on(dst, ended).map_err(err);
    // A checked stream is copied: every byte must be seen.
    let splice_ok = checked.is_none();
    // On the heap, uninitialised, small at first: a short exchange pays for little, and the
    // relay's future stays small.
    let mut buf: Vec<u8> = Vec::new();
    let mut size = FIRST_BUF;
    // Plain reads and writes until one read fills the largest buffer; then bulk moves from
    // socket to pipe to socket inside the kernel. Without a pipe (out of descriptors), the
    // copying goes on.
    let mut splice = true;
    loop {
        let (n, last) = read(src, &mut buf, size).await.map_err(err)?;
        if n == 0 {
            return eof();
        }
        if let Some(r) = revocation.as_deref_mut() {
            r.check().map_err(Stop::Revoked)?;
        }
        if last && checked.is_none() {
            // The end of stream follows at once: both go out in one segment.
            write_all_before_end(dst, &buf, dir, activity)
                .await
                .map_err(err)?;
            return eof();
        }
        send(dst, &buf, dir, activity, checked.as_deref_mut()).await?;
        if last {
            return eof();
        }
        if n < size {
            continue;
        }
        if size < SMALL_BUF {
            size *= 2;
        } else if splice && splice_ok {
            match Pipe::new() {
                Ok(pipe) => {
                    drop(buf);
                    unpaced_on_loopback(dst);
                    // Boxed: only a direction that carries bulk pays for the splice loop's state.
                    return Box::pin(pipe.pump(src, dst, dir, activity, ended, revocation)).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no pipe for splice; relaying by copy");
                    splice = false;
                }
            }
        }
    }
}

/// Read what `src` has (at most `size` bytes) into `buf`, replacing its contents. The flag
/// says these were the last bytes: the peer had already sent its FIN (`EPOLLRDHUP`) and the
/// read drained the queue, so the next read could only return the end of stream; not doing
/// it saves a system call per tunnel whose upstream answers and closes.
///
/// A direction with nothing to read lets its buffer go before it waits: an idle tunnel holds
/// no relay buffer (it takes one again, from the allocator, when bytes come).
async fn read(src: &TcpStream, buf: &mut Vec<u8>, size: usize) -> io::Result<(usize, bool)> {
    buf.clear();
    if buf.capacity() == size {
        // Bytes already waiting (a busy direction): no wait, the buffer in hand.
        match src.try_read_buf(buf) {
            Ok(n) => return Ok((n, false)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    *buf = Vec::new();
    loop {
        let ready = src.ready(Interest::READABLE).await?;
        if buf.capacity() != size {
            *buf = Vec::with_capacity(size);
        }
        // `try_read_buf` fills the spare capacity: `size` bytes.
        match src.try_read_buf(buf) {
            Ok(n) => return Ok((n, n > 0 && n < size && ready.is_read_closed())),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Send client bytes upstream: all of them, or (`checked`) what the request checks let go,
/// and then the refusal if one came.
async fn send(
    dst: &TcpStream,
    data: &[u8],
    dir: Direction,
    activity: &Activity,
    checked: Option<&mut Checked>,
) -> Result<(), Stop> {
    let err = |e| Stop::Io(dir, e);
    let Some(c) = checked else {
        return write_all(dst, data, dir, activity).await.map_err(err);
    };
    let mut out = Vec::with_capacity(data.len());
    // Boxed: resolving a name at a literal target is a large future, rarely needed.
    let passed = Box::pin(c.pass(data, &mut out)).await;
    write_all(dst, &out, dir, activity).await.map_err(err)?;
    passed.map_err(|why| Stop::Refused(why, c.last_host.clone()))
}

pub(super) async fn write_all(
    dst: &TcpStream,
    mut data: &[u8],
    dir: Direction,
    activity: &Activity,
) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(n) => {
                activity.add(dir, n as u64);
                data = &data[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `MSG_MORE` (Linux): more is coming, hold a partial segment back.
const MSG_MORE: i32 = 0x8000;

/// [`write_all`] of the last bytes before the end of stream, sent with `MSG_MORE`: the kernel
/// holds them until the FIN that [`pass_end_on`] (or the socket's close, when the other
/// direction ended first) sends right after, and puts the FIN in the same segment. A tunnel
/// whose upstream answers and closes then costs its client one segment and one wakeup, not two.
async fn write_all_before_end(
    dst: &TcpStream,
    mut data: &[u8],
    dir: Direction,
    activity: &Activity,
) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::from_bits_retain(MSG_MORE);
    while !data.is_empty() {
        dst.writable().await?;
        let sent = dst.try_io(Interest::WRITABLE, || {
            send(dst.as_raw_fd(), data, flags).map_err(io::Error::from)
        });
        match sent {
            Ok(n) => {
                activity.add(dir, n as u64);
                data = &data[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Pass `src`'s end of stream on to `dst`. The first direction to end half-closes its
/// destination; the second needs no `shutdown(2)`: the relay returns and closing the socket
/// sends the FIN (its receive side is drained, so the close is graceful).
fn pass_end_on(dst: &TcpStream, ended: &AtomicU8) -> io::Result<()> {
    if ended.fetch_add(1, Ordering::AcqRel) == 0 {
        shutdown_write(dst)
    } else {
        Ok(())
    }
}

/// Pass an end of stream on: no more bytes will be sent to `dst`.
pub(super) fn shutdown_write(dst: &TcpStream) -> io::Result<()> {
    match nix::sys::socket::shutdown(dst.as_raw_fd(), nix::sys::socket::Shutdown::Write) {
        // The peer is gone already: nothing left to tell it.
        Ok(()) | Err(nix::errno::Errno::ENOTCONN) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
#[cfg(test)]
mod tests;
