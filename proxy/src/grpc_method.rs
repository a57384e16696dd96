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

    /// A short label for metrics: the method name for routed calls, the service for
    /// pass-through ones would be too many label values, so the path's last segment.
    pub fn label(path: &str) -> &str {
        path.rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
    }
}

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
}
