//! Content digests: SHA-256 hash plus size, the identity of every blob in the CAS.
//!
//! `BlobDigest` is the validated form of `reapi::Digest`. Every digest a client sends
//! passes through [`BlobDigest::from_proto`] (or [`BlobDigest::parse`] for resource
//! names) before it touches storage, so storage code can trust that a hash is 64
//! lowercase hex characters and can never name a path outside the CAS directory.

use std::fmt;

use remesh_proto::reapi;
use sha2::{Digest as _, Sha256};

/// The hash of the empty blob; every CAS holds it implicitly.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A validated SHA-256 digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobDigest {
    hash: String,
    size: u64,
}

/// Why a digest from the network was refused. Nothing was stored or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest hash {0:?} is not 64 lowercase hex characters (SHA-256)")]
    BadHash(String),
    #[error("digest size {0} is negative")]
    NegativeSize(i64),
    #[error("digest size {0:?} is not a non-negative integer")]
    BadSize(String),
    #[error("digest is missing")]
    Missing,
}

impl BlobDigest {
    /// Validates a digest received in a message.
    pub fn from_proto(digest: &reapi::Digest) -> Result<Self, DigestError> {
        if digest.size_bytes < 0 {
            return Err(DigestError::NegativeSize(digest.size_bytes));
        }
        Self::new(&digest.hash, digest.size_bytes as u64)
    }

    /// Validates an optional digest field (`Option<Digest>` in prost messages).
    pub fn from_field(digest: Option<&reapi::Digest>) -> Result<Self, DigestError> {
        Self::from_proto(digest.ok_or(DigestError::Missing)?)
    }

    /// Validates the `<hash>` and `<size>` parts of a resource name.
    pub fn parse(hash: &str, size: &str) -> Result<Self, DigestError> {
        let size_ok =
            !size.is_empty() && size.len() <= 20 && size.bytes().all(|b| b.is_ascii_digit());
        let size = size_ok
            .then(|| size.parse::<u64>().ok())
            .flatten()
            .ok_or_else(|| DigestError::BadSize(truncate(size)))?;
        Self::new(hash, size)
    }

    fn new(hash: &str, size: u64) -> Result<Self, DigestError> {
        let valid =
            hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(DigestError::BadHash(truncate(hash)));
        }
        Ok(Self {
            hash: hash.to_owned(),
            size,
        })
    }

    /// The digest of `data`.
    pub fn of_bytes(data: &[u8]) -> Self {
        Self {
            hash: hex::encode(Sha256::digest(data)),
            size: data.len() as u64,
        }
    }

    /// The digest of a protobuf message as it is serialized.
    pub fn of_message<M: prost::Message>(message: &M) -> Self {
        Self::of_bytes(&message.encode_to_vec())
    }

    pub fn empty() -> Self {
        Self {
            hash: EMPTY_SHA256.to_owned(),
            size: 0,
        }
    }

    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty_blob(&self) -> bool {
        self.size == 0 && self.hash == EMPTY_SHA256
    }

    pub fn to_proto(&self) -> reapi::Digest {
        reapi::Digest {
            hash: self.hash.clone(),
            size_bytes: self.size as i64,
        }
    }

    /// `blobs/<hash>/<size>`, the subject REAPI uses in a PreconditionFailure.
    pub fn subject(&self) -> String {
        format!("blobs/{}/{}", self.hash, self.size)
    }
}

impl fmt::Display for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hash, self.size)
    }
}

impl fmt::Debug for BlobDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobDigest({self})")
    }
}

/// Incremental SHA-256 over a stream of chunks, for verifying uploads as they arrive.
#[derive(Default)]
pub struct DigestHasher {
    hasher: Sha256,
    size: u64,
}

impl DigestHasher {
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    pub fn finish(self) -> BlobDigest {
        BlobDigest {
            hash: hex::encode(self.hasher.finalize()),
            size: self.size,
        }
    }
}

/// Keeps error messages about hostile input short.
fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_blob_digest_is_well_known() {
        assert_eq!(BlobDigest::of_bytes(b""), BlobDigest::empty());
        assert!(BlobDigest::empty().is_empty_blob());
    }

    #[test]
    fn hasher_matches_one_shot() {
        let mut hasher = DigestHasher::default();
        hasher.update(b"hello ");
        hasher.update(b"world");
        assert_eq!(hasher.finish(), BlobDigest::of_bytes(b"hello world"));
    }

    #[test]
    fn refuses_bad_hashes_and_sizes() {
        assert!(matches!(
            BlobDigest::parse("../../etc/passwd", "1"),
            Err(DigestError::BadHash(_))
        ));
        assert!(matches!(
            BlobDigest::parse(&"A".repeat(64), "1"),
            Err(DigestError::BadHash(_))
        ));
        assert!(matches!(
            BlobDigest::parse(EMPTY_SHA256, "-1"),
            Err(DigestError::BadSize(_))
        ));
        assert!(matches!(
            BlobDigest::parse(EMPTY_SHA256, "+1"),
            Err(DigestError::BadSize(_))
        ));
        assert!(matches!(
            BlobDigest::parse(EMPTY_SHA256, ""),
            Err(DigestError::BadSize(_))
        ));
        assert!(matches!(
            BlobDigest::parse(EMPTY_SHA256, "99999999999999999999999"),
            Err(DigestError::BadSize(_))
        ));
        let negative = reapi::Digest {
            hash: EMPTY_SHA256.into(),
            size_bytes: -5,
        };
        assert_eq!(
            BlobDigest::from_proto(&negative),
            Err(DigestError::NegativeSize(-5))
        );
        assert_eq!(
            BlobDigest::parse(EMPTY_SHA256, "0"),
            Ok(BlobDigest::empty())
        );
    }
}
