//! `google.longrunning.Operations` over the engine's operations: Get, List (name
//! order, `page_size` / `page_token` honoured, `filter` ignored), Cancel, Delete, and
//! Wait (bounded: it returns the current state after at most a minute).

use std::time::Duration;

use remesh_proto::longrunning::operations_server::Operations;
use remesh_proto::longrunning::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
    ListOperationsResponse, Operation, WaitOperationRequest,
};
use remesh_proto::protobuf::Empty;
use tonic::{Request, Response, Status};

use crate::execution::Engine;

/// Longest a WaitOperation call blocks; clients call again.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub struct OperationsService {
    engine: Engine,
}

impl OperationsService {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl Operations for OperationsService {
    async fn list_operations(
        &self,
        request: Request<ListOperationsRequest>,
    ) -> Result<Response<ListOperationsResponse>, Status> {
        let request = request.into_inner();
        let (operations, next_page_token) =
            self.engine.list(&request.page_token, request.page_size)?;
        Ok(Response::new(ListOperationsResponse {
            operations,
            next_page_token,
            unreachable: Vec::new(),
        }))
    }

    async fn get_operation(
        &self,
        request: Request<GetOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let operation = self.engine.operation(&request.into_inner().name)?;
        Ok(Response::new(operation.to_proto()))
    }

    async fn delete_operation(
        &self,
        request: Request<DeleteOperationRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.engine.delete(&request.into_inner().name)?;
        Ok(Response::new(Empty {}))
    }

    async fn cancel_operation(
        &self,
        request: Request<CancelOperationRequest>,
    ) -> Result<Response<Empty>, Status> {
        self.engine.cancel(&request.into_inner().name)?;
        Ok(Response::new(Empty {}))
    }

    async fn wait_operation(
        &self,
        request: Request<WaitOperationRequest>,
    ) -> Result<Response<Operation>, Status> {
        let request = request.into_inner();
        let wait = match request.timeout {
            Some(timeout) if timeout.seconds < 0 || timeout.nanos < 0 => {
                return Err(Status::invalid_argument("timeout must not be negative"));
            }
            Some(timeout) => Duration::new(timeout.seconds as u64, 0)
                .saturating_add(Duration::from_nanos(timeout.nanos as u64))
                .min(MAX_WAIT),
            None => MAX_WAIT,
        };
        let operation = self.engine.operation(&request.name)?;
        let mut states = operation.subscribe();
        // Timing out is not an error: the current state is the answer.
        let _ = tokio::time::timeout(wait, states.wait_for(|state| state.is_done())).await;
        Ok(Response::new(operation.to_proto()))
    }
}
