//! A response body that knows when it is done: it ends at a deadline (a session's streams end
//! with the session) and runs a callback when dropped (a connection is busy until its response
//! has been sent or abandoned).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use http_body::{Frame, SizeHint};

type OnDrop = Box<dyn FnOnce() + Send>;

pub struct Watched {
    inner: Body,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    on_drop: Option<OnDrop>,
}

impl Watched {
    pub fn new(inner: Body) -> Self {
        Self {
            inner,
            deadline: None,
            on_drop: None,
        }
    }

    /// Ends the body (cleanly, as if it were finished) at `at`. For streamed bodies only: a
    /// body of a declared length cut short is an error to the client.
    pub fn until(mut self, at: Instant) -> Self {
        self.deadline = Some(Box::pin(tokio::time::sleep_until(
            tokio::time::Instant::from_std(at),
        )));
        self
    }

    pub fn on_drop(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_drop = Some(Box::new(f));
        self
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if let Some(d) = &mut this.deadline
            && d.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(None);
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

/// Whether a response is a long-lived stream (server-sent events, NDJSON).
pub fn is_stream(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.starts_with("text/event-stream") || t.starts_with("application/x-ndjson")
        })
}

/// `resp` with its body ended at `at`; `on_end` runs when the body is done or dropped.
pub fn until(resp: Response, at: Instant, on_end: impl FnOnce() + Send + 'static) -> Response {
    resp.map(|b| Body::new(Watched::new(b).until(at).on_drop(on_end)))
}
