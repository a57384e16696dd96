//! Entry points of the proxy's fuzz targets (`fuzz/`), shared with the test that
//! replays the committed corpora (`tests/fuzz_corpus.rs`), so a regression shows up in
//! plain `cargo test` without a fuzzer or a nightly compiler.
//!
//! Each takes arbitrary bytes, feeds them to the code that meets them from the network,
//! and panics only when an invariant the rest of the proxy relies on is broken: a panic
//! here is a finding, never a way of refusing input. Nothing here does I/O, reads a
//! clock or keeps state between calls.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use foca::{AccumulatingRuntime, BroadcastHandler, Foca, PostcardCodec};
use http_body_util::BodyExt;
use hyper::body::Frame;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::body::BoxError;
use crate::gossip_seal::open_for_fuzzing;
use crate::membership::MemberIdentity;
use crate::membership::load_broadcast::LoadBook;
use crate::operation_name::{NodeId, OperationName, OperationNameError, PREFIX};
use crate::wire::grpc_frame::{self, MessageSplitter};
use crate::wire::operation_rewrite::{OperationRewriteBody, OperationShape, rewrite_message};
use crate::wire::protobuf;

/// An operation name as a client sends it. A name that parses must print back as the
/// very same bytes (routing and renaming rely on it), and its node id must be a plain
/// id: never anything that could be read as an address to dial.
pub fn operation_name(data: &[u8]) {
    // Operation names arrive in protobuf string fields, which are UTF-8.
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    match OperationName::parse(name) {
        Ok(parsed) => {
            assert_eq!(
                parsed.to_string(),
                name,
                "a parsed name must print verbatim"
            );
            let id = parsed.node_id.as_str();
            assert!(
                !id.is_empty()
                    && id.len() <= 63
                    && !id.contains([':', '/', '[', ']', '@', '%'])
                    && id.is_ascii(),
                "node id {id:?} could carry an address"
            );
            assert!(!parsed.backend_name.is_empty());
            assert_eq!(NodeId::new(id), Ok(parsed.node_id.clone()));
        }
        Err(OperationNameError::EmptyBackendName(_)) => {
            assert!(name.starts_with(PREFIX) && name.ends_with('/'), "{name:?}");
        }
        Err(OperationNameError::NotRemesh(_)) => {}
        Err(OperationNameError::BadNodeId(id)) => {
            panic!("parse reports a node id error for {id:?}; callers expect NotRemesh")
        }
    }
}

/// A gossip datagram. It is opened as the membership task opens what its socket
/// receives; whatever opens is decoded as foca decodes it. The same bytes are also
/// decoded directly as a plaintext foca packet and as a load broadcast: a member
/// holding the key (a buggy or compromised one) can seal anything, so the decoders
/// behind the seal must hold against arbitrary bytes too.
pub fn gossip_open(data: &[u8]) {
    if let Ok(plaintext) = open_for_fuzzing(data) {
        decode_membership(&plaintext);
    }
    decode_membership(data);
}

fn fuzz_identity() -> MemberIdentity {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 7946));
    MemberIdentity {
        node_id: NodeId::new("fuzz").unwrap_or_else(|_| unreachable!("valid literal")),
        gossip_addr: addr,
        grpc_addr: addr,
        generation: 1,
    }
}

fn decode_membership(packet: &[u8]) {
    let config = foca::Config::new_lan(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN));
    let mut foca = Foca::with_custom_broadcast(
        fuzz_identity(),
        config,
        StdRng::seed_from_u64(0),
        PostcardCodec,
        LoadBook::default(),
    );
    let mut runtime = AccumulatingRuntime::new();
    // Refusals are expected; only a panic or an endless loop is a finding.
    let _ = foca.handle_data(packet, &mut runtime);
    let mut book = LoadBook::default();
    let _ = book.receive_item(packet, None);
}

/// A backend's response stream, fed to the wire-level Operation-name rewrite in the
/// data-frame splits the input chooses.
///
/// Input: byte 0 picks the shape (bit 0: `ListOperationsResponse`), whether trailers
/// follow the data (bit 1) and the message bound (bits 2..: 16 × value + 16 bytes);
/// byte 1 is the number of cuts (mod 8); then one byte per cut, each a chunk length;
/// the rest is the response stream. The renamed stream must not depend on where the
/// stream was split, and must equal the message-by-message rename.
pub fn wire_rewrite(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let Some((&cut_count, rest)) = rest.split_first() else {
        return;
    };
    let shape = if control & 1 == 0 {
        OperationShape::Operation
    } else {
        OperationShape::List
    };
    let with_trailers = control & 2 != 0;
    let max_message_bytes = 16 * usize::from(control >> 2) + 16;
    let cut_count = usize::from(cut_count % 8).min(rest.len());
    let (cuts, stream) = rest.split_at(cut_count);

    let mut chunks = Vec::new();
    let mut remaining = stream;
    for &cut in cuts {
        let (chunk, tail) = remaining.split_at(usize::from(cut).min(remaining.len()));
        chunks.push(Bytes::copy_from_slice(chunk));
        remaining = tail;
    }
    chunks.push(Bytes::copy_from_slice(remaining));

    const PREFIX_BYTES: &[u8] = b"remesh/fuzz/";
    let split = rewrite_body(
        shape,
        chunks,
        with_trailers,
        max_message_bytes,
        PREFIX_BYTES,
    );
    let whole = rewrite_body(
        shape,
        vec![Bytes::copy_from_slice(stream)],
        with_trailers,
        max_message_bytes,
        PREFIX_BYTES,
    );
    let expected = reference_rewrite(shape, stream, max_message_bytes, PREFIX_BYTES);
    match (&split, &whole, &expected) {
        (Ok(a), Ok(b), Some(c)) => {
            assert_eq!(a, b, "the split changed the output");
            assert_eq!(a, c, "the body differs from the message-by-message rename");
        }
        (Err(_), Err(_), None) => {}
        _ => panic!(
            "split: {:?}, whole: {:?}, reference ok: {}",
            split.as_ref().map(Vec::len),
            whole.as_ref().map(Vec::len),
            expected.is_some()
        ),
    }
    if let (Some(renamed), OperationShape::Operation) = (&expected, shape) {
        check_prefixed(stream, renamed, PREFIX_BYTES);
    }
}

/// Runs the rewrite body over `chunks` to its end. The chunks are all ready, so one
/// poll must finish it: anything else is a lost wake-up.
fn rewrite_body(
    shape: OperationShape,
    chunks: Vec<Bytes>,
    with_trailers: bool,
    max_message_bytes: usize,
    prefix: &'static [u8],
) -> Result<Vec<u8>, BoxError> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = chunks
        .into_iter()
        .map(Frame::data)
        .chain(with_trailers.then(|| Frame::trailers(trailers)))
        .map(Ok::<_, BoxError>);
    let inner = crate::body::boxed(http_body_util::StreamBody::new(futures::stream::iter(
        frames,
    )));
    let body = OperationRewriteBody::new(inner, shape, prefix, max_message_bytes);
    let mut collect = pin!(body.collect());
    match collect
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result.map(|collected| collected.to_bytes().to_vec()),
        Poll::Pending => panic!("a body of ready frames did not finish in one poll"),
    }
}

/// The rename done message by message on the unsplit stream; `None` where the body
/// must fail (bad framing, an oversized or malformed message).
fn reference_rewrite(
    shape: OperationShape,
    stream: &[u8],
    max_message_bytes: usize,
    prefix: &[u8],
) -> Option<Vec<u8>> {
    let mut splitter = MessageSplitter::new(max_message_bytes);
    splitter.push(stream);
    let mut out = Vec::new();
    while let Some(message) = splitter.next_message().ok()? {
        let renamed = rewrite_message(shape, &message, prefix).ok()?;
        out.extend_from_slice(&grpc_frame::encode(&renamed));
    }
    splitter.finish().ok()?;
    Some(out)
}

/// Every message's last name (the one a decoder keeps) is the original with the
/// prefix in front, or stays empty or absent.
fn check_prefixed(stream: &[u8], renamed: &[u8], prefix: &[u8]) {
    let messages = |bytes: &[u8]| {
        let mut splitter = MessageSplitter::new(usize::MAX);
        splitter.push(bytes);
        std::iter::from_fn(move || splitter.next_message().ok().flatten()).collect::<Vec<_>>()
    };
    let before = messages(stream);
    let after = messages(renamed);
    assert_eq!(before.len(), after.len());
    for (old, new) in before.iter().zip(&after) {
        let old_name = protobuf::last_bytes_field(old, 1).ok().flatten();
        let new_name = protobuf::last_bytes_field(new, 1).ok().flatten();
        match old_name {
            Some(name) if !name.is_empty() => {
                assert_eq!(new_name, Some(&[prefix, name].concat()[..]));
            }
            _ => assert_eq!(new_name, old_name),
        }
    }
}
