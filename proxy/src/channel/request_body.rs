//! A request body sent upstream on its HTTP/2 stream.
//!
//! What has already arrived goes at once, before the connection next writes, so a
//! unary request's HEADERS and DATA leave in one write and no task is spawned for
//! it. The rest (an upload still arriving) is pumped by a task of its own, one frame
//! at a time as the upstream's window allows: at most one frame waits in the
//! connection beyond the window, so a fast client cannot park a whole upload in the
//! proxy.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::{Reason, SendStream};
use http_body::{Body, Frame};

use crate::body::{BoxError, ProxyBody};

/// Frames already here are sent ahead without waiting for the window, up to this
/// many bytes and this many frames: what one request queues in the connection
/// beyond the window stays bounded, however the client cut its body (empty DATA
/// frames included). A unary request is far below both.
const EAGER_BYTES: usize = 64 * 1024;
const EAGER_FRAMES: usize = 16;

/// Sends `body` on `stream`, whose HEADERS went without END_STREAM.
pub(super) fn send(mut body: ProxyBody, mut stream: SendStream<Bytes>) {
    // Polled without a waker: a frame that is not here yet is the pump's to wait for.
    let mut cx = Context::from_waker(Waker::noop());
    let mut sent = 0;
    for _ in 0..EAGER_FRAMES {
        if sent >= EAGER_BYTES {
            break;
        }
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(next) => match forward(&mut stream, next, body.is_end_stream()) {
                Forwarded::Data(len) => sent += len,
                Forwarded::Finished => return,
            },
            Poll::Pending => break,
        }
    }
    tokio::spawn(pump(body, stream));
}

/// What became of one frame of the request body.
enum Forwarded {
    /// DATA went upstream and more may follow.
    Data(usize),
    /// The stream is done: the body ended, failed, or the upstream is gone.
    Finished,
}

/// Hands one polled frame (or the body's end or failure) to the upstream stream.
fn forward(
    stream: &mut SendStream<Bytes>,
    next: Option<Result<Frame<Bytes>, BoxError>>,
    at_end: bool,
) -> Forwarded {
    match next {
        None => {
            let _ = stream.send_data(Bytes::new(), true);
            Forwarded::Finished
        }
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) => {
                let len = data.len();
                if stream.send_data(data, at_end).is_err() || at_end {
                    Forwarded::Finished
                } else {
                    Forwarded::Data(len)
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                }
                Forwarded::Finished
            }
        },
        // The client's stream broke: the upstream must not take a truncated body
        // for a whole one.
        Some(Err(_)) => {
            stream.send_reset(Reason::CANCEL);
            Forwarded::Finished
        }
    }
}

/// Sends the rest of `body` as the upstream's window opens; ends early when the
/// upstream resets the stream.
async fn pump(mut body: ProxyBody, mut stream: SendStream<Bytes>) {
    loop {
        // Window for at least a byte before the next frame is taken; h2 holds
        // whatever part of that frame the window cannot take yet.
        stream.reserve_capacity(1);
        while stream.capacity() == 0 {
            match poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                // Reset by the upstream, or the connection is gone.
                None | Some(Err(_)) => return,
            }
        }
        let next = poll_fn(|cx| {
            if stream.poll_reset(cx).is_ready() {
                return Poll::Ready(None);
            }
            Pin::new(&mut body).poll_frame(cx).map(Some)
        })
        .await;
        let Some(next) = next else { return };
        if let Forwarded::Finished = forward(&mut stream, next, body.is_end_stream()) {
            return;
        }
    }
}
