//! A tower layer that answers a request tonic could not read with the status that puts
//! the fault on the client: INVALID_ARGUMENT for bytes that are not a request, and
//! RESOURCE_EXHAUSTED for a message over the size limit.
//!
//! tonic answers faults in reading a request as if the server had failed: protobuf that
//! does not parse, a stream that ends inside a message, a compressed flag without
//! `grpc-encoding`, a flag that is neither 0 nor 1, and a unary call with no message all
//! get INTERNAL; a message over `max_decoding_message_size` gets OUT_OF_RANGE. REAPI
//! clients act on the code. Bazel retries INTERNAL with backoff, sending again a request
//! that can never succeed and finally reporting a server error; INVALID_ARGUMENT tells it
//! the request itself is wrong and not to retry. OUT_OF_RANGE means a position past the
//! end (ByteStream Read's `read_offset`), not a size; RESOURCE_EXHAUSTED is what grpc-go,
//! grpc-java and remesh-proxy answer for an oversized message (Bazel does retry it, a
//! bounded number of times, like any RESOURCE_EXHAUSTED). gRPC's compression document
//! asks INTERNAL for a compressed flag without `grpc-encoding`; to a REAPI client the
//! code is a retry decision, and sending the same bytes again cannot succeed, so it gets
//! INVALID_ARGUMENT here as well.
//!
//! The status is in the response headers of a trailers-only response (how tonic answers
//! a unary call whose request it could not read, and a client-streaming handler that
//! returned the error its request stream gave it) or in the trailers of a streamed one.
//!
//! A layer rather than a codec: the REAPI servers are generated inside
//! `bazel-remote-apis` with tonic-prost's codec built in, and the framing and size
//! faults are raised by tonic's `Streaming` before any codec sees the bytes.
//!
//! This layer owns only that rewrite. It must never change a status a handler produced:
//! it matches tonic's exact code and message, which no handler produces, because every
//! status the executor gets from an upstream gRPC client (the backing cache's) becomes
//! UNAVAILABLE in its own words (`StorageError::Backing`) before it reaches a response. The messages are tonic 0.14's; the tests
//! drive tonic's own server code to produce each one, so an upgrade that changes them
//! fails a test instead of silently bringing INTERNAL back.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame};
use tonic::{Code, Status};
use tower::{Layer, Service};

use crate::grpc_metrics::method_label;

/// Wraps a gRPC server so faults in reading a request get their precise status.
#[derive(Clone, Copy, Debug, Default)]
pub struct DecodeStatusLayer;

impl DecodeStatusLayer {
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for DecodeStatusLayer {
    type Service = DecodeStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DecodeStatus { inner }
    }
}

#[derive(Clone, Debug)]
pub struct DecodeStatus<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for DecodeStatus<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = Response<DecodeStatusBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    /// Ready exactly when the wrapped service is: the rewrite adds no back-pressure.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The method is only named in a rewritten message; a `Uri` clone is a refcount.
        let uri = request.uri().clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let trailers_only = response.headers().contains_key(Status::GRPC_STATUS);
            if trailers_only {
                rewrite(response.headers_mut(), &uri);
            }
            let uri = (!trailers_only).then_some(uri);
            Ok(response.map(|inner| DecodeStatusBody { inner, uri }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body whose trailers get the same rewrite as trailers-only headers.
    pub struct DecodeStatusBody<B> {
        #[pin]
        inner: B,
        // The request's URI while trailers may still carry a status; `None` once the
        // status was in the headers.
        uri: Option<Uri>,
    }
}

impl<B: Body> Body for DecodeStatusBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = std::task::ready!(this.inner.poll_frame(cx));
        let Some(uri) = this.uri.as_ref() else {
            return Poll::Ready(polled);
        };
        Poll::Ready(polled.map(|frame| {
            frame.map(|frame| match frame.into_trailers() {
                Ok(mut trailers) => {
                    rewrite(&mut trailers, uri);
                    Frame::trailers(trailers)
                }
                Err(frame) => frame,
            })
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Replaces the status in `map` (headers or trailers) when it is one of tonic's faults
/// in reading the request of `uri`; leaves every other status as it is.
fn rewrite(map: &mut HeaderMap, uri: &Uri) {
    let Some(code) = map
        .get(Status::GRPC_STATUS)
        .map(|value| Code::from_bytes(value.as_bytes()))
    else {
        return;
    };
    // tonic's decode faults carry no details; a status with details is a handler's.
    if !matches!(code, Code::Internal | Code::OutOfRange)
        || map.contains_key(Status::GRPC_STATUS_DETAILS)
    {
        return;
    }
    let Some(status) = Status::from_header_map(map) else {
        return;
    };
    let Some(fault) = DecodeFault::of(&status) else {
        return;
    };
    let precise = fault.status(&method_label(uri.path()), status.message());
    map.remove(Status::GRPC_MESSAGE);
    // add_header only fails for a message it cannot encode, which percent-encoding
    // rules out; the code alone is still right if it ever does.
    if precise.add_header(map).is_err() {
        map.insert(
            Status::GRPC_STATUS,
            HeaderValue::from(precise.code() as i32),
        );
    }
}

/// A fault tonic found in reading a request, recognised by its code and exact message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeFault {
    /// The message is not valid protobuf of the request type (tonic-prost's codec).
    Protobuf,
    /// The request stream ended inside a message or its 5-byte prefix.
    Truncated,
    /// The compressed flag without `grpc-encoding`, or a flag that is neither 0 nor 1.
    CompressionFlag,
    /// A unary call whose request stream carried no message at all.
    NoMessage,
    /// The message's prefix announces more than `max_decoding_message_size`.
    TooLarge,
}

/// tonic-prost: `Status::internal(prost::DecodeError::to_string())`.
const PROTOBUF: &str = "failed to decode Protobuf message: ";
/// tonic `Streaming`: end of stream with bytes of an unfinished message buffered.
const TRUNCATED: &str = "Unexpected EOF decoding stream.";
/// tonic `Streaming`: flag 1 without `grpc-encoding`.
const COMPRESSED_WITHOUT_ENCODING: &str =
    "protocol error: received message with compressed-flag but no grpc-encoding was specified";
/// tonic `Streaming`: a flag other than 0 and 1.
const INVALID_FLAG: &str = "protocol error: received message with invalid compression flag: ";
/// tonic's unary request path: the stream ended before its first message.
const NO_MESSAGE: &str = "Missing request message.";
/// tonic `Streaming`: `found {len} bytes, the limit is: {limit} bytes` follows.
const TOO_LARGE: &str = "Error, decoded message length too large: found ";

impl DecodeFault {
    fn of(status: &Status) -> Option<Self> {
        let message = status.message();
        match status.code() {
            Code::Internal if message.starts_with(PROTOBUF) => Some(Self::Protobuf),
            Code::Internal if message == TRUNCATED => Some(Self::Truncated),
            Code::Internal
                if message == COMPRESSED_WITHOUT_ENCODING || message.starts_with(INVALID_FLAG) =>
            {
                Some(Self::CompressionFlag)
            }
            Code::Internal if message == NO_MESSAGE => Some(Self::NoMessage),
            Code::OutOfRange if message.starts_with(TOO_LARGE) => Some(Self::TooLarge),
            _ => None,
        }
    }

    /// The status the client gets instead of tonic's `message` for `method`.
    fn status(self, method: &str, message: &str) -> Status {
        match self {
            Self::Protobuf => Status::invalid_argument(format!(
                "could not decode the {method} request: {message}"
            )),
            Self::Truncated => Status::invalid_argument(format!(
                "{method}: the request stream ended in the middle of a gRPC message"
            )),
            Self::CompressionFlag => Status::invalid_argument(format!(
                "{method}: malformed gRPC message prefix: {}",
                message.trim_start_matches("protocol error: ")
            )),
            Self::NoMessage => Status::invalid_argument(format!(
                "{method}: the request stream ended before its message"
            )),
            Self::TooLarge => Status::resource_exhausted(match too_large_sizes(message) {
                Some((found, limit)) => format!(
                    "{method}: a request message of {found} bytes is larger than this \
                     server's limit of {limit} bytes"
                ),
                None => format!("{method}: {message}"),
            }),
        }
    }
}

/// The size and the limit in tonic's too-large message.
fn too_large_sizes(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix(TOO_LARGE)?;
    let (found, limit) = rest.split_once(" bytes, the limit is: ")?;
    let limit = limit.strip_suffix(" bytes")?;
    Some((found.parse().ok()?, limit.parse().ok()?))
}

#[cfg(test)]
#[path = "decode_status_tests.rs"]
mod tests;
