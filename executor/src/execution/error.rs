//! Why an execution failed, and how that reads on the wire.
//!
//! One enum for the whole engine. It becomes either a `tonic::Status` (when Execute
//! fails before any Operation was sent) or a `google.rpc.Status` inside
//! `ExecuteResponse.status` (once an operation exists: REAPI servers never set
//! `Operation.error`). Missing blobs carry a `PreconditionFailure` listing every one, so
//! a client can upload exactly what is missing and retry.

use prost::Message;
use remesh_proto::error_details::{PreconditionFailure, precondition_failure::Violation};
use remesh_proto::{protobuf, rpc};

use crate::digest::BlobDigest;
use crate::execution::capture::CaptureError;
use crate::execution::process::ProcessError;
use crate::storage::StorageError;

/// The type URL of a packed `google.rpc.PreconditionFailure`.
pub const PRECONDITION_FAILURE_TYPE_URL: &str =
    "type.googleapis.com/google.rpc.PreconditionFailure";

/// Why an action could not be accepted or run. Variants say nothing about state: the
/// engine always cleans up (work directory deleted, queue slot released) before it
/// reports one.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The client sent something malformed or hostile (bad digest, unsafe path, bad tree).
    #[error("{0}")]
    InvalidArgument(String),
    /// Blobs the action needs are in no storage tier; every one is listed.
    #[error("{} blob(s) missing from the CAS: {}", .0.len(), list_digests(.0))]
    MissingBlobs(Vec<BlobDigest>),
    /// The action is well-formed but cannot run here (e.g. an output of the wrong type).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The queue holds `queue_max` actions already.
    #[error("execution queue is full ({0} actions waiting); retry later")]
    QueueFull(usize),
    /// An input tree or output exceeds a bound the executor enforces.
    #[error("{0}")]
    TooLarge(String),
    /// The executor is draining for shutdown and takes no new work.
    #[error("executor is shutting down")]
    ShuttingDown,
    /// No operation of that name (never existed, or forgotten after retention).
    #[error("operation {0:?} not found")]
    UnknownOperation(String),
    /// CancelOperation (or a shutdown past its grace) stopped the action.
    #[error("{0}")]
    Cancelled(String),
    #[error("storage: {0}")]
    Storage(StorageError),
    /// Local I/O in the work directory failed (disk full, permissions).
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl ExecutionError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    pub fn code(&self) -> tonic::Code {
        match self {
            Self::InvalidArgument(_) => tonic::Code::InvalidArgument,
            Self::MissingBlobs(_) | Self::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Self::QueueFull(_) | Self::TooLarge(_) => tonic::Code::ResourceExhausted,
            Self::ShuttingDown => tonic::Code::Unavailable,
            Self::UnknownOperation(_) => tonic::Code::NotFound,
            Self::Cancelled(_) => tonic::Code::Cancelled,
            Self::Storage(StorageError::Backing(_)) => tonic::Code::Unavailable,
            Self::Storage(_) | Self::Io { .. } => tonic::Code::Internal,
        }
    }

    /// The `google.rpc.Status` for `ExecuteResponse.status` (and for the details of a
    /// gRPC error), with a `PreconditionFailure` when blobs are missing.
    pub fn to_rpc_status(&self) -> rpc::Status {
        let details = match self {
            Self::MissingBlobs(digests) => vec![missing_blobs_detail(digests)],
            _ => Vec::new(),
        };
        rpc::Status {
            code: self.code() as i32,
            message: self.to_string(),
            details,
        }
    }
}

impl From<StorageError> for ExecutionError {
    fn from(error: StorageError) -> Self {
        match error {
            // A blob vanishing between the presence check and its use (eviction) is
            // still a missing input to the client: it re-uploads and retries.
            StorageError::NotFound(digest) => Self::MissingBlobs(vec![digest]),
            other => Self::Storage(other),
        }
    }
}

impl From<ProcessError> for ExecutionError {
    fn from(error: ProcessError) -> Self {
        match error {
            // The Command names a program that cannot run here: the client's to fix.
            ProcessError::Spawn { .. } => Self::InvalidArgument(error.to_string()),
            ProcessError::OutputFile { source, .. }
            | ProcessError::Wait(source)
            | ProcessError::Capture(CaptureError { source, .. }) => Self::Io {
                context: "running the action".to_owned(),
                source,
            },
            ProcessError::OutsideSandboxRoot { .. } => Self::Io {
                context: "running the action".to_owned(),
                source: std::io::Error::other(error.to_string()),
            },
        }
    }
}

impl From<ExecutionError> for tonic::Status {
    fn from(error: ExecutionError) -> Self {
        let status = error.to_rpc_status();
        if status.details.is_empty() {
            tonic::Status::new(error.code(), status.message)
        } else {
            let encoded = status.encode_to_vec();
            tonic::Status::with_details(error.code(), status.message, encoded.into())
        }
    }
}

/// `PreconditionFailure{violations: [{type: "MISSING", subject: "blobs/<hash>/<size>"}]}`
/// packed as an `Any`.
pub fn missing_blobs_detail(digests: &[BlobDigest]) -> protobuf::Any {
    let failure = PreconditionFailure {
        violations: digests
            .iter()
            .map(|digest| Violation {
                r#type: "MISSING".to_owned(),
                subject: digest.subject(),
                description: String::new(),
            })
            .collect(),
    };
    protobuf::Any {
        type_url: PRECONDITION_FAILURE_TYPE_URL.to_owned(),
        value: failure.encode_to_vec(),
    }
}

/// A few digests for a message; the full list is in the details.
fn list_digests(digests: &[BlobDigest]) -> String {
    let mut text = digests
        .iter()
        .take(5)
        .map(BlobDigest::subject)
        .collect::<Vec<_>>()
        .join(", ");
    if digests.len() > 5 {
        text.push_str(&format!(", and {} more", digests.len() - 5));
    }
    text
}
