//! W3C Trace Context for logs: each request runs in a `request` span carrying this
//! node's id (`node`), the gRPC method (`op`) and, when the client sent a valid
//! `traceparent` header, its trace id (`trace_id`). Every log line about the request
//! (routing, forwards to a `peer`, errors at the edge) then names the trace, so one
//! Bazel action can be followed across nodes with a grep for its trace id.
//!
//! The span is at debug level, as those log lines are: with `remesh_proxy=debug` the
//! lines and their spans appear together, and at the default `info` the proxy builds
//! neither (a span costs allocations on every call).
//!
//! This layer only reads headers. `traceparent` and `tracestate` travel on to the
//! backend and to peers exactly as the client sent them, because the proxy copies
//! request heads whole; the proxy adds no span of its own to the trace, so the
//! backend sees the client's parent id.

use std::task::{Context, Poll};

use http::{HeaderMap, Request};
use tracing::Instrument;
use tracing::instrument::Instrumented;

use crate::grpc_method::GrpcMethod;
use crate::operation_name::NodeId;

/// The W3C header naming the trace and the caller's span.
pub const TRACEPARENT: &str = "traceparent";

/// Version 00 is `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`.
const VERSION_00_LEN: usize = 55;

/// Longer values come from future versions, which add fields after the flags; a bound
/// keeps a hostile header from costing more than a glance.
const MAX_TRACEPARENT_LEN: usize = 512;

/// The trace id of a `traceparent` value, if the value is valid: lowercase hex fields
/// of the right lengths, neither id all zeros, version not `ff`, and for version 00
/// nothing after the flags (a later version may append `-…`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    // ASCII first: the fixed offsets below must fall on character boundaries.
    if !traceparent.is_ascii()
        || traceparent.len() < VERSION_00_LEN
        || traceparent.len() > MAX_TRACEPARENT_LEN
    {
        return None;
    }
    let bytes = traceparent.as_bytes();
    let version = &traceparent[..2];
    let trace = &traceparent[3..35];
    let parent = &traceparent[36..52];
    let flags = &traceparent[53..55];
    let dashes = bytes[2] == b'-' && bytes[35] == b'-' && bytes[52] == b'-';
    let rest_ok = match version {
        "00" => traceparent.len() == VERSION_00_LEN,
        _ => traceparent.len() == VERSION_00_LEN || bytes[55] == b'-',
    };
    let valid = dashes
        && rest_ok
        && version != "ff"
        && [version, trace, parent, flags].iter().all(|f| lower_hex(f))
        && !all_zeros(trace)
        && !all_zeros(parent);
    valid.then_some(trace)
}

fn lower_hex(field: &str) -> bool {
    field
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn all_zeros(field: &str) -> bool {
    field.bytes().all(|b| b == b'0')
}

/// The trace id of a request's headers; none when the header is missing, repeated
/// (the spec says to ignore it then) or invalid.
pub fn trace_id_of(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(TRACEPARENT).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    trace_id(value.to_str().ok()?)
}

/// Puts every request in a `request` span; see the module docs.
#[derive(Clone)]
pub struct TraceContextLayer {
    node: NodeId,
}

impl TraceContextLayer {
    pub fn new(node: NodeId) -> Self {
        Self { node }
    }
}

impl<S> tower::Layer<S> for TraceContextLayer {
    type Service = TraceContext<S>;

    fn layer(&self, inner: S) -> TraceContext<S> {
        TraceContext {
            inner,
            node: self.node.clone(),
        }
    }
}

#[derive(Clone)]
pub struct TraceContext<S> {
    inner: S,
    node: NodeId,
}

impl<S, B> tower::Service<Request<B>> for TraceContext<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // A span costs no capacity: ready exactly when the wrapped service is.
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Debug level: see the module docs.
        let span = tracing::debug_span!(
            "request",
            node = %self.node,
            op = GrpcMethod::label(request.uri().path()),
            trace_id = tracing::field::Empty,
        );
        if !span.is_disabled()
            && let Some(trace) = trace_id_of(request.headers())
        {
            span.record("trace_id", trace);
        }
        // Entered for the synchronous part of the inner `call` as well as the future.
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tower::{Layer, Service};

    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn reads_the_trace_id_of_valid_headers_only() {
        assert_eq!(trace_id(VALID), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        // A later version may append fields after a dash.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(trace_id(future), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0é736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id(invalid), None, "{invalid}");
        }
        assert_eq!(trace_id(&"0".repeat(10_000)), None);
    }

    #[test]
    fn a_repeated_header_is_ignored() {
        let mut headers = HeaderMap::new();
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert!(trace_id_of(&headers).is_some());
        headers.append(TRACEPARENT, VALID.parse().unwrap());
        assert_eq!(trace_id_of(&headers), None);
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_inside_a_request_carry_node_op_and_trace_id_and_headers_pass_unchanged() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        let seen = Arc::new(Mutex::new(None));
        let seen_inner = seen.clone();
        let inner = tower::service_fn(move |request: Request<()>| {
            *seen_inner.lock().unwrap() = Some(request.headers().clone());
            async {
                tracing::debug!(peer = "b", "forwarded");
                Ok::<_, std::convert::Infallible>(())
            }
        });
        let mut service = TraceContextLayer::new(NodeId::new("a").unwrap()).layer(inner);
        let request = Request::builder()
            .uri("/build.bazel.remote.execution.v2.Execution/Execute")
            .header(TRACEPARENT, VALID)
            .header("tracestate", "vendor=opaque")
            .body(())
            .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            futures::executor::block_on(service.call(request)).unwrap();
        });

        let headers = seen.lock().unwrap().clone().unwrap();
        assert_eq!(headers[TRACEPARENT], VALID);
        assert_eq!(headers["tracestate"], "vendor=opaque");
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(output.trim()).unwrap();
        assert_eq!(line["fields"]["peer"], "b");
        assert_eq!(line["span"]["name"], "request");
        assert_eq!(line["span"]["node"], "a");
        assert_eq!(line["span"]["op"], "Execute");
        assert_eq!(line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
