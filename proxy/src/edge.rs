//! The edge of the stack: the ONE place where errors become gRPC statuses.
//!
//! `EdgeLayer` wraps the router. An error returned before a response exists becomes a
//! trailers-only response with the mapped status; an error in the middle of a response
//! body (upstream reset, a malformed backend message) becomes trailers with the mapped
//! status instead of an HTTP/2 reset, so clients see a precise, retryable code. It also
//! counts every finished request by method and code.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue};
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic::Code;

use crate::body::{self, BodyTooLarge, BoxError, ProxyBody, ProxyRequest, ProxyResponse};
use crate::channel::ChannelError;
use crate::grpc_method::GrpcMethod;
use crate::metrics::{self, ProxyMetrics, RequestLabels};
use crate::route::RouteError;
use crate::wire::grpc_frame::FrameError;
use crate::wire::operation_rewrite::RewriteError;
use crate::wire::request_message::RequestError;

/// Maps an error from anywhere in the stack to the status the client gets.
pub fn status_of(error: &BoxError) -> tonic::Status {
    let message = error.to_string();
    let code = if let Some(error) = error.downcast_ref::<RouteError>() {
        match error {
            RouteError::BadOperationName(_) => Code::InvalidArgument,
            RouteError::UnknownNode(_) | RouteError::OwnerUnreachable { .. } => Code::NotFound,
            RouteError::Unimplemented(_) => Code::Unimplemented,
            RouteError::NoCandidate => Code::Unavailable,
        }
    } else if let Some(error) = error.downcast_ref::<RequestError>() {
        match error {
            // The client went away or its stream broke mid-request.
            RequestError::Body(_) => Code::Cancelled,
            RequestError::TooLarge { .. } | RequestError::Frame(FrameError::TooLarge { .. }) => {
                Code::ResourceExhausted
            }
            // An encoding the proxy cannot decode, as gRPC servers answer one.
            RequestError::Frame(FrameError::Compressed) => Code::Unimplemented,
            RequestError::CompressedWithoutEncoding
            | RequestError::Frame(_)
            | RequestError::Wire(_)
            | RequestError::MessageCount(_)
            | RequestError::NotUtf8(_) => Code::InvalidArgument,
        }
    } else if error.is::<BodyTooLarge>() {
        Code::ResourceExhausted
    } else if error.is::<ChannelError>() {
        // Nothing reached the upstream, or its connection died: the client retries.
        Code::Unavailable
    } else if error.is::<RewriteError>() {
        Code::Internal
    } else if let Some(error) = error.downcast_ref::<hyper::Error>() {
        if error.is_canceled() {
            Code::Cancelled
        } else {
            Code::Unavailable
        }
    } else if let Some(error) = error.downcast_ref::<h2::Error>() {
        // An upstream stream that broke: cancelled if either side asked for it.
        if error.reason() == Some(h2::Reason::CANCEL) {
            Code::Cancelled
        } else {
            Code::Unavailable
        }
    } else {
        Code::Unknown
    };
    tonic::Status::new(code, message)
}

/// A trailers-only gRPC response carrying `status`.
pub fn status_response(status: &tonic::Status) -> ProxyResponse {
    let mut response = http::Response::new(body::empty());
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    // add_header only fails for a message it cannot encode, which percent-encoding
    // rules out; fall back to the bare code just in case.
    if status.add_header(headers).is_err() {
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
    response
}

#[derive(Clone)]
pub struct EdgeLayer {
    requests: Family<RequestLabels, Counter>,
}

impl EdgeLayer {
    pub fn new(metrics: ProxyMetrics) -> Self {
        Self {
            requests: metrics.requests_total,
        }
    }
}

impl<S> tower::Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            requests: self.requests.clone(),
        }
    }
}

/// Cloned for every request (hyper serves each on its own copy of the stack), so it
/// holds only shared handles.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    requests: Family<RequestLabels, Counter>,
}

/// What the stack below the edge returns. A boxed future of concrete types: with a
/// generic one the compiler cannot prove the edge's own future `Send` (higher-ranked
/// lifetimes in the boxed error type).
pub type InnerFuture = BoxFuture<'static, Result<ProxyResponse, BoxError>>;

impl<S> tower::Service<ProxyRequest> for Edge<S>
where
    S: tower::Service<
            ProxyRequest,
            Response = ProxyResponse,
            Error = BoxError,
            Future = InnerFuture,
        >,
{
    type Response = ProxyResponse;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<ProxyResponse, std::convert::Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The router is always ready; an error here would be a bug, and it still must
        // not take the connection down, so it is answered per request in `call`.
        match ready!(self.inner.poll_ready(cx)) {
            Ok(()) | Err(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: ProxyRequest) -> Self::Future {
        let method = GrpcMethod::label(request.uri().path());
        let requests = self.requests.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(error) => {
                    let status = status_of(&error);
                    tracing::debug!(%method, code = ?status.code(), message = status.message(), "request failed");
                    status_response(&status)
                }
            };
            let recorder = CodeRecorder { method, requests };
            // A trailers-only answer carries its status in the head.
            if let Some(code) = grpc_code(response.headers()) {
                recorder.record(code);
                return Ok(response);
            }
            Ok(response.map(|body| {
                body::boxed(StatusTrailersBody {
                    inner: body,
                    recorder: Some(recorder),
                    done: false,
                })
            }))
        })
    }
}

/// The code in a `grpc-status` header, if there is one; a value that is not a known
/// code counts as UNKNOWN, as clients read it. Only the code: the edge counts every
/// request, and decoding the whole status (message, details) would cost allocations.
fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|text| text.parse::<i32>().ok())
        .map_or(Code::Unknown, Code::from_i32);
    Some(code)
}

struct CodeRecorder {
    method: &'static str,
    requests: Family<RequestLabels, Counter>,
}

impl CodeRecorder {
    fn record(&self, code: Code) {
        self.requests
            .get_or_create(&metrics::request_labels(self.method, code))
            .inc();
    }
}

/// Passes a response body through; turns a mid-stream error into status trailers and
/// records the final code.
struct StatusTrailersBody {
    inner: ProxyBody,
    recorder: Option<CodeRecorder>,
    done: bool,
}

impl Body for StatusTrailersBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = grpc_code(trailers).unwrap_or(Code::Unknown);
                    if let Some(recorder) = this.recorder.take() {
                        recorder.record(code);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                this.done = true;
                let status = status_of(&error);
                tracing::debug!(code = ?status.code(), message = status.message(), "response stream failed");
                if let Some(recorder) = this.recorder.take() {
                    recorder.record(status.code());
                }
                let mut trailers = HeaderMap::new();
                if status.add_header(&mut trailers).is_err() {
                    trailers.insert("grpc-status", HeaderValue::from(status.code() as i32));
                }
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            None => {
                this.done = true;
                // A stream that ends without trailers is a broken gRPC response.
                if let Some(recorder) = this.recorder.take() {
                    recorder.record(Code::Unknown);
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation_name::{NodeId, OperationNameError};

    #[test]
    fn causes_map_to_precise_codes() {
        let cases: Vec<(BoxError, Code)> = vec![
            (
                RouteError::UnknownNode(NodeId::new("gone").unwrap()).into(),
                Code::NotFound,
            ),
            (
                RouteError::BadOperationName(OperationNameError::NotRemesh("x".into())).into(),
                Code::InvalidArgument,
            ),
            (
                RouteError::Unimplemented("/x/y".into()).into(),
                Code::Unimplemented,
            ),
            (RequestError::MessageCount(2).into(), Code::InvalidArgument),
            (
                RequestError::TooLarge { max: 1 }.into(),
                Code::ResourceExhausted,
            ),
            (
                ChannelError::ConnectTimeout {
                    endpoint: "x:1".into(),
                    after: std::time::Duration::from_secs(1),
                }
                .into(),
                Code::Unavailable,
            ),
            ("something else".into(), Code::Unknown),
        ];
        for (error, code) in cases {
            assert_eq!(status_of(&error).code(), code, "{error}");
        }
    }

    fn request(path: &str) -> ProxyRequest {
        http::Request::builder()
            .uri(path)
            .body(body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn errors_become_statuses_at_the_edge_and_are_counted() {
        use http_body_util::BodyExt;
        use tower::{Layer, Service, ServiceExt};

        let metrics = ProxyMetrics::new();
        let (mock, mut handle) = tower_test::mock::pair::<ProxyRequest, ProxyResponse>();
        // Boxed as the router's future is.
        let mut edge = EdgeLayer::new(metrics.clone()).layer(tower::util::BoxService::new(mock));

        // An error before any response: a trailers-only status.
        let call = edge
            .ready()
            .await
            .unwrap()
            .call(request("/google.longrunning.Operations/GetOperation"));
        let (_, reply) = handle.next_request().await.unwrap();
        reply.send_error(RouteError::UnknownNode(NodeId::new("gone").unwrap()));
        let response = call.await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::NotFound);

        // An error in the middle of a streamed body: the data so far, then status
        // trailers instead of a reset stream.
        let call = edge.ready().await.unwrap().call(request(
            "/build.bazel.remote.execution.v2.Execution/Execute",
        ));
        let (_, reply) = handle.next_request().await.unwrap();
        let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, BoxError>> = vec![
            Ok(hyper::body::Frame::data(bytes::Bytes::from_static(
                b"partial",
            ))),
            Err(RewriteError::Frame(FrameError::Compressed).into()),
        ];
        let broken = body::boxed(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )));
        reply.send_response(http::Response::new(broken));
        let collected = call.await.unwrap().into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(
            tonic::Status::from_header_map(&trailers).unwrap().code(),
            Code::Internal
        );
        assert_eq!(&collected.to_bytes()[..], b"partial");

        let text = metrics.render();
        assert!(
            text.contains("method=\"GetOperation\",code=\"NotFound\""),
            "{text}"
        );
        assert!(
            text.contains("method=\"Execute\",code=\"Internal\""),
            "{text}"
        );
    }

    #[test]
    fn status_responses_are_trailers_only_grpc() {
        let response = status_response(&tonic::Status::not_found("node b: gone ü"));
        assert_eq!(response.headers()["content-type"], "application/grpc");
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "node b: gone ü");
        assert!(response.body().is_end_stream());
    }
}
