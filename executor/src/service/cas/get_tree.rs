//! GetTree: a breadth-first walk of a directory tree, streamed in pages.
//!
//! Each directory is read from the CAS only when its page is built, so memory is bounded
//! by one page plus the queue of digests still to visit. Directories reachable along
//! several paths are sent once. A page never exceeds `page_size` directories (when set)
//! nor the gRPC message limit. The page token is an opaque resume point: how many
//! directories of this root were already sent; resuming walks the (deterministic)
//! order again up to that point. Directories missing from the CAS below the root are
//! left out, as REAPI allows; a missing root is NOT_FOUND.

use std::collections::{HashSet, VecDeque};

use prost::Message;
use remesh_proto::reapi::{Directory, GetTreeRequest, GetTreeResponse};
use tonic::Status;

use crate::digest::BlobDigest;
use crate::service::client_digest;
use crate::storage::Cas;

/// Room left in a response for framing and the page token.
const MESSAGE_HEADROOM: usize = 4096;

/// Longest walk a page token may ask to skip: bounds the work one request can cause.
const MAX_RESUME_OFFSET: u64 = 10_000_000;

pub struct TreeWalk {
    cas: Cas,
    root: BlobDigest,
    page_size: usize,
    page_bytes: usize,
    queue: VecDeque<BlobDigest>,
    visited: HashSet<BlobDigest>,
    /// A directory read but not yet sent because the previous page was full.
    held: Option<Directory>,
    sent: u64,
}

impl TreeWalk {
    /// Validates the request, checks that the root exists and skips what the page token
    /// says was already sent.
    pub async fn start(
        cas: Cas,
        request: &GetTreeRequest,
        max_message_bytes: usize,
    ) -> Result<Self, Status> {
        let root = client_digest("root_digest", request.root_digest.as_ref())?;
        let page_size = usize::try_from(request.page_size).map_err(|_| {
            Status::invalid_argument(format!("page_size {} is negative", request.page_size))
        })?;
        let resume = parse_token(&request.page_token, &root)?;
        let mut walk = Self {
            cas,
            root: root.clone(),
            page_size: if page_size == 0 {
                usize::MAX
            } else {
                page_size
            },
            page_bytes: max_message_bytes.saturating_sub(MESSAGE_HEADROOM).max(1),
            queue: VecDeque::from([root.clone()]),
            visited: HashSet::from([root.clone()]),
            held: None,
            sent: 0,
        };
        let Some(first) = walk.next_directory().await? else {
            return Err(Status::not_found(format!(
                "root directory {root} not found"
            )));
        };
        walk.held = Some(first);
        while walk.sent < resume {
            if walk.take_next().await?.is_none() {
                break;
            }
            walk.sent += 1;
        }
        Ok(walk)
    }

    /// The pages, one response each; every response but the last carries the token
    /// that resumes after it.
    pub fn into_stream(
        mut self,
    ) -> impl futures::Stream<Item = Result<GetTreeResponse, Status>> + Send {
        async_stream::try_stream! {
            loop {
                let directories = self.next_page().await?;
                let more = self.held.is_some() || !self.queue.is_empty();
                let next_page_token = if more {
                    format!("v1:{}:{}", self.sent, self.root.hash())
                } else {
                    String::new()
                };
                yield GetTreeResponse { directories, next_page_token };
                if !more {
                    break;
                }
            }
        }
    }

    async fn next_page(&mut self) -> Result<Vec<Directory>, Status> {
        let mut page = Vec::new();
        let mut bytes = 0usize;
        while page.len() < self.page_size {
            let Some(directory) = self.take_next().await? else {
                break;
            };
            // Field tag and length prefix of a repeated message entry.
            let cost = directory.encoded_len() + 11;
            if !page.is_empty() && bytes + cost > self.page_bytes {
                self.held = Some(directory);
                break;
            }
            bytes += cost;
            page.push(directory);
            self.sent += 1;
        }
        Ok(page)
    }

    async fn take_next(&mut self) -> Result<Option<Directory>, Status> {
        match self.held.take() {
            Some(directory) => Ok(Some(directory)),
            None => self.next_directory().await,
        }
    }

    /// Reads, decodes and validates the next directory in breadth-first order and queues
    /// its unvisited children; `None` when the walk is over.
    async fn next_directory(&mut self) -> Result<Option<Directory>, Status> {
        while let Some(digest) = self.queue.pop_front() {
            if digest.size() > self.page_bytes as u64 {
                return Err(Status::failed_precondition(format!(
                    "directory {digest} is larger than a response message may be"
                )));
            }
            let Some(data) = self.cas.read_bytes(&digest).await? else {
                continue;
            };
            let directory = Directory::decode(data).map_err(|error| {
                Status::failed_precondition(format!(
                    "blob {digest} is not a Directory message: {error}"
                ))
            })?;
            for child in &directory.directories {
                let child_digest =
                    BlobDigest::from_field(child.digest.as_ref()).map_err(|error| {
                        Status::failed_precondition(format!(
                            "directory {digest} names child {:?} with an invalid digest: {error}",
                            child.name
                        ))
                    })?;
                if self.visited.insert(child_digest.clone()) {
                    self.queue.push_back(child_digest);
                }
            }
            return Ok(Some(directory));
        }
        Ok(None)
    }
}

/// `""` (start) or `v1:<directories sent>:<root hash>`.
fn parse_token(token: &str, root: &BlobDigest) -> Result<u64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    let invalid = || Status::invalid_argument("page_token was not issued for this root_digest");
    let mut parts = token.split(':');
    let (Some("v1"), Some(sent), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let sent: u64 = sent.parse().map_err(|_| invalid())?;
    if hash != root.hash() || sent > MAX_RESUME_OFFSET {
        return Err(invalid());
    }
    Ok(sent)
}
