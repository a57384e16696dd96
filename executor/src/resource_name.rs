//! ByteStream resource names: the validated form of the strings clients send to name a
//! blob to read or an upload to write.
//!
//! Read:  `[{instance_name}/]blobs/{hash}/{size}[/...]`
//!        `[{instance_name}/]compressed-blobs/zstd/{hash}/{size}`
//! Write: `[{instance_name}/]uploads/{uuid}/blobs/{hash}/{size}[/{metadata}]`
//!        `[{instance_name}/]uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}[/{metadata}]`
//!
//! Instance names may contain slashes, but none of their segments may be empty, `.`,
//! `..` or one of the reserved words. A digest-function segment (`blobs/sha256/...`) is
//! accepted for SHA-256 only. Everything here is pure parsing; nothing touches storage.

use std::fmt;

use crate::digest::{BlobDigest, DigestError};

/// Longest resource name accepted; real ones are under 300 bytes.
const MAX_NAME_BYTES: usize = 4096;

/// Segments that mark the end of an instance name and so cannot be part of one.
const RESERVED: &[&str] = &[
    "blobs",
    "uploads",
    "actions",
    "actionResults",
    "operations",
    "capabilities",
    "compressed-blobs",
];

/// Digest functions REAPI names in resource paths; only SHA-256 is served here.
const DIGEST_FUNCTIONS: &[&str] = &[
    "sha256",
    "sha1",
    "md5",
    "vso",
    "sha384",
    "sha512",
    "murmur3",
    "sha256tree",
    "blake3",
];

/// How the bytes of a blob travel on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Identity,
    Zstd,
}

/// A blob to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResource {
    pub instance_name: String,
    pub digest: BlobDigest,
    pub compression: Compression,
}

/// An upload to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResource {
    pub instance_name: String,
    pub upload_id: String,
    pub digest: BlobDigest,
    pub compression: Compression,
}

/// Why a resource name was refused; maps to INVALID_ARGUMENT.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceNameError {
    #[error("resource name is empty")]
    Empty,
    #[error("resource name is longer than {MAX_NAME_BYTES} bytes")]
    TooLong,
    #[error("resource name {0:?} has an empty segment")]
    EmptySegment(String),
    #[error("resource name {0:?}: instance name segment {1:?} is not allowed")]
    BadInstanceSegment(String, String),
    #[error("resource name {name:?} does not have the form {expected}")]
    Malformed {
        name: String,
        expected: &'static str,
    },
    #[error("resource name {0:?}: only the zstd compressor is supported, not {1:?}")]
    UnsupportedCompressor(String, String),
    #[error("resource name {0:?}: only the sha256 digest function is supported, not {1:?}")]
    UnsupportedDigestFunction(String, String),
    #[error("resource name {0:?}: {1}")]
    BadDigest(String, DigestError),
}

impl From<ResourceNameError> for tonic::Status {
    fn from(error: ResourceNameError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

const READ_FORM: &str =
    "[{instance}/]blobs/{hash}/{size} or [{instance}/]compressed-blobs/zstd/{hash}/{size}";
const WRITE_FORM: &str = "[{instance}/]uploads/{uuid}/blobs/{hash}/{size}[/...] or [{instance}/]uploads/{uuid}/compressed-blobs/zstd/{hash}/{size}[/...]";

impl ReadResource {
    pub fn parse(name: &str) -> Result<Self, ResourceNameError> {
        let segments = split(name)?;
        let malformed = || ResourceNameError::Malformed {
            name: shorten(name),
            expected: READ_FORM,
        };
        let start = segments
            .iter()
            .position(|s| *s == "blobs" || *s == "compressed-blobs")
            .ok_or_else(malformed)?;
        let instance_name = instance(name, &segments[..start])?;
        let (digest, compression, rest) = blob_part(name, &segments[start..], malformed)?;
        // Uncompressed reads may carry trailing segments (ignored); compressed ones not.
        if compression == Compression::Zstd && !rest.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            instance_name,
            digest,
            compression,
        })
    }
}

impl WriteResource {
    pub fn parse(name: &str) -> Result<Self, ResourceNameError> {
        let segments = split(name)?;
        let malformed = || ResourceNameError::Malformed {
            name: shorten(name),
            expected: WRITE_FORM,
        };
        let start = segments
            .iter()
            .position(|s| *s == "uploads")
            .ok_or_else(malformed)?;
        let instance_name = instance(name, &segments[..start])?;
        let upload_id = segments.get(start + 1).ok_or_else(malformed)?;
        if RESERVED.contains(upload_id) {
            return Err(malformed());
        }
        // Trailing segments are optional metadata (a file name, say), ignored.
        let (digest, compression, _metadata) = blob_part(name, &segments[start + 2..], malformed)?;
        Ok(Self {
            instance_name,
            upload_id: (*upload_id).to_owned(),
            digest,
            compression,
        })
    }
}

impl fmt::Display for ReadResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_instance(f, &self.instance_name)?;
        match self.compression {
            Compression::Identity => write!(f, "blobs/{}", self.digest),
            Compression::Zstd => write!(f, "compressed-blobs/zstd/{}", self.digest),
        }
    }
}

impl fmt::Display for WriteResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_instance(f, &self.instance_name)?;
        write!(f, "uploads/{}/", self.upload_id)?;
        match self.compression {
            Compression::Identity => write!(f, "blobs/{}", self.digest),
            Compression::Zstd => write!(f, "compressed-blobs/zstd/{}", self.digest),
        }
    }
}

fn write_instance(f: &mut fmt::Formatter<'_>, instance: &str) -> fmt::Result {
    if instance.is_empty() {
        Ok(())
    } else {
        write!(f, "{instance}/")
    }
}

fn split(name: &str) -> Result<Vec<&str>, ResourceNameError> {
    if name.is_empty() {
        return Err(ResourceNameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(ResourceNameError::TooLong);
    }
    let segments: Vec<&str> = name.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(ResourceNameError::EmptySegment(shorten(name)));
    }
    Ok(segments)
}

fn instance(name: &str, segments: &[&str]) -> Result<String, ResourceNameError> {
    if let Some(bad) = segments
        .iter()
        .find(|s| matches!(**s, "." | "..") || RESERVED.contains(s))
    {
        return Err(ResourceNameError::BadInstanceSegment(
            shorten(name),
            (*bad).to_owned(),
        ));
    }
    Ok(segments.join("/"))
}

/// Parses `blobs/[sha256/]{hash}/{size}` or `compressed-blobs/zstd/[sha256/]{hash}/{size}`
/// and returns what follows.
fn blob_part<'a>(
    name: &str,
    segments: &'a [&'a str],
    malformed: impl Fn() -> ResourceNameError,
) -> Result<(BlobDigest, Compression, &'a [&'a str]), ResourceNameError> {
    let (compression, mut rest) = match segments {
        ["blobs", rest @ ..] => (Compression::Identity, rest),
        ["compressed-blobs", "zstd", rest @ ..] => (Compression::Zstd, rest),
        ["compressed-blobs", other, ..] => {
            return Err(ResourceNameError::UnsupportedCompressor(
                shorten(name),
                shorten(other),
            ));
        }
        _ => return Err(malformed()),
    };
    if let [function, _, _, ..] = rest
        && DIGEST_FUNCTIONS.contains(function)
    {
        if *function != "sha256" {
            return Err(ResourceNameError::UnsupportedDigestFunction(
                shorten(name),
                (*function).to_owned(),
            ));
        }
        rest = &rest[1..];
    }
    let [hash, size, rest @ ..] = rest else {
        return Err(malformed());
    };
    let digest = BlobDigest::parse(hash, size)
        .map_err(|error| ResourceNameError::BadDigest(shorten(name), error))?;
    Ok((digest, compression, rest))
}

/// Keeps error messages about hostile names short.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 200;
    if text.len() <= LIMIT {
        return text.to_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::EMPTY_SHA256;

    const HASH: &str = "a3f2c0b1d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f";

    fn digest(size: u64) -> BlobDigest {
        BlobDigest::parse(HASH, &size.to_string()).unwrap()
    }

    #[test]
    fn reads_with_and_without_instance() {
        let plain = ReadResource::parse(&format!("blobs/{HASH}/42")).unwrap();
        assert_eq!(plain.instance_name, "");
        assert_eq!(plain.digest, digest(42));
        assert_eq!(plain.compression, Compression::Identity);
        let nested = ReadResource::parse(&format!("main/team/a/blobs/{HASH}/42/file.txt")).unwrap();
        assert_eq!(nested.instance_name, "main/team/a");
        let zstd = ReadResource::parse(&format!("main/compressed-blobs/zstd/{HASH}/7")).unwrap();
        assert_eq!(
            (zstd.compression, zstd.digest.clone()),
            (Compression::Zstd, digest(7))
        );
        assert_eq!(
            zstd.to_string(),
            format!("main/compressed-blobs/zstd/{HASH}/7")
        );
        let with_function = ReadResource::parse(&format!("main/blobs/sha256/{HASH}/7")).unwrap();
        assert_eq!(with_function.digest, digest(7));
    }

    #[test]
    fn writes_with_metadata_and_compression() {
        let upload = WriteResource::parse(&format!(
            "main/uploads/0b9d6c1e-4f7a-4c1e-9d35-5a3b3a2c1d00/blobs/{HASH}/10/some/meta"
        ))
        .unwrap();
        assert_eq!(upload.instance_name, "main");
        assert_eq!(upload.upload_id, "0b9d6c1e-4f7a-4c1e-9d35-5a3b3a2c1d00");
        assert_eq!(
            (upload.digest, upload.compression),
            (digest(10), Compression::Identity)
        );
        let zstd =
            WriteResource::parse(&format!("uploads/u1/compressed-blobs/zstd/{HASH}/10")).unwrap();
        assert_eq!(
            (zstd.instance_name.as_str(), zstd.compression),
            ("", Compression::Zstd)
        );
        assert_eq!(
            zstd.to_string(),
            format!("uploads/u1/compressed-blobs/zstd/{HASH}/10")
        );
    }

    #[test]
    fn refuses_hostile_names() {
        let refused = |name: &str| ReadResource::parse(name).unwrap_err();
        assert_eq!(refused(""), ResourceNameError::Empty);
        assert!(matches!(
            refused(&format!("../blobs/{HASH}/1")),
            ResourceNameError::BadInstanceSegment(..)
        ));
        assert!(matches!(
            refused(&format!("a/./blobs/{HASH}/1")),
            ResourceNameError::BadInstanceSegment(..)
        ));
        assert!(matches!(
            refused(&format!("/blobs/{HASH}/1")),
            ResourceNameError::EmptySegment(_)
        ));
        assert!(matches!(
            refused(&format!("a//blobs/{HASH}/1")),
            ResourceNameError::EmptySegment(_)
        ));
        assert!(matches!(
            refused("blobs/../../etc/passwd/1"),
            ResourceNameError::BadDigest(..)
        ));
        assert!(matches!(
            refused(&format!("blobs/{}/1", "g".repeat(64))),
            ResourceNameError::BadDigest(..)
        ));
        assert!(matches!(
            refused(&format!("blobs/{}/1", HASH.to_uppercase())),
            ResourceNameError::BadDigest(..)
        ));
        assert!(matches!(
            refused(&format!("blobs/{HASH}/-1")),
            ResourceNameError::BadDigest(..)
        ));
        assert!(matches!(
            refused(&format!("blobs/{HASH}/99999999999999999999999")),
            ResourceNameError::BadDigest(..)
        ));
        assert!(matches!(
            refused(&format!("blobs/{HASH}")),
            ResourceNameError::Malformed { .. }
        ));
        assert!(matches!(
            refused("main/something/else"),
            ResourceNameError::Malformed { .. }
        ));
        assert!(matches!(
            refused(&format!("compressed-blobs/gzip/{HASH}/1")),
            ResourceNameError::UnsupportedCompressor(..)
        ));
        assert!(matches!(
            refused(&format!("compressed-blobs/zstd/{HASH}/1/extra")),
            ResourceNameError::Malformed { .. }
        ));
        assert!(matches!(
            refused(&format!("blobs/blake3/{HASH}/1")),
            ResourceNameError::UnsupportedDigestFunction(..)
        ));
        assert_eq!(refused(&"a/".repeat(3000)), ResourceNameError::TooLong);
        // A read name is not a write name and vice versa.
        assert!(
            ReadResource::parse(&format!("uploads/u/blobs/{HASH}/1"))
                .is_err_and(|e| matches!(e, ResourceNameError::BadInstanceSegment(..)))
        );
        assert!(matches!(
            WriteResource::parse(&format!("blobs/{HASH}/1")),
            Err(ResourceNameError::Malformed { .. })
        ));
        assert!(matches!(
            WriteResource::parse(&format!("uploads/blobs/{HASH}/1")),
            Err(ResourceNameError::Malformed { .. })
        ));
        assert!(matches!(
            WriteResource::parse(&format!("uploads/u/{HASH}/1")),
            Err(ResourceNameError::Malformed { .. })
        ));
    }

    #[test]
    fn errors_are_invalid_argument_and_say_what_is_wrong() {
        let status = tonic::Status::from(
            ReadResource::parse(&format!("blobs/{EMPTY_SHA256}/x")).unwrap_err(),
        );
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("size"), "{}", status.message());
        let long = format!("{}/blobs/{HASH}/x", "é".repeat(1000));
        let status = tonic::Status::from(ReadResource::parse(&long).unwrap_err());
        assert!(
            status.message().len() < 600,
            "hostile names are not echoed whole"
        );
    }
}
