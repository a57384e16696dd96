//! Renames `Operation.name` (field 1) in a streamed gRPC response, byte for byte
//! otherwise.
//!
//! The owner node's proxy prefixes each name its backend returns with
//! `remesh/<node_id>/`. Every other byte of the message (metadata, response, fields
//! this proxy has never heard of) is copied unchanged; messages split across HTTP/2
//! data frames are reassembled first, up to a bound.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::grpc_frame::{self, FrameError, MessageSplitter};
use super::protobuf::{self, WireError};
use crate::body::{BoxError, ProxyBody};

/// Which message the response stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationShape {
    /// `google.longrunning.Operation` (Execute, WaitExecution, GetOperation).
    Operation,
    /// `ListOperationsResponse`: field 1 is a repeated `Operation`.
    List,
}

/// Why a response could not be renamed; the edge maps it to INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("backend response framing: {0}")]
    Frame(#[from] FrameError),
    #[error("backend sent a malformed Operation: {0}")]
    Wire(#[from] WireError),
}

/// Returns `message` with its operation name(s) prefixed by `prefix`. Absent or empty
/// names stay absent: prefixing nothing would make a name that routes nowhere.
pub fn rewrite_message(
    shape: OperationShape,
    message: &[u8],
    prefix: &[u8],
) -> Result<Vec<u8>, WireError> {
    let rename = |name: &[u8]| {
        let mut renamed = Vec::with_capacity(prefix.len() + name.len());
        if !name.is_empty() {
            renamed.extend_from_slice(prefix);
        }
        renamed.extend_from_slice(name);
        Ok(renamed)
    };
    match shape {
        OperationShape::Operation => protobuf::map_bytes_field(message, 1, rename),
        OperationShape::List => protobuf::map_bytes_field(message, 1, |operation| {
            protobuf::map_bytes_field(operation, 1, rename)
        }),
    }
}

/// A response body whose gRPC messages get their operation names prefixed.
pub struct OperationRewriteBody {
    inner: ProxyBody,
    splitter: MessageSplitter,
    shape: OperationShape,
    prefix: Bytes,
    finished: bool,
}

impl OperationRewriteBody {
    pub fn new(
        inner: ProxyBody,
        shape: OperationShape,
        prefix: impl Into<Bytes>,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            inner,
            splitter: MessageSplitter::new(max_message_bytes),
            shape,
            prefix: prefix.into(),
            finished: false,
        }
    }

    /// Every whole message buffered so far, renamed and re-framed into one chunk.
    fn drain_messages(&mut self) -> Result<Option<Bytes>, RewriteError> {
        let mut out = Vec::new();
        while let Some(message) = self.splitter.next_message()? {
            let renamed = rewrite_message(self.shape, &message, &self.prefix)?;
            out.extend_from_slice(&grpc_frame::encode(&renamed));
        }
        Ok((!out.is_empty()).then(|| Bytes::from(out)))
    }
}

impl Body for OperationRewriteBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        // Loop until a whole message is out: a data frame holding only part of one
        // produces nothing yet, and the next frame must be polled right away.
        loop {
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.finished = true;
                    return Poll::Ready(match this.splitter.finish() {
                        Ok(()) => None,
                        Err(error) => Some(Err(RewriteError::from(error).into())),
                    });
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    this.splitter.push(&data);
                    match this.drain_messages() {
                        Ok(Some(out)) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Ok(None) => continue,
                        Err(error) => {
                            this.finished = true;
                            return Poll::Ready(Some(Err(error.into())));
                        }
                    }
                }
                Err(trailers) => {
                    // Trailers end the stream: a half-received message before them is
                    // a broken backend, not something to pass on silently.
                    if let Err(error) = this.splitter.finish() {
                        this.finished = true;
                        return Poll::Ready(Some(Err(RewriteError::from(error).into())));
                    }
                    return Poll::Ready(Some(Ok(trailers)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        // Renaming changes lengths: no exact size can be promised.
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::protobuf::write_bytes_field;
    use http_body_util::BodyExt;
    use prost::Message;
    use remesh_proto::longrunning::{ListOperationsResponse, Operation};

    fn operation_bytes(name: &str) -> Vec<u8> {
        let operation = Operation {
            name: name.into(),
            metadata: Some(prost_types_any(b"metadata bytes")),
            done: true,
            result: None,
        };
        let mut bytes = operation.encode_to_vec();
        // A field no REAPI version defines, which must survive the rewrite.
        write_bytes_field(&mut bytes, 4242, b"from the future");
        bytes
    }

    fn prost_types_any(value: &[u8]) -> remesh_proto::protobuf::Any {
        remesh_proto::protobuf::Any {
            type_url: "type.googleapis.com/x".into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn only_the_name_changes() {
        let original = operation_bytes("operations/42");
        let renamed = rewrite_message(OperationShape::Operation, &original, b"remesh/n1/").unwrap();
        let decoded = Operation::decode(&renamed[..]).unwrap();
        assert_eq!(decoded.name, "remesh/n1/operations/42");
        assert!(decoded.done);
        assert_eq!(decoded.metadata, Some(prost_types_any(b"metadata bytes")));
        // Everything after the name field is the original's bytes, unknown field included.
        let name_field_len = 2 + "operations/42".len();
        assert_eq!(renamed[2 + 23..], original[name_field_len..]);
        assert_eq!(
            protobuf::last_bytes_field(&renamed, 4242).unwrap(),
            Some(&b"from the future"[..])
        );
    }

    #[test]
    fn list_responses_rename_each_operation() {
        let list = ListOperationsResponse {
            operations: vec![
                Operation::decode(&operation_bytes("a")[..]).unwrap(),
                Operation::decode(&operation_bytes("b/c")[..]).unwrap(),
            ],
            next_page_token: "page".into(),
            unreachable: vec!["region-x".into()],
        };
        let renamed =
            rewrite_message(OperationShape::List, &list.encode_to_vec(), b"remesh/x/").unwrap();
        let decoded = ListOperationsResponse::decode(&renamed[..]).unwrap();
        let names: Vec<_> = decoded.operations.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["remesh/x/a", "remesh/x/b/c"]);
        assert_eq!(decoded.next_page_token, "page");
    }

    /// A body yielding the given chunks, then the given trailers.
    fn chunked_body(chunks: Vec<Bytes>, trailers: Option<http::HeaderMap>) -> ProxyBody {
        let frames = chunks
            .into_iter()
            .map(Frame::data)
            .chain(trailers.map(Frame::trailers))
            .map(Ok::<_, BoxError>);
        crate::body::boxed(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn messages_split_across_frames_are_renamed_and_trailers_kept() {
        let stream: Vec<u8> = [
            grpc_frame::encode(&operation_bytes("first")),
            grpc_frame::encode(&operation_bytes("second/ü")),
        ]
        .concat();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        for cut in [1, 3, 5, 6, stream.len() / 2, stream.len() - 1] {
            // Three chunks: the cut, a one-byte sliver, the rest.
            let chunks = vec![
                Bytes::copy_from_slice(&stream[..cut]),
                Bytes::copy_from_slice(&stream[cut..cut + 1]),
                Bytes::copy_from_slice(&stream[cut + 1..]),
            ];
            let body = OperationRewriteBody::new(
                chunked_body(chunks, Some(trailers.clone())),
                OperationShape::Operation,
                "remesh/n/",
                1 << 20,
            );
            let collected = body.collect().await.unwrap();
            assert_eq!(collected.trailers(), Some(&trailers));
            let bytes = collected.to_bytes();
            let mut splitter = MessageSplitter::new(1 << 20);
            splitter.push(&bytes);
            let mut names = Vec::new();
            while let Some(message) = splitter.next_message().unwrap() {
                names.push(Operation::decode(message).unwrap().name);
            }
            assert_eq!(names, ["remesh/n/first", "remesh/n/second/ü"], "cut {cut}");
        }
    }

    #[tokio::test]
    async fn truncated_or_oversized_backend_messages_are_errors() {
        let framed = grpc_frame::encode(&operation_bytes("x"));
        let body = OperationRewriteBody::new(
            chunked_body(vec![framed.slice(..framed.len() - 1)], None),
            OperationShape::Operation,
            "remesh/n/",
            1 << 20,
        );
        assert!(body.collect().await.is_err());
        let body = OperationRewriteBody::new(
            chunked_body(vec![framed], None),
            OperationShape::Operation,
            "remesh/n/",
            4,
        );
        let error = body.collect().await.unwrap_err();
        assert!(error.to_string().contains("exceeds the limit"), "{error}");
    }
}
