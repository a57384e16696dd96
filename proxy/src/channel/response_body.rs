//! An upstream's response body, read straight from its HTTP/2 stream: DATA frames,
//! then trailers. Every DATA frame's bytes are handed back to the stream's window
//! as soon as they are passed on, so the upstream keeps sending while the client
//! reads.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// A response body from `Http2Channel::send`.
#[derive(Debug)]
pub struct UpstreamBody {
    stream: h2::RecvStream,
    /// Set once every DATA frame is out; trailers come next.
    data_done: bool,
    /// Keeps the stream counted as open on its connection (keep-alive pings run
    /// only while some stream is open).
    _open: OpenStreamGuard,
}

impl UpstreamBody {
    pub(super) fn new(stream: h2::RecvStream, open: OpenStreamGuard) -> Self {
        Self {
            stream,
            data_done: false,
            _open: open,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    // Fails only when the stream is already gone, and then there is
                    // no window left to give back.
                    let _ = this.stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => this.data_done = true,
            }
        }
        match ready!(this.stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(error) => Poll::Ready(Some(Err(error))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Counts one stream as open on its connection until dropped.
#[derive(Debug)]
pub(super) struct OpenStreamGuard(Arc<AtomicUsize>);

impl OpenStreamGuard {
    pub(super) fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for OpenStreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
