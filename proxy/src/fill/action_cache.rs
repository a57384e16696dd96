//! `ActionCache` on the fill endpoint: GetActionResult asks every peer at once and
//! answers with the first result found; NOT_FOUND when no peer has one. The local
//! executor checks, as for any backing cache, that the result's blobs can be had
//! before it serves it.

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use remesh_proto::reapi::action_cache_server::ActionCache;
use remesh_proto::reapi::{ActionResult, GetActionResultRequest, UpdateActionResultRequest};
use tonic::{Request, Response, Status};

use super::{Fill, PEER_DEADLINE, read_only};

pub struct FillActionCache(pub Fill);

#[tonic::async_trait]
impl ActionCache for FillActionCache {
    async fn get_action_result(
        &self,
        request: Request<GetActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        let request = request.into_inner();
        let mut asking: FuturesUnordered<_> = self
            .0
            .peers()
            .into_iter()
            .map(|peer| {
                let request = request.clone();
                async move {
                    let mut client = peer.action_cache();
                    let call = client.get_action_result(request);
                    (peer.node, tokio::time::timeout(PEER_DEADLINE, call).await)
                }
            })
            .collect();
        while let Some((node, answer)) = asking.next().await {
            match answer {
                Ok(Ok(result)) => {
                    self.0.count("get_action_result", true);
                    return Ok(result);
                }
                Ok(Err(status)) if status.code() == tonic::Code::NotFound => {}
                Ok(Err(status)) => {
                    tracing::debug!(peer = %node, %status, "fill: GetActionResult failed");
                }
                Err(_) => tracing::debug!(peer = %node, "fill: GetActionResult timed out"),
            }
        }
        self.0.count("get_action_result", false);
        Err(Status::not_found(
            "no member of the cluster holds a result for this action",
        ))
    }

    async fn update_action_result(
        &self,
        _: Request<UpdateActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        Err(read_only("UpdateActionResult"))
    }
}
