//! Where log lines go: stdout, one write per line, or, in server mode (unless `[log] buffer =
//! 0`), through one process-wide buffer written out when it is full and every
//! `flush_interval`, as nginx's `access_log ... buffer= flush=` and Envoy's buffered access
//! logs do. Each request writes one or two lines, and a `write(2)` per line is expensive when
//! stdout is a pipe, as under a container runtime: each one also wakes the reader
//! (BENCHMARKS.md, step 10).
//!
//! The price is that lines reach stdout up to `flush_interval` late, and are lost if the
//! process is killed (SIGKILL, an abort, the OOM killer) before they are written. Graceful
//! shutdown, and `serve` ending with an error, write them. Lambda never buffers: an
//! execution environment may be frozen as soon as a response is sent.

use std::{
    io::{self, Write},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use tracing_subscriber::fmt::MakeWriter;

use super::config::LogBuffer;

/// The buffer's size in bytes; 0 while lines are written one by one.
static CAPACITY: AtomicUsize = AtomicUsize::new(0);
static LINES: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The log layer's writer ([`MakeWriter`]): each formatted line arrives in one `write_all`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogOutput;

impl MakeWriter<'_> for LogOutput {
    type Writer = Self;

    fn make_writer(&self) -> Self {
        Self
    }
}

impl Write for LogOutput {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.write_all(line)?;
        Ok(line.len())
    }

    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        if CAPACITY.load(Ordering::Acquire) == 0 {
            return io::stdout().lock().write_all(line);
        }
        let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
        // Buffering may have stopped between the check above and the lock.
        let capacity = CAPACITY.load(Ordering::Acquire);
        if capacity == 0 {
            return io::stdout().lock().write_all(line);
        }
        lines.extend_from_slice(line);
        if lines.len() >= capacity {
            write_out(&mut lines);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

/// Buffers every log line until dropped (server mode), writing the buffer out every
/// `flush_interval` from a task on the current runtime; dropping it writes out what is left
/// and goes back to one write per line.
#[must_use = "buffering stops when this is dropped"]
pub struct Buffering {
    flusher: tokio::task::JoinHandle<()>,
}

impl Buffering {
    pub fn start(settings: &LogBuffer) -> Self {
        {
            let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
            lines.reserve(settings.bytes);
            CAPACITY.store(settings.bytes, Ordering::Release);
        }
        let mut every = tokio::time::interval(settings.flush_interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let flusher = tokio::spawn(async move {
            loop {
                every.tick().await;
                write_out(&mut LINES.lock().unwrap_or_else(PoisonError::into_inner));
            }
        });
        Self { flusher }
    }
}

impl Drop for Buffering {
    fn drop(&mut self) {
        self.flusher.abort();
        let mut lines = LINES.lock().unwrap_or_else(PoisonError::into_inner);
        CAPACITY.store(0, Ordering::Release);
        write_out(&mut lines);
        *lines = Vec::new();
    }
}

/// Writes the buffered lines to stdout in one call (stdout's line buffer passes a block that
/// ends with a newline straight through). A failed write drops them: logging never fails a
/// request, as with one write per line.
fn write_out(lines: &mut Vec<u8>) {
    if lines.is_empty() {
        return;
    }
    let _ = io::stdout().lock().write_all(lines);
    lines.clear();
}
