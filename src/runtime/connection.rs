//! One client connection's timeouts in server mode, so no client can hold a connection (and a
//! file descriptor) for nothing (slowloris):
//!
//! - `server.header_timeout`: a request's header section must arrive within it, counted from
//!   its first byte, or from accepting the connection for its first request (nginx's
//!   `client_header_timeout`);
//! - `server.idle_timeout`: a keep-alive connection may wait that long for its next request
//!   (nginx's `keepalive_timeout`).
//!
//! hyper's own header-read timeout starts when it begins waiting for a request, so it would
//! also count a keep-alive connection's idle time; [`TimedIo`] knows, through [`Activity`],
//! whether a request is in flight, and times only the waits that are the client's. While a
//! request is being served (its response body included) neither timeout runs.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// What the connection is doing, shared by its I/O and the requests on it.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun on the connection, so its I/O knows one came and went even when it
    /// was not read from meanwhile (a request without a body).
    begun: AtomicU64,
    /// When the last request finished (or the connection was accepted).
    idle_since: Mutex<Instant>,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// Marks a request in flight until the returned guard is dropped (when its response body
    /// has been sent, or the request was abandoned).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) > 0
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self
            .0
            .idle_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the connection stands between requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Waiting for the first request (since accept): the header timeout applies.
    First,
    /// Waiting for the next request: the idle timeout applies.
    Idle,
    /// A request's first bytes came at this instant: the header timeout applies from there.
    Head(Instant),
}

pin_project_lite::pin_project! {
    /// A connection's I/O, ended with `TimedOut` when the client keeps it waiting too long.
    pub struct TimedIo<I> {
        #[pin]
        inner: I,
        activity: Arc<Activity>,
        header_timeout: Duration,
        idle_timeout: Duration,
        wait: Wait,
        // `Activity::begun` when `wait` was last set.
        seen: u64,
        timer: Pin<Box<Sleep>>,
        armed_for: Option<Instant>,
    }
}

impl<I> TimedIo<I> {
    pub fn new(
        inner: I,
        activity: Arc<Activity>,
        header_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            activity,
            header_timeout,
            idle_timeout,
            wait: Wait::First,
            seen: 0,
            timer: Box::pin(tokio::time::sleep(header_timeout)),
            armed_for: None,
        }
    }
}

impl<I: AsyncRead> AsyncRead for TimedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let begun = this.activity.begun.load(Ordering::Relaxed);
        if begun != *this.seen {
            // A request came (and maybe went) since: the next wait is for the next one.
            *this.seen = begun;
            *this.wait = Wait::Idle;
            *this.armed_for = None;
        }
        if this.activity.busy() {
            // A request is being served: hyper reads its body, or watches for the client
            // closing. The next wait is for the next request.
            *this.wait = Wait::Idle;
            *this.armed_for = None;
            return this.inner.poll_read(cx, buf);
        }
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && !matches!(this.wait, Wait::Head(_)) {
                    *this.wait = Wait::Head(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let deadline = match *this.wait {
                    Wait::First => this.activity.idle_since() + *this.header_timeout,
                    Wait::Idle => this.activity.idle_since() + *this.idle_timeout,
                    Wait::Head(since) => since + *this.header_timeout,
                };
                if *this.armed_for != Some(deadline) {
                    this.timer.as_mut().reset(deadline);
                    *this.armed_for = Some(deadline);
                }
                match this.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        match this.wait {
                            Wait::Idle => "keep-alive connection idle past server.idle_timeout",
                            _ => "request header section not received within server.header_timeout",
                        },
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<I: AsyncWrite> AsyncWrite for TimedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_silent_new_connection_gets_the_header_timeout() {
        let (_client, server) = duplex(64);
        let mut io = TimedIo::new(server, Activity::new(), HEADER, IDLE);
        let started = Instant::now();
        let error = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_header_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
        let (mut client, server) = duplex(64);
        let mut io = TimedIo::new(server, Activity::new(), HEADER, IDLE);
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            for byte in b"GET / HTTP/1.1\r\nhost: x\r\n" {
                client.write_all(&[*byte]).await.unwrap();
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        });
        let mut buf = [0; 1];
        let error = loop {
            match io.read(&mut buf).await {
                Ok(_) => continue,
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() <= HEADER + Duration::from_secs(3));
        trickle.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn between_requests_the_idle_timeout_applies_and_never_during_one() {
        let (mut client, server) = duplex(64);
        let activity = Activity::new();
        let mut io = TimedIo::new(server, activity.clone(), HEADER, IDLE);
        client.write_all(b"GET").await.unwrap();
        io.read_exact(&mut [0; 3]).await.unwrap();

        // A request in flight for longer than either timeout: nothing times out.
        let request = activity.begin();
        let reading = tokio::spawn(async move {
            let mut buf = [0; 8];
            let result = io.read(&mut buf).await;
            (io, result.map(|_| ()))
        });
        tokio::time::sleep(IDLE * 3).await;
        assert!(!reading.is_finished());
        drop(request);
        reading.abort();
        let _ = reading.await;

        // Idle after it: the idle timeout, not the header one.
        let (_client, server) = duplex(64);
        let activity = Activity::new();
        let mut io = TimedIo::new(server, activity.clone(), HEADER, IDLE);
        drop(activity.begin());
        let started = Instant::now();
        let error = io.read(&mut [0; 8]).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE);
    }
}
