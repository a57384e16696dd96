//! The single request message of Execute, WaitExecution and the Operations calls, and
//! the few fields of it the proxy routes on.
//!
//! These calls send exactly one request message, so the proxy may hold it (bounded)
//! and forward the very same bytes, possibly more than once when a first candidate
//! fails before accepting. Only the routing fields are read; everything else stays
//! opaque.

use bytes::Bytes;

use super::grpc_frame::{self, FrameError, MessageSplitter};
use super::protobuf::{self, WireError};
use crate::body::{self, BodyTooLarge, BoxError, ProxyBody};

/// Why a request message could not be read; all but `Body` are the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("reading the request: {0}")]
    Body(BoxError),
    #[error("request message exceeds {max} bytes")]
    TooLarge { max: usize },
    #[error("request framing: {0}")]
    Frame(#[from] FrameError),
    /// The compressed flag on a request that declared no `grpc-encoding`: a protocol
    /// error of the client's, as opposed to an encoding the proxy cannot read.
    #[error("request message has the compressed flag but no grpc-encoding was declared")]
    CompressedWithoutEncoding,
    #[error("malformed request message: {0}")]
    Wire(#[from] WireError),
    #[error("expected exactly one request message, got {0}")]
    MessageCount(usize),
    #[error("field {0} is not valid UTF-8")]
    NotUtf8(&'static str),
}

/// Whether `headers` declare a message encoding other than identity.
pub fn declares_encoding(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-encoding")
        .is_some_and(|encoding| encoding.as_bytes() != b"identity")
}

/// Reads the body's one gRPC message (prefix removed), buffering at most
/// `max_message_bytes` plus the prefix. `encoding_declared` (see `declares_encoding`)
/// tells a compressed message the proxy cannot read from a mis-flagged one.
pub async fn read_single(
    body: ProxyBody,
    max_message_bytes: usize,
    encoding_declared: bool,
) -> Result<Bytes, RequestError> {
    let max = max_message_bytes.saturating_add(grpc_frame::PREFIX_LEN);
    let bytes = body::collect_bounded(body, max).await.map_err(|error| {
        if error.is::<BodyTooLarge>() {
            RequestError::TooLarge {
                max: max_message_bytes,
            }
        } else {
            RequestError::Body(error)
        }
    })?;
    let mut splitter = MessageSplitter::new(max_message_bytes);
    splitter.push(&bytes);
    let mut messages = Vec::with_capacity(1);
    loop {
        match splitter.next_message() {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => break,
            Err(FrameError::Compressed) if !encoding_declared => {
                return Err(RequestError::CompressedWithoutEncoding);
            }
            Err(error) => return Err(error.into()),
        }
    }
    splitter.finish()?;
    match messages.len() {
        1 => Ok(messages.pop().unwrap_or_default()),
        count => Err(RequestError::MessageCount(count)),
    }
}

/// The fields of an `ExecuteRequest` that routing and logs use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecuteRouting {
    pub instance_name: String,
    /// Hex SHA-256 of the Action (empty when the client sent none).
    pub action_hash: String,
    pub action_size: i64,
}

impl ExecuteRouting {
    /// Reads `instance_name` (1) and `action_digest` (6: hash 1, size_bytes 2).
    pub fn parse(message: &[u8]) -> Result<Self, RequestError> {
        let instance_name = utf8_field(message, 1, "instance_name")?;
        let (action_hash, action_size) = match protobuf::last_bytes_field(message, 6)? {
            Some(digest) => (
                utf8_field(digest, 1, "action_digest.hash")?,
                protobuf::last_varint_field(digest, 2)?.unwrap_or(0) as i64,
            ),
            None => (String::new(), 0),
        };
        Ok(Self {
            instance_name,
            action_hash,
            action_size,
        })
    }
}

fn utf8_field(message: &[u8], number: u32, name: &'static str) -> Result<String, RequestError> {
    let bytes = protobuf::last_bytes_field(message, number)?.unwrap_or_default();
    String::from_utf8(bytes.to_vec()).map_err(|_| RequestError::NotUtf8(name))
}

/// The `name` (field 1) of WaitExecutionRequest, GetOperationRequest,
/// CancelOperationRequest and DeleteOperationRequest: all four put it there.
pub fn operation_name(message: &[u8]) -> Result<String, RequestError> {
    utf8_field(message, 1, "name")
}

/// The same request with `name` replaced, every other byte kept.
pub fn with_operation_name(message: &[u8], name: &str) -> Result<Bytes, RequestError> {
    let mut replaced = false;
    let mut out = protobuf::map_bytes_field(message, 1, |_| {
        replaced = true;
        Ok(name.as_bytes().to_vec())
    })?;
    if !replaced {
        protobuf::write_bytes_field(&mut out, 1, name.as_bytes());
    }
    Ok(grpc_frame::encode(&out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use remesh_proto::reapi::{Digest, ExecuteRequest, WaitExecutionRequest};

    #[test]
    fn execute_routing_fields_are_read() {
        let request = ExecuteRequest {
            instance_name: "main".into(),
            skip_cache_lookup: true,
            action_digest: Some(Digest {
                hash: "ab".repeat(32),
                size_bytes: 142,
            }),
            ..Default::default()
        };
        let routing = ExecuteRouting::parse(&request.encode_to_vec()).unwrap();
        assert_eq!(routing.instance_name, "main");
        assert_eq!(routing.action_hash, "ab".repeat(32));
        assert_eq!(routing.action_size, 142);
        assert_eq!(
            ExecuteRouting::parse(&[]).unwrap(),
            ExecuteRouting::default()
        );
        assert!(matches!(
            ExecuteRouting::parse(&[0x0a, 0x02, 0xff, 0xfe]),
            Err(RequestError::NotUtf8("instance_name"))
        ));
    }

    #[test]
    fn operation_name_is_replaced_in_place() {
        let request = WaitExecutionRequest {
            name: "remesh/a/op/1".into(),
        };
        let bytes = request.encode_to_vec();
        assert_eq!(operation_name(&bytes).unwrap(), "remesh/a/op/1");
        let framed = with_operation_name(&bytes, "op/1").unwrap();
        let decoded = WaitExecutionRequest::decode(&framed[grpc_frame::PREFIX_LEN..]).unwrap();
        assert_eq!(decoded.name, "op/1");
        // A request with no name at all gets one.
        let framed = with_operation_name(&[], "op/2").unwrap();
        let decoded = WaitExecutionRequest::decode(&framed[grpc_frame::PREFIX_LEN..]).unwrap();
        assert_eq!(decoded.name, "op/2");
    }

    #[tokio::test]
    async fn exactly_one_bounded_message_is_read() {
        let one = grpc_frame::encode(b"hello");
        let read = read_single(body::full(one.clone()), 16, false)
            .await
            .unwrap();
        assert_eq!(&read[..], b"hello");
        let two = Bytes::from([one.clone(), one.clone()].concat());
        assert!(matches!(
            read_single(body::full(two), 16, false).await,
            Err(RequestError::MessageCount(2))
        ));
        assert!(matches!(
            read_single(body::full(one), 4, false).await,
            Err(RequestError::TooLarge { max: 4 })
        ));
        assert!(matches!(
            read_single(body::empty(), 4, false).await,
            Err(RequestError::MessageCount(0))
        ));
    }

    #[tokio::test]
    async fn a_compressed_message_is_unreadable_or_mis_flagged_by_the_headers() {
        let mut compressed = grpc_frame::encode(b"hello").to_vec();
        compressed[0] = 1;
        let compressed = Bytes::from(compressed);
        assert!(matches!(
            read_single(body::full(compressed.clone()), 16, true).await,
            Err(RequestError::Frame(FrameError::Compressed))
        ));
        assert!(matches!(
            read_single(body::full(compressed), 16, false).await,
            Err(RequestError::CompressedWithoutEncoding)
        ));

        let mut headers = http::HeaderMap::new();
        assert!(!declares_encoding(&headers));
        headers.insert("grpc-encoding", "identity".parse().unwrap());
        assert!(!declares_encoding(&headers));
        headers.insert("grpc-encoding", "gzip".parse().unwrap());
        assert!(declares_encoding(&headers));
    }
}
