//! The relay's byte counts ([`Activity`]) and the stream wrappers of a copying relay: one that
//! counts ([`Counted`]) and one that checks revocation before every write ([`Guarded`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Stop;
use crate::decision::ByteCounters;
use crate::listen::revoke::{Revocation, Revoked};

/// Bytes each way and the time of the last byte, shared by both halves of a relay.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    up: AtomicU64,
    down: AtomicU64,
    /// Milliseconds since `start` of the last byte either way.
    last: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client to upstream.
    Up,
    /// Upstream to client.
    Down,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "client to upstream",
            Direction::Down => "upstream to client",
        }
    }
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            last: AtomicU64::new(0),
        })
    }

    pub(crate) fn add(&self, dir: Direction, n: u64) {
        if n == 0 {
            return;
        }
        match dir {
            Direction::Up => self.up.fetch_add(n, Ordering::Relaxed),
            Direction::Down => self.down.fetch_add(n, Ordering::Relaxed),
        };
        let now = self.start.elapsed().as_millis() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    pub(crate) fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    /// Time since the last byte either way (or since the start).
    pub(crate) fn idle_for(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// What the decision sink reads of a connection to a private endpoint while it lives.
impl ByteCounters for Activity {
    fn up(&self) -> u64 {
        Activity::up(self)
    }

    fn down(&self) -> u64 {
        Activity::down(self)
    }
}

/// An upstream stream whose reads are counted as `Down` and writes as `Up` in an [`Activity`].
pub(crate) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let n = (buf.filled().len() - before) as u64;
            self.activity.add(Direction::Down, n);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.activity.add(Direction::Up, *n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An upstream writer that checks a [`Revocation`] before every write: once the policy revoked
/// the connection, writes fail and nothing more goes upstream.
pub(crate) struct Guarded<S> {
    inner: S,
    revocation: Revocation,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, revocation: Revocation) -> Self {
        Self { inner, revocation }
    }

    pub(crate) fn check(&mut self) -> Result<(), Revoked> {
        self.revocation.check()
    }

    /// What an error of a guarded transfer was: the revocation, or I/O.
    pub(super) fn stop(&mut self, error: io::Error) -> Stop {
        match self.revocation.check() {
            Err(r) => Stop::Revoked(r),
            // copy_bidirectional does not say which side failed.
            Ok(()) => Stop::Io(Direction::Up, error),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Err(r) = self.revocation.check() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                r.to_string(),
            )));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
