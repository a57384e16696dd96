//! Which gRPC method a request path names, and therefore how the proxy routes it.

/// The routing class of a request, from its `:path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcMethod {
    /// CAS, ByteStream, ActionCache, Capabilities, health: always the local backend,
    /// streamed through untouched.
    PassThrough,
    Execute,
    WaitExecution,
    GetOperation,
    ListOperations,
    CancelOperation,
    DeleteOperation,
    /// Anything else: UNIMPLEMENTED unless the proxy is told to pass it on.
    Unknown,
}

const PASS_THROUGH_SERVICES: &[&str] = &[
    "/build.bazel.remote.execution.v2.ContentAddressableStorage/",
    "/build.bazel.remote.execution.v2.ActionCache/",
    "/build.bazel.remote.execution.v2.Capabilities/",
    "/google.bytestream.ByteStream/",
    "/grpc.health.v1.Health/",
];

impl GrpcMethod {
    pub fn from_path(path: &str) -> Self {
        match path {
            "/build.bazel.remote.execution.v2.Execution/Execute" => Self::Execute,
            "/build.bazel.remote.execution.v2.Execution/WaitExecution" => Self::WaitExecution,
            "/google.longrunning.Operations/GetOperation" => Self::GetOperation,
            "/google.longrunning.Operations/ListOperations" => Self::ListOperations,
            "/google.longrunning.Operations/CancelOperation" => Self::CancelOperation,
            "/google.longrunning.Operations/DeleteOperation" => Self::DeleteOperation,
            _ if PASS_THROUGH_SERVICES
                .iter()
                .any(|service| path.starts_with(service) && path.len() > service.len()) =>
            {
                Self::PassThrough
            }
            _ => Self::Unknown,
        }
    }

    /// The method name as a metrics label. Only names REAPI defines are used as they
    /// are; anything else is "other", so clients cannot grow the label set at will.
    pub fn label(path: &str) -> &'static str {
        let name = path.rsplit('/').next().unwrap_or_default();
        if Self::from_path(path) == Self::Unknown {
            return "other";
        }
        KNOWN_METHODS
            .iter()
            .find(|known| **known == name)
            .copied()
            .unwrap_or("other")
    }
}

/// Every method of the services the proxy routes.
const KNOWN_METHODS: &[&str] = &[
    "FindMissingBlobs",
    "BatchUpdateBlobs",
    "BatchReadBlobs",
    "GetTree",
    "SplitBlob",
    "SpliceBlob",
    "GetActionResult",
    "UpdateActionResult",
    "GetCapabilities",
    "Read",
    "Write",
    "QueryWriteStatus",
    "Check",
    "Watch",
    "Execute",
    "WaitExecution",
    "GetOperation",
    "ListOperations",
    "CancelOperation",
    "DeleteOperation",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_classify() {
        use GrpcMethod::*;
        for (path, method) in [
            (
                "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
                PassThrough,
            ),
            ("/google.bytestream.ByteStream/Write", PassThrough),
            (
                "/build.bazel.remote.execution.v2.ActionCache/GetActionResult",
                PassThrough,
            ),
            (
                "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
                PassThrough,
            ),
            ("/grpc.health.v1.Health/Check", PassThrough),
            (
                "/build.bazel.remote.execution.v2.Execution/Execute",
                Execute,
            ),
            (
                "/build.bazel.remote.execution.v2.Execution/WaitExecution",
                WaitExecution,
            ),
            (
                "/google.longrunning.Operations/CancelOperation",
                CancelOperation,
            ),
            ("/google.bytestream.ByteStream/", Unknown),
            ("/build.bazel.remote.execution.v2.Execution/Other", Unknown),
            ("/", Unknown),
        ] {
            assert_eq!(GrpcMethod::from_path(path), method, "{path}");
        }
    }

    #[test]
    fn labels_are_a_closed_set() {
        assert_eq!(
            GrpcMethod::label("/google.bytestream.ByteStream/Read"),
            "Read"
        );
        assert_eq!(
            GrpcMethod::label("/build.bazel.remote.execution.v2.Execution/Execute"),
            "Execute"
        );
        assert_eq!(
            GrpcMethod::label("/google.bytestream.ByteStream/x7f3a"),
            "other"
        );
        assert_eq!(GrpcMethod::label("/evil.Service/Read"), "other");
        assert_eq!(GrpcMethod::label(""), "other");
    }
}
