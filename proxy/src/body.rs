//! The one body type that travels through the proxy's service stack, and the
//! constructors every layer uses.
//!
//! Request and response bodies are streamed as boxed `http_body` values; nothing here
//! collects a body, except `collect_bounded`, for the few calls whose single request
//! message the proxy must read (Execute, WaitExecution, Operations).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};
use hyper::body::Body;

/// Errors travel through the stack boxed, and are turned into gRPC statuses at the
/// edge (see `edge`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A streamed HTTP/2 body: frames (data or trailers) in, frames out.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub type ProxyRequest = http::Request<ProxyBody>;
pub type ProxyResponse = http::Response<ProxyBody>;

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Boxes any body whose error converts into `BoxError` (hyper's `Incoming`, mostly).
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A body longer than the bound the caller allowed.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {max} bytes")]
pub struct BodyTooLarge {
    pub max: usize,
}

/// Collects a whole (small) body, refusing to buffer past `max` bytes. Trailers are
/// dropped: gRPC requests carry none.
pub async fn collect_bounded(mut body: ProxyBody, max: usize) -> Result<Bytes, BoxError> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if collected.len() + data.len() > max {
                return Err(Box::new(BodyTooLarge { max }));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}
