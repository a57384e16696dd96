//! A raw HTTP/2 gRPC client for hostile-input tests: it sends exactly the bytes a test
//! builds (a lying length prefix, a compressed flag without `grpc-encoding`, a frame cut
//! short before END_STREAM) where a generated client would refuse to, and reports the
//! gRPC status the server answered with, from the trailers or a trailers-only response.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use tokio::net::TcpStream;

/// How long one raw call may take before the test fails instead of hanging.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Frames `message` as one gRPC message: flag 0, big-endian length, the bytes.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    grpc_frame_with(0, message.len() as u32, message)
}

/// A gRPC message prefix with any flag and any declared length, followed by `body`
/// (which need not be `declared_len` bytes long).
pub fn grpc_frame_with(flag: u8, declared_len: u32, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u8(flag);
    out.put_u32(declared_len);
    out.put_slice(body);
    out.freeze()
}

/// What the server answered.
#[derive(Debug)]
pub struct RawReply {
    /// The HTTP status of the response headers.
    pub http_status: u16,
    /// `grpc-status` from the trailers, or from the headers of a trailers-only reply;
    /// `None` when the server sent neither.
    pub grpc_status: Option<i32>,
    pub grpc_message: String,
    /// The response's data bytes (gRPC-framed messages).
    pub data: Vec<u8>,
}

impl RawReply {
    /// The gRPC status code, as `tonic::Code`.
    pub fn code(&self) -> tonic::Code {
        self.grpc_status
            .map_or(tonic::Code::Unknown, tonic::Code::from_i32)
    }
}

/// POSTs `chunks` (each one HTTP/2 DATA frame, the last one with END_STREAM) to the
/// gRPC method `path` on a fresh connection, with `extra_headers` added.
pub async fn call(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
    chunks: Vec<Bytes>,
) -> anyhow::Result<RawReply> {
    tokio::time::timeout(CALL_TIMEOUT, call_inner(addr, path, extra_headers, chunks))
        .await
        .with_context(|| format!("{path} on {addr}: no answer within {CALL_TIMEOUT:?}"))?
}

async fn call_inner(
    addr: SocketAddr,
    path: &str,
    extra_headers: &[(&str, &str)],
    chunks: Vec<Bytes>,
) -> anyhow::Result<RawReply> {
    let tcp = TcpStream::connect(addr).await.context("connecting")?;
    let (client, connection) = h2::client::handshake(tcp).await.context("h2 handshake")?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await?;
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in extra_headers {
        request = request.header(*name, *value);
    }
    let (response, mut send) = client.send_request(request.body(())?, chunks.is_empty())?;
    let count = chunks.len();
    for (index, chunk) in chunks.into_iter().enumerate() {
        // A server may answer (and reset the stream) before reading everything; what
        // it answered is what the test wants, so a refused send is not an error here.
        if send.send_data(chunk, index + 1 == count).is_err() {
            break;
        }
    }
    let response = response.await.context("response headers")?;
    let http_status = response.status().as_u16();
    let (parts, mut body) = response.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        match body.data().await {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            Some(Err(error)) => {
                driver.abort();
                bail!("response body: {error}");
            }
            None => break,
        }
    }
    if !body.is_end_stream() || parts.headers.get("grpc-status").is_none() {
        trailers = body.trailers().await.context("response trailers")?;
    }
    driver.abort();
    let headers = trailers.as_ref().unwrap_or(&parts.headers);
    let header = |name: &str| {
        headers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    Ok(RawReply {
        http_status,
        grpc_status: header("grpc-status").and_then(|code| code.parse().ok()),
        grpc_message: header("grpc-message").unwrap_or_default(),
        data,
    })
}

/// SETTINGS_INITIAL_WINDOW_SIZE: bytes one stream may send before a WINDOW_UPDATE.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
/// SETTINGS_MAX_FRAME_SIZE: the largest frame payload the server accepts.
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// The parameters of the SETTINGS frame a server sends first on a new connection, as
/// (identifier, value) pairs in the order sent. Read off the wire, so it is what any
/// client sees, not what a library chose to expose.
pub async fn server_settings(addr: SocketAddr) -> anyhow::Result<Vec<(u16, u32)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let read = async {
        let mut tcp = TcpStream::connect(addr).await.context("connecting")?;
        // The client preface: the magic string, then an empty SETTINGS frame.
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await?;
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head).await.context("frame header")?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        if head[3] != 0x4 || !length.is_multiple_of(6) || length > 6 * 64 {
            bail!(
                "the first frame is type {} of {length} bytes, not SETTINGS",
                head[3]
            );
        }
        let mut payload = vec![0u8; length];
        tcp.read_exact(&mut payload)
            .await
            .context("SETTINGS payload")?;
        Ok(payload
            .chunks_exact(6)
            .map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
                )
            })
            .collect())
    };
    tokio::time::timeout(CALL_TIMEOUT, read)
        .await
        .with_context(|| format!("{addr}: no SETTINGS within {CALL_TIMEOUT:?}"))?
}
