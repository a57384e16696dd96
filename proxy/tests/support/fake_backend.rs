//! A fake REAPI backend: Execution, Operations, ActionCache and ByteStream,
//! answering in ways the tests can check (echoing names, recording headers).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use remesh_proto::bytestream::byte_stream_server::{ByteStream, ByteStreamServer};
use remesh_proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse,
};
use remesh_proto::longrunning::operations_server::{Operations, OperationsServer};
use remesh_proto::longrunning::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
    ListOperationsResponse, Operation, WaitOperationRequest,
};
use remesh_proto::protobuf::Empty;
use remesh_proto::reapi::action_cache_server::{ActionCache, ActionCacheServer};
use remesh_proto::reapi::execution_server::{Execution, ExecutionServer};
use remesh_proto::reapi::{
    ActionResult, Digest, ExecuteRequest, GetActionResultRequest, UpdateActionResultRequest,
    WaitExecutionRequest,
};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

/// The backend's own operation name for an Execute: deliberately awkward (slashes,
/// spaces, unicode) so that the proxy must keep it verbatim.
pub fn backend_operation_name(instance: &str, hash: &str) -> String {
    format!("ops/{instance}/{hash}/ü ñ")
}

/// An Execute of a made-up action for this backend: `hold` keeps it open, `slow`
/// finishes it after three seconds, `busy` refuses it, any other instance answers at
/// once.
pub fn execute_request(instance: &str, hash: &str) -> ExecuteRequest {
    ExecuteRequest {
        instance_name: instance.into(),
        action_digest: Some(Digest {
            hash: hash.into(),
            size_bytes: 10,
        }),
        ..Default::default()
    }
}

#[derive(Default)]
pub struct Recorded {
    /// Every request's metadata, by method.
    pub headers: Vec<(String, tonic::metadata::MetadataMap)>,
    /// Names received by WaitExecution / GetOperation / CancelOperation.
    pub names: Vec<String>,
    pub executes: usize,
}

#[derive(Clone, Default)]
pub struct FakeBackend {
    pub recorded: Arc<Mutex<Recorded>>,
    /// Streams per HTTP/2 connection announced to clients (unbounded when unset;
    /// remesh-executor announces 200 by default).
    pub max_concurrent_streams: Option<u32>,
}

impl FakeBackend {
    fn record<T>(&self, method: &str, request: &Request<T>) {
        self.recorded
            .lock()
            .unwrap()
            .headers
            .push((method.into(), request.metadata().clone()));
    }

    /// Serves on a fresh loopback port; returns its address.
    pub async fn start(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .max_concurrent_streams(self.max_concurrent_streams)
                .add_service(ExecutionServer::new(self.clone()))
                .add_service(OperationsServer::new(self.clone()))
                .add_service(ActionCacheServer::new(self.clone()))
                .add_service(ByteStreamServer::new(self))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        addr
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn operation(name: String, done: bool) -> Operation {
    Operation {
        name,
        metadata: Some(remesh_proto::protobuf::Any {
            type_url: "type.googleapis.com/test.Metadata".into(),
            value: b"opaque metadata".to_vec(),
        }),
        done,
        result: None,
    }
}

#[tonic::async_trait]
impl Execution for FakeBackend {
    type ExecuteStream = BoxStream<Operation>;
    type WaitExecutionStream = BoxStream<Operation>;

    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        self.record("Execute", &request);
        let request = request.into_inner();
        if request.instance_name == "busy" {
            return Err(Status::resource_exhausted("queue full"));
        }
        self.recorded.lock().unwrap().executes += 1;
        let hash = request.action_digest.map(|d| d.hash).unwrap_or_default();
        let name = backend_operation_name(&request.instance_name, &hash);
        if request.instance_name == "hold" {
            // One update, then the stream stays open until the client leaves: an
            // action that keeps a runner busy.
            let first = futures::stream::iter(vec![Ok(operation(name, false))]);
            return Ok(Response::new(Box::pin(
                first.chain(futures::stream::pending()),
            )));
        }
        if request.instance_name == "slow" {
            // One update, then done after three seconds: an action still running
            // when something happens to the node.
            let first = futures::stream::iter(vec![Ok(operation(name.clone(), false))]);
            let done = futures::stream::once(async move {
                tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                Ok(operation(name, true))
            });
            return Ok(Response::new(Box::pin(first.chain(done))));
        }
        let updates = vec![
            Ok(operation(name.clone(), false)),
            Ok(operation(name, true)),
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(updates))))
    }

    async fn wait_execution(
        &self,
        request: Request<WaitExecutionRequest>,
    ) -> Result<Response<Self::WaitExecutionStream>, Status> {
        self.record("WaitExecution", &request);
        let name = request.into_inner().name;
        self.recorded.lock().unwrap().names.push(name.clone());
        if !name.starts_with("ops/") {
            return Err(Status::not_found(format!("no operation {name}")));
        }
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(
            operation(name, true),
        )]))))
    }
}

#[tonic::async_trait]
impl Operations for FakeBackend {
    async fn list_operations(
        &self,
        _: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        Ok(Response::new(ListOperationsResponse {
            operations: vec![
                operation("ops/a".into(), true),
                operation("ops/b".into(), false),
            ],
            next_page_token: String::new(),
            unreachable: Vec::new(),
        }))
    }

    async fn get_operation(
        &self,
        request: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let name = request.into_inner().name;
        self.recorded.lock().unwrap().names.push(name.clone());
        Ok(Response::new(operation(name, true)))
    }

    async fn delete_operation(
        &self,
        _: Request<DeleteOperationRequest>,
    ) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn cancel_operation(
        &self,
        request: Request<CancelOperationRequest>,
    ) -> Result<Response<Empty>, Status> {
        let name = request.into_inner().name;
        self.recorded.lock().unwrap().names.push(name);
        Ok(Response::new(Empty {}))
    }

    async fn wait_operation(
        &self,
        _: Request<WaitOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        Err(Status::unimplemented("WaitOperation"))
    }
}

#[tonic::async_trait]
impl ActionCache for FakeBackend {
    async fn get_action_result(
        &self,
        request: Request<GetActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        self.record("GetActionResult", &request);
        // The exit code echoes the digest size, so a test can tell answers apart.
        let size = request
            .into_inner()
            .action_digest
            .map_or(0, |d| d.size_bytes);
        Ok(Response::new(ActionResult {
            exit_code: size as i32,
            ..Default::default()
        }))
    }

    async fn update_action_result(
        &self,
        _: Request<UpdateActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Bytes of the fake blob served by ByteStream.Read: `len` bytes of a pattern.
pub fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tonic::async_trait]
impl ByteStream for FakeBackend {
    type ReadStream = BoxStream<ReadResponse>;

    async fn read(
        &self,
        request: Request<ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        // resource_name "len/<n>": n bytes in 64 KiB chunks.
        let name = request.into_inner().resource_name;
        let len: usize = name
            .strip_prefix("len/")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Status::invalid_argument("want len/<n>"))?;
        let data = blob(len);
        let chunks: Vec<_> = data
            .chunks(64 << 10)
            .map(|chunk| {
                Ok(ReadResponse {
                    data: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn write(
        &self,
        request: Request<tonic::Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let mut stream = request.into_inner();
        let mut committed = 0i64;
        while let Some(chunk) = stream.message().await? {
            committed += chunk.data.len() as i64;
            if chunk.finish_write {
                break;
            }
        }
        Ok(Response::new(WriteResponse {
            committed_size: committed,
        }))
    }

    async fn query_write_status(
        &self,
        _: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}
