//! The rewrite against tonic's real server code (the health service, generated like every
//! REAPI service, decodes with the same `Streaming` and tonic-prost codec), and against
//! mock handlers whose statuses must pass through unchanged.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;

const CHECK: &str = "/grpc.health.v1.Health/Check";
const LIMIT: usize = 1000;

/// One gRPC message prefix (flag, declared length) followed by `body`.
fn frame(flag: u8, declared_len: usize, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(flag);
    out.put_u32(u32::try_from(declared_len).unwrap());
    out.put_slice(body);
    out.freeze()
}

/// Each hostile request body, with the fault tonic must report for it.
fn hostile_bodies() -> Vec<(&'static str, Bytes, DecodeFault)> {
    // Field 1 (`service`, a string) whose length varint says ~2^35 bytes.
    let malformed: &[u8] = &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, b'x'];
    let empty_check = frame(0, 0, &[]);
    vec![
        (
            "malformed protobuf",
            frame(0, malformed.len(), malformed),
            DecodeFault::Protobuf,
        ),
        (
            "invalid UTF-8 in a string field",
            frame(0, 3, &[0x0a, 0x01, 0xff]),
            DecodeFault::Protobuf,
        ),
        (
            "length prefix past the data",
            frame(0, 100, &[0x0a, 0x01, b'a']),
            DecodeFault::Truncated,
        ),
        (
            "cut prefix",
            Bytes::from_static(&[0, 0, 0]),
            DecodeFault::Truncated,
        ),
        (
            "a whole message, then a cut one",
            [empty_check.clone(), frame(0, 10, b"ab")].concat().into(),
            DecodeFault::Truncated,
        ),
        (
            "compressed flag without grpc-encoding",
            frame(1, 0, &[]),
            DecodeFault::CompressionFlag,
        ),
        ("flag 2", frame(2, 0, &[]), DecodeFault::CompressionFlag),
        ("no message", Bytes::new(), DecodeFault::NoMessage),
        (
            "over the limit",
            frame(0, LIMIT + 1, &[]),
            DecodeFault::TooLarge,
        ),
    ]
}

fn request(path: &str, body: Bytes) -> Request<tonic::body::Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .unwrap()
}

/// The status of a response: from the headers of a trailers-only response, else from
/// the trailers.
async fn status_of<B>(response: Response<B>) -> Status
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return status;
    }
    let trailers = body.collect().await.unwrap().trailers().cloned();
    Status::from_header_map(&trailers.expect("no trailers")).expect("no grpc-status")
}

fn health()
-> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    tonic_health::server::health_reporter()
        .1
        .max_decoding_message_size(LIMIT)
}

/// Pins tonic's own answers: if an upgrade changes a code or a message, this fails
/// (and the rewrite would otherwise silently stop matching).
#[tokio::test]
async fn tonic_answers_each_fault_as_the_rewrite_expects() {
    for (what, body, fault) in hostile_bodies() {
        let response = health().oneshot(request(CHECK, body)).await.unwrap();
        let status = status_of(response).await;
        let code = match fault {
            DecodeFault::TooLarge => Code::OutOfRange,
            _ => Code::Internal,
        };
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert_eq!(DecodeFault::of(&status), Some(fault), "{what}: {status:?}");
    }
}

#[tokio::test]
async fn each_fault_gets_its_precise_status_naming_the_method() {
    for (what, body, fault) in hostile_bodies() {
        let service = DecodeStatusLayer::new().layer(health());
        let response = service.oneshot(request(CHECK, body)).await.unwrap();
        let status = status_of(response).await;
        let code = match fault {
            DecodeFault::TooLarge => Code::ResourceExhausted,
            _ => Code::InvalidArgument,
        };
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(
            status.message().contains("Health/Check"),
            "{what}: {status:?}"
        );
    }
    let service = DecodeStatusLayer::new().layer(health());
    let oversized = request(CHECK, frame(0, LIMIT + 1, &[]));
    let status = status_of(service.oneshot(oversized).await.unwrap()).await;
    assert_eq!(
        status.message(),
        "Health/Check: a request message of 1001 bytes is larger than this server's \
         limit of 1000 bytes"
    );
}

#[tokio::test]
async fn a_valid_request_is_answered_as_before() {
    let service = DecodeStatusLayer::new().layer(health());
    let response = service
        .oneshot(request(CHECK, frame(0, 0, &[])))
        .await
        .unwrap();
    let status = status_of(response).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
}

/// What handlers answer, trailers-only or in trailers: never rewritten.
fn handler_statuses() -> Vec<Status> {
    vec![
        Status::internal("storing a fetched blob: disk on fire"),
        // tonic's words inside a handler's own message (an upstream's fault, wrapped).
        Status::internal(format!("reading x: {TRUNCATED}")),
        Status::internal(format!("reading x: {PROTOBUF}invalid varint")),
        Status::unknown(TRUNCATED),
        Status::invalid_argument(NO_MESSAGE),
        Status::out_of_range("read_offset 10 is past the end of the 5-byte blob"),
        // The response-side limit is not the client's fault.
        Status::out_of_range(
            "Error, encoded message length too large: found 9 bytes, the limit is: 8 bytes",
        ),
        Status::with_details(Code::Internal, TRUNCATED, Bytes::from_static(b"detail")),
    ]
}

fn trailers_only(status: &Status) -> Response<http_body_util::Full<Bytes>> {
    let mut response = Response::new(http_body_util::Full::new(Bytes::new()));
    status.add_header(response.headers_mut()).unwrap();
    response
}

type FrameResult = Result<Frame<Bytes>, std::convert::Infallible>;
type StreamedBody =
    http_body_util::StreamBody<futures::stream::Iter<std::vec::IntoIter<FrameResult>>>;

/// A streamed response: one message, then `status` in the trailers.
fn streamed(status: &Status) -> Response<StreamedBody> {
    let mut trailers = HeaderMap::new();
    status.add_header(&mut trailers).unwrap();
    let frames = vec![
        Ok(Frame::data(frame(0, 0, &[]))),
        Ok(Frame::trailers(trailers)),
    ];
    Response::new(http_body_util::StreamBody::new(futures::stream::iter(
        frames,
    )))
}

#[tokio::test]
async fn handler_statuses_pass_unchanged() {
    for expected in handler_statuses() {
        let answer = expected.clone();
        let service = tower::service_fn(move |_: Request<()>| {
            let answer = answer.clone();
            async move { Ok::<_, std::convert::Infallible>(trailers_only(&answer)) }
        });
        let request = Request::builder().uri(CHECK).body(()).unwrap();
        let response = DecodeStatusLayer::new()
            .layer(service)
            .oneshot(request)
            .await
            .unwrap();
        let status = status_of(response).await;
        assert_eq!(status.code(), expected.code(), "{expected:?}");
        assert_eq!(status.message(), expected.message(), "{expected:?}");

        let answer = expected.clone();
        let service = tower::service_fn(move |_: Request<()>| {
            let answer = answer.clone();
            async move { Ok::<_, std::convert::Infallible>(streamed(&answer)) }
        });
        let request = Request::builder().uri(CHECK).body(()).unwrap();
        let response = DecodeStatusLayer::new()
            .layer(service)
            .oneshot(request)
            .await
            .unwrap();
        let status = status_of(response).await;
        assert_eq!(status.code(), expected.code(), "streamed {expected:?}");
        assert_eq!(
            status.message(),
            expected.message(),
            "streamed {expected:?}"
        );
    }
}

/// A streaming handler that ends its response with the error its request stream gave
/// it: the status is in the trailers, and is rewritten there.
#[tokio::test]
async fn a_decode_fault_in_the_trailers_is_rewritten_too() {
    let service = tower::service_fn(|_: Request<()>| async {
        let fault = Status::internal(format!("{PROTOBUF}invalid varint"));
        Ok::<_, std::convert::Infallible>(streamed(&fault))
    });
    let request = Request::builder()
        .uri("/google.bytestream.ByteStream/Write")
        .body(())
        .unwrap();
    let response = DecodeStatusLayer::new()
        .layer(service)
        .oneshot(request)
        .await
        .unwrap();
    assert!(!response.headers().contains_key(Status::GRPC_STATUS));
    let status = status_of(response).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "could not decode the ByteStream/Write request: failed to decode Protobuf message: \
         invalid varint"
    );
}

#[test]
fn sizes_are_read_from_tonics_message() {
    let message = "Error, decoded message length too large: found 524301 bytes, the limit is: \
                   524288 bytes";
    assert_eq!(too_large_sizes(message), Some((524_301, 524_288)));
    assert_eq!(
        too_large_sizes("Error, decoded message length too large: found"),
        None
    );
    let status = DecodeFault::TooLarge.status(
        "Svc/M",
        "Error, decoded message length too large: found lots",
    );
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().ends_with("found lots"), "{status:?}");
}
