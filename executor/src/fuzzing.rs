//! Entry points of the fuzz targets (`fuzz/`), shared with the test that replays the
//! committed corpora (`tests/fuzz_corpus.rs`) so that a regression shows up in plain
//! `cargo test` without a fuzzer.
//!
//! Each takes arbitrary bytes, feeds them to one parser or validator as the network
//! would, and panics only when an invariant the rest of the executor relies on is
//! broken: a panic here is a finding, never a way of refusing input. Owns no state and
//! touches no storage.

use prost::Message as _;
use remesh_proto::reapi::Tree;

use crate::execution::ExecutionError;
use crate::execution::input_tree::InputTree;
use crate::resource_name::{ReadResource, WriteResource};

/// Longest error message a hostile name may produce: messages travel back to the
/// client and into logs, so they quote names shortened. The worst case is the quoted
/// name (≤ 200 escaped bytes), a quoted digest part (≤ 80 characters of up to 10
/// escaped bytes each) and the fixed text.
const MAX_ERROR_MESSAGE_BYTES: usize = 1280;

/// ByteStream resource names, read and write forms. A name that parses must print as
/// a name that parses to the same resource; a refused one must give a short
/// INVALID_ARGUMENT.
pub fn resource_name(data: &[u8]) {
    // gRPC string fields are UTF-8 (prost refuses anything else), so only UTF-8 names
    // ever reach the parser.
    let Ok(name) = std::str::from_utf8(data) else {
        return;
    };
    match ReadResource::parse(name) {
        Ok(resource) => {
            let printed = resource.to_string();
            let again = ReadResource::parse(&printed)
                .unwrap_or_else(|error| panic!("{name:?} printed as {printed:?}: {error}"));
            assert_eq!(again, resource, "{name:?} printed as {printed:?}");
        }
        Err(error) => check_refusal(tonic::Status::from(error)),
    }
    match WriteResource::parse(name) {
        Ok(resource) => {
            let printed = resource.to_string();
            let again = WriteResource::parse(&printed)
                .unwrap_or_else(|error| panic!("{name:?} printed as {printed:?}: {error}"));
            assert_eq!(again, resource, "{name:?} printed as {printed:?}");
        }
        Err(error) => check_refusal(tonic::Status::from(error)),
    }
}

fn check_refusal(status: tonic::Status) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().len() <= MAX_ERROR_MESSAGE_BYTES,
        "error message of {} bytes",
        status.message().len()
    );
}

/// REAPI input trees, given as an encoded `Tree` (the root and the directories below
/// it): decoded as a server would, then checked like an input root before it is
/// materialised. Whatever the bytes, the outcome is acceptance or a refusal that
/// blames the client (INVALID_ARGUMENT, FAILED_PRECONDITION for a missing directory,
/// RESOURCE_EXHAUSTED for a tree too large), never an internal error.
pub fn directory_tree(data: &[u8]) {
    let Ok(tree) = Tree::decode(data) else {
        return;
    };
    let root = tree.root.unwrap_or_default();
    if let Err(error) = InputTree::check_in_memory(&root, &tree.children) {
        check_tree_refusal(&error);
    }
}

fn check_tree_refusal(error: &ExecutionError) {
    let code = error.code();
    assert!(
        matches!(
            code,
            tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition
                | tonic::Code::ResourceExhausted
        ),
        "{code:?}: {error}"
    );
    let status = error.to_rpc_status();
    assert_eq!(status.code, code as i32);
}
