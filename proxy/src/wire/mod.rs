//! Byte-level gRPC and protobuf handling: just enough to route and rename operations
//! without decoding (and re-encoding) whole messages.
//!
//! The proxy must keep every byte it does not understand (unknown fields, fields added
//! by newer REAPI versions), so nothing here goes through generated message types:
//! `protobuf` walks tag/length framing, `grpc_frame` splits the 5-byte length-prefixed
//! gRPC messages out of a stream of HTTP/2 data frames, `operation_rewrite` renames
//! `Operation.name` in a streamed response, and `request_message` reads the single
//! request message of a unary or server-streaming call.

pub mod grpc_frame;
pub mod operation_rewrite;
pub mod protobuf;
pub mod request_message;
