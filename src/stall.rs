//! Bodies that fail when their sender goes quiet: the client's request body (`server.body_timeout`,
//! nginx's `client_body_timeout`) and the upstream's response body (the upstream's `timeout`).
//!
//! The clock runs only while the body is asked for more and has none, never while nobody asks:
//! a body held back by a slow reader on the other side (backpressure) is not stalled. Each
//! frame starts the clock afresh, so a slow but steady body passes, however long it takes.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Any body error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Who went quiet, so the error says whose fault it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client stopped sending its request body: its fault, never the upstream's.
    Client,
    /// The upstream stopped sending its response body.
    Upstream,
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data for {timeout:?} from the {side:?}")]
pub struct Stalled {
    pub side: Side,
    pub timeout: Duration,
}

pin_project_lite::pin_project! {
    /// `inner`, failing with [`Stalled`] when a wait for its next frame lasts `timeout`.
    pub struct StallTimeout<B> {
        #[pin]
        inner: B,
        side: Side,
        timeout: Duration,
        // Made on the first wait, reset on later ones: most bodies never wait.
        timer: Option<Pin<Box<Sleep>>>,
        waiting: bool,
    }
}

impl<B> StallTimeout<B> {
    pub fn new(inner: B, side: Side, timeout: Duration) -> Self {
        Self {
            inner,
            side,
            timeout,
            timer: None,
            waiting: false,
        }
    }
}

impl<B> Body for StallTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            *this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = Instant::now() + *this.timeout;
        let timer = match this.timer {
            Some(timer) => {
                if !*this.waiting {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => this
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        *this.waiting = true;
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(Box::new(Stalled {
            side: *this.side,
            timeout: *this.timeout,
        }))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The side whose stalled body `error` (or a cause of it) reports, if it is one.
pub fn stalled<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e Stalled> {
    crate::error::causes(error).find_map(|e| e.downcast_ref::<Stalled>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_steady_body_passes_and_a_quiet_one_fails() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
        let stream = tokio_stream_from(rx);
        let mut body = StallTimeout::new(
            StreamBody::new(stream),
            Side::Client,
            Duration::from_secs(5),
        );
        let sender = tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_secs(4)).await;
                tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(tx);
        });
        for _ in 0..3 {
            let frame = body.frame().await.unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap(), "x");
        }
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(stalled(&*error).unwrap().side, Side::Client);
        sender.abort();
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
