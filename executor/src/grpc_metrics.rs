//! A tower layer that counts every gRPC request by method and final status code.
//!
//! A gRPC status arrives either in the response headers (a "trailers-only" response,
//! which is how tonic answers an error before any message) or in the trailers after
//! the last message. The layer looks at the headers first and otherwise wraps the body
//! to read the trailers, so streaming calls are counted when they end. A body dropped
//! before its trailers (the client went away) counts as CANCELLED.

use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Wraps a service so its requests are counted in `Metrics::grpc_requests_total`.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body,
{
    type Response = Response<CountingBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    /// Ready exactly when the wrapped service is: counting adds no back-pressure.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let metrics = self.metrics.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let mut pending = Some(PendingCount { metrics, method });
            if let Some(code) = grpc_code(response.headers()) {
                pending.take().expect("set just above").record(code);
            }
            Ok(response.map(|inner| CountingBody { inner, pending }))
        })
    }
}

/// `/pkg.Service/Method` → `Service/Method` (the package adds nothing but length).
pub(crate) fn method_label(path: &str) -> String {
    let path = path.trim_start_matches('/');
    match path.split_once('/') {
        Some((service, method)) => {
            let service = service.rsplit('.').next().unwrap_or(service);
            format!("{service}/{method}")
        }
        None => "unknown".to_owned(),
    }
}

fn grpc_code(headers: &HeaderMap) -> Option<tonic::Code> {
    let value = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    Some(tonic::Code::from_i32(value))
}

/// A count not yet recorded: recorded once, with the final code, or as CANCELLED when
/// the body is dropped first.
struct PendingCount {
    metrics: Metrics,
    method: String,
}

impl PendingCount {
    fn record(self, code: tonic::Code) {
        self.metrics.grpc_request(&self.method, code);
    }
}

pin_project_lite::pin_project! {
    /// A response body that records the request's status when its trailers pass.
    pub struct CountingBody<B> {
        #[pin]
        inner: B,
        pending: Option<PendingCount>,
    }

    impl<B> PinnedDrop for CountingBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.record(tonic::Code::Cancelled);
            }
        }
    }
}

impl<B: Body> Body for CountingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_code)
                    && let Some(pending) = this.pending.take()
                {
                    pending.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(pending) = this.pending.take() {
                    pending.record(tonic::Code::Internal);
                }
            }
            Poll::Ready(None) => {
                // A gRPC response without a status is a broken one.
                if let Some(pending) = this.pending.take() {
                    pending.record(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_drop_the_package() {
        assert_eq!(
            method_label("/build.bazel.remote.execution.v2.Execution/Execute"),
            "Execution/Execute"
        );
        assert_eq!(
            method_label("/google.bytestream.ByteStream/Read"),
            "ByteStream/Read"
        );
        assert_eq!(method_label("/nonsense"), "unknown");
    }

    #[tokio::test]
    async fn counts_trailers_only_errors_and_streamed_statuses() {
        use http_body_util::BodyExt;
        let metrics = Metrics::new();
        let service = tower::service_fn(|request: Request<()>| async move {
            let response = if request.uri().path().ends_with("Fail") {
                Response::builder()
                    .header("grpc-status", "5")
                    .body(trailers_body(None))
                    .unwrap()
            } else {
                Response::new(trailers_body(Some("0")))
            };
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = GrpcMetricsLayer::new(metrics.clone()).layer(service);
        let fail = Request::builder().uri("/pkg.Svc/Fail").body(()).unwrap();
        drop(service.call(fail).await.unwrap());
        let ok = Request::builder().uri("/pkg.Svc/Ok").body(()).unwrap();
        let body = service.call(ok).await.unwrap().into_body();
        body.collect().await.unwrap();
        let text = metrics.render();
        assert!(
            text.contains(r#"method="Svc/Fail",code="NotFound"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"method="Svc/Ok",code="Ok"} 1"#), "{text}");
    }

    type FrameResult = Result<Frame<bytes::Bytes>, std::convert::Infallible>;
    type TrailersBody =
        http_body_util::StreamBody<futures::stream::Iter<std::vec::IntoIter<FrameResult>>>;

    /// A body that carries only trailers (or nothing).
    fn trailers_body(status: Option<&str>) -> TrailersBody {
        let frames = status
            .map(|status| {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", status.parse().unwrap());
                Ok(Frame::trailers(trailers))
            })
            .into_iter()
            .collect::<Vec<_>>();
        http_body_util::StreamBody::new(futures::stream::iter(frames))
    }
}
