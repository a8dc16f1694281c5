//! The log's writer. A gateway logs a decision line per connection; handing each line to a
//! writer thread that writes it out alone costs, per connection, a wakeup of that thread and a
//! write(2) (a third of the gateway's system calls besides the connection's own, measured).
//! Here the threads that log append their lines to a buffer in memory, and one writer thread
//! writes what gathered in one write(2): it wakes on the first line after a quiet spell, lets
//! lines gather for at most [`GATHER`] (or until [`FLUSH_AT`] bytes wait), and writes them
//! together. No line is dropped: past [`MAX_PENDING`] bytes waiting, the loggers wait for the
//! writer. Dropping the [`LogGuard`] writes what is left and stops the thread; lines logged
//! after that go straight to the output.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest time a line waits in memory before it is written.
pub const GATHER: Duration = Duration::from_millis(10);
/// Bytes waiting that are written at once, without waiting out [`GATHER`].
const FLUSH_AT: usize = 64 * 1024;
/// Bytes waiting past which the threads that log wait for the writer.
const MAX_PENDING: usize = 4 * 1024 * 1024;

struct State {
    buf: Vec<u8>,
    /// Bytes ever taken in, and ever written out (or lost to a failing output).
    taken: u64,
    written: u64,
    /// Someone waits for what was taken to be written ([`LogGuard::flush`]): no gathering.
    urgent: bool,
    /// The writer waits for a first line (rather than gathering).
    idle: bool,
    /// The guard was dropped: the writer writes what is left and stops.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Lines came (for the writer).
    lines: Condvar,
    /// Room came (for the threads that log).
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the log's lines go: [`tracing_subscriber::fmt::MakeWriter`] for the fmt layer.
#[derive(Clone)]
pub struct BatchWriter<W> {
    shared: Arc<Shared>,
    /// The output itself, for lines logged after the writer stopped.
    direct: fn() -> W,
}

/// Keeps the writer thread; dropping it writes what is left and stops the thread.
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer of batched lines to the output `open()` gives (such as `std::io::stderr`), and the
/// guard of its thread (named `name`).
pub fn batch_writer<W: Write + 'static>(
    open: fn() -> W,
    name: &str,
) -> std::io::Result<(BatchWriter<W>, LogGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buf: Vec::new(),
            taken: 0,
            written: 0,
            urgent: false,
            idle: false,
            closed: false,
        }),
        lines: Condvar::new(),
        room: Condvar::new(),
    });
    let writer = shared.clone();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || write_out(&writer, &mut open()))?;
    Ok((
        BatchWriter {
            shared: shared.clone(),
            direct: open,
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: wait for lines, let more gather, write them all; until closed.
fn write_out(shared: &Shared, out: &mut impl Write) {
    let mut spare = Vec::new();
    loop {
        let mut s = shared.lock();
        while s.buf.is_empty() && !s.closed {
            s.idle = true;
            s = shared.lines.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.idle = false;
        if !s.closed {
            s = shared
                .lines
                .wait_timeout_while(s, GATHER, |s| {
                    s.buf.len() < FLUSH_AT && !s.closed && !s.urgent
                })
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        s.urgent = false;
        std::mem::swap(&mut s.buf, &mut spare);
        let closed = s.closed;
        drop(s);
        shared.room.notify_all();
        // A failing output (a closed stderr) loses these lines; there is nowhere to say so.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        shared.lock().written += spare.len() as u64;
        shared.room.notify_all();
        spare.clear();
        // A burst's buffer is not kept for the life of the process.
        spare.shrink_to(FLUSH_AT);
        if closed {
            return;
        }
    }
}

impl LogGuard {
    /// Wait (at most a second) until every line logged before this call is written: what a
    /// process prints on stderr itself then comes after them.
    pub fn flush(&self) {
        let shared = &self.shared;
        let mut s = shared.lock();
        let target = s.taken;
        s.urgent = true;
        shared.lines.notify_one();
        let _ = shared
            .room
            .wait_timeout_while(s, Duration::from_secs(1), |s| {
                s.written < target && !s.closed
            });
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.lines.notify_all();
        self.shared.room.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One event's writer (the fmt layer writes each line with one `write_all`).
pub struct LineWriter<'a, W> {
    writer: &'a BatchWriter<W>,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let shared = &self.writer.shared;
        let mut s = shared.lock();
        while s.buf.len() >= MAX_PENDING && !s.closed {
            s = shared.room.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.closed {
            drop(s);
            return (self.writer.direct)().write(data);
        }
        let before = s.buf.len();
        s.buf.extend_from_slice(data);
        s.taken += data.len() as u64;
        let wake = (before == 0 && s.idle) || (before < FLUSH_AT && s.buf.len() >= FLUSH_AT);
        drop(s);
        if wake {
            shared.lines.notify_one();
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { writer: self }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    /// An output that keeps what it was given and counts the writes.
    #[derive(Clone, Default)]
    struct Kept {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
    }

    static OUT: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();

    impl Write for Kept {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.bytes.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn kept() -> Kept {
        OUT.get_or_init(Kept::default).clone()
    }

    #[test]
    fn lines_are_written_together_in_order_and_all_of_them() {
        let (writer, guard) = batch_writer(kept, "log-test").unwrap();
        let out = kept();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    // As the fmt layer writes: one line, one `write_all`.
                    for i in 0..5000 {
                        let line = format!("thread {t} line {i}\n");
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // A line waits GATHER at most before it is written.
        let deadline = Instant::now() + Duration::from_secs(10);
        let lines = || out.bytes.lock().unwrap().split(|&b| b == b'\n').count() - 1;
        while lines() < 20_000 {
            assert!(Instant::now() < deadline, "only {} lines written", lines());
            std::thread::sleep(Duration::from_millis(5));
        }
        let writes = out.writes.load(Ordering::Relaxed);
        assert!(writes < 20_000 / 4, "{writes} writes for 20,000 lines");
        // Each thread's lines come in the order it logged them, none twice.
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        for t in 0..4 {
            let prefix = format!("thread {t} line ");
            let seen: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&prefix)?.parse().ok())
                .collect();
            assert!(
                seen.iter().copied().eq(0..5000),
                "thread {t}: {} lines, not 0..5000 in order",
                seen.len()
            );
        }
        // A flush returns once every line before it is written.
        writer.make_writer().write_all(b"flushed\n").unwrap();
        guard.flush();
        assert!(String::from_utf8_lossy(&out.bytes.lock().unwrap()).ends_with("flushed\n"));
        // Dropping the guard writes what is left; later lines go straight out.
        writer.make_writer().write_all(b"before the end\n").unwrap();
        drop(guard);
        assert!(String::from_utf8_lossy(&out.bytes.lock().unwrap()).ends_with("before the end\n"));
        writer.make_writer().write_all(b"after the end\n").unwrap();
        assert!(String::from_utf8_lossy(&out.bytes.lock().unwrap()).ends_with("after the end\n"));
    }
}
