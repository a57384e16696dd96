//! The channel against real sockets: an in-process h2 server, or a listener that
//! never answers.

use super::*;

/// An upstream that accepts connections and then never reads or answers, like a
/// host that froze: requests to it must fail once a keep-alive ping goes
/// unanswered, and the next request must dial anew.
#[tokio::test]
async fn an_upstream_that_stops_answering_fails_its_streams_by_keep_alive() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            // Held open, never read: the kernel acknowledges, nothing answers.
            let _ = accepted_tx.send(socket);
        }
    });
    let settings = ChannelSettings {
        keepalive_interval: Duration::from_millis(100),
        ..ChannelSettings::default()
    };
    let failures = settings.failures.clone();
    let channel = Http2Channel::new(Endpoint::from_addr(addr), settings);
    let request = || {
        http::Request::builder()
            .method("POST")
            .uri("/build.bazel.remote.execution.v2.Capabilities/GetCapabilities")
            .body(crate::body::full(bytes::Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))
            .unwrap()
    };
    for connections in 1..=2 {
        let outcome = tokio::time::timeout(Duration::from_secs(10), channel.send(request()))
            .await
            .expect("the keep-alive ends the request within the deadline");
        let error = outcome.expect_err("nothing answers");
        assert!(matches!(error, ChannelError::Request { .. }), "{error}");
        assert_eq!(failures.get(), connections);
        assert!(
            accepted.try_recv().is_ok(),
            "connection {connections} dialled"
        );
    }
}

#[test]
fn endpoints_parse() {
    let parsed = Endpoint::parse("grpc://127.0.0.1:8980").unwrap();
    assert_eq!((parsed.host.as_str(), parsed.port), ("127.0.0.1", 8980));
    let parsed = Endpoint::parse("grpc://[::1]:1").unwrap();
    assert_eq!(
        (parsed.host.as_str(), parsed.authority()),
        ("::1", "[::1]:1".into())
    );
    let parsed = Endpoint::parse("backend.ns.svc:8980").unwrap();
    assert_eq!(parsed.host, "backend.ns.svc");
    assert!(!parsed.tls);
    let parsed = Endpoint::parse("grpcs://cache.internal:443").unwrap();
    assert_eq!(
        (parsed.host.as_str(), parsed.port, parsed.tls),
        ("cache.internal", 443, true)
    );
    for bad in [
        "grpc://host",
        "grpc://:80",
        "grpc://a:b",
        "grpc://h:1/path",
        "",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
    }
}

/// What an in-process upstream saw of one request body.
#[derive(Debug, PartialEq)]
enum Received {
    /// The body ended cleanly with these bytes.
    Whole(Vec<u8>),
    /// The stream was reset after these bytes.
    Reset(Vec<u8>, Option<h2::Reason>),
}

/// An h2 server on loopback taking one request: it answers the head at once, with
/// a small window (16 KiB) so that a large body must wait for it, then reads the
/// body and reports what it got.
async fn one_request_upstream() -> (Endpoint, tokio::sync::oneshot::Receiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = Endpoint::from_addr(listener.local_addr().unwrap());
    let (report, received) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::Builder::new()
            .initial_window_size(16 * 1024)
            .handshake::<_, bytes::Bytes>(socket)
            .await
            .unwrap();
        let (request, mut respond) = connection.accept().await.unwrap().unwrap();
        tokio::spawn(async move { while connection.accept().await.is_some() {} });
        // Fails when the client reset the stream first; the body still tells.
        let answer = respond.send_response(http::Response::new(()), false);
        let mut body = request.into_body();
        let mut bytes = Vec::new();
        let outcome = loop {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                    bytes.extend_from_slice(&data);
                }
                Some(Err(error)) => break Received::Reset(bytes, error.reason()),
                None => break Received::Whole(bytes),
            }
        };
        let _ = report.send(outcome);
        if let Ok(mut answer) = answer {
            let _ = answer.send_trailers(http::HeaderMap::new());
        }
    });
    (endpoint, received)
}

/// A request whose body frames are fed by the test through `frames`.
fn fed_request() -> (
    ProxyRequest,
    tokio::sync::mpsc::Sender<Result<http_body::Frame<bytes::Bytes>, crate::body::BoxError>>,
) {
    let (frames, feed) = tokio::sync::mpsc::channel(64);
    let body = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(feed));
    let request = http::Request::builder()
        .method("POST")
        .uri("/google.bytestream.ByteStream/Write")
        .body(crate::body::boxed(body))
        .unwrap();
    (request, frames)
}

/// An upload larger than the upstream's window arrives whole and in order: the
/// part already here goes at once, the rest as the window opens.
#[tokio::test]
async fn an_upload_larger_than_the_window_arrives_whole() {
    let (endpoint, received) = one_request_upstream().await;
    let channel = Http2Channel::new(endpoint, ChannelSettings::default());
    let (request, frames) = fed_request();
    let expected: Vec<u8> = (0..40 * 16 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<bytes::Bytes> = expected
        .chunks(16 * 1024)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    // Two frames are here before the request is sent; the rest follow while it waits.
    for chunk in &chunks[..2] {
        frames
            .send(Ok(http_body::Frame::data(chunk.clone())))
            .await
            .unwrap();
    }
    let response = channel.send(request).await.expect("the upstream answers");
    assert_eq!(response.status(), http::StatusCode::OK);
    for chunk in &chunks[2..] {
        frames
            .send(Ok(http_body::Frame::data(chunk.clone())))
            .await
            .unwrap();
    }
    drop(frames);
    let received = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the upload ends within the deadline")
        .unwrap();
    assert_eq!(received, Received::Whole(expected));
}

/// A client body that breaks, whether before the request leaves or while its
/// body is pumped, resets the upstream stream: the upstream must never take what
/// arrived for a whole body.
#[tokio::test]
async fn a_body_that_breaks_resets_the_upstream_stream() {
    for broken_before_sending in [true, false] {
        let (endpoint, received) = one_request_upstream().await;
        let channel = Http2Channel::new(endpoint, ChannelSettings::default());
        let (request, frames) = fed_request();
        let part = bytes::Bytes::from_static(b"the first part of an upload");
        frames
            .send(Ok(http_body::Frame::data(part.clone())))
            .await
            .unwrap();
        let broken = || Err("the client's stream broke".into());
        if broken_before_sending {
            frames.send(broken()).await.unwrap();
        }
        let sent = channel.send(request).await;
        if broken_before_sending {
            // Reset before the answer came: the request fails here too.
            let error = sent.expect_err("the stream was reset before its answer");
            assert!(matches!(error, ChannelError::Request { .. }), "{error}");
        } else {
            sent.expect("the upstream answers");
            frames.send(broken()).await.unwrap();
        }
        let received = tokio::time::timeout(Duration::from_secs(10), received)
            .await
            .expect("the upstream sees the end within the deadline")
            .unwrap();
        assert_eq!(
            received,
            Received::Reset(part.to_vec(), Some(h2::Reason::CANCEL)),
            "broken before sending: {broken_before_sending}"
        );
    }
}
