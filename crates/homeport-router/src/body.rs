//! The router's response body: an upstream's body passed through as it streams (holding the
//! backend busy until it ends), or one of the router's own pages.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::serve::Active;
use crate::table::InFlight;

pub enum Body {
    Upstream {
        inner: Incoming,
        /// Dropped when the body ends or the client goes away: the request no longer runs.
        hold: Option<InFlight>,
        /// The same for the client connection's idle clock.
        active: Option<Active>,
    },
    Full(Option<Bytes>),
}

impl Body {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }

    pub(crate) fn empty() -> Self {
        Body::Full(None)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Upstream {
                inner,
                hold,
                active,
            } => {
                let polled = Pin::new(inner).poll_frame(cx);
                if let Poll::Ready(None | Some(Err(_))) = polled {
                    hold.take();
                    active.take();
                }
                polled
            }
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream { inner, .. } => inner.is_end_stream(),
            Body::Full(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream { inner, .. } => inner.size_hint(),
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
        }
    }
}
