//! `remesh.load.v1.Load`: the executor's queue depth and capacity for its proxy. `Get`
//! answers the load now; `Watch` streams it now and then on every change of
//! `{queued, executing, max_concurrency, max_queue}`.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use remesh_proto::load::load_server::Load;
use remesh_proto::load::{GetLoadRequest, LoadReport, WatchLoadRequest};
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

use crate::execution::Engine;

pub struct LoadService {
    engine: Engine,
}

impl LoadService {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl Load for LoadService {
    type WatchStream = Pin<Box<dyn Stream<Item = Result<LoadReport, Status>> + Send>>;

    async fn get(&self, _request: Request<GetLoadRequest>) -> Result<Response<LoadReport>, Status> {
        Ok(Response::new(self.engine.load()))
    }

    async fn watch(
        &self,
        _request: Request<WatchLoadRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // WatchStream yields the current value first, then each new one; rapid changes
        // coalesce into the latest, which is what a balancer wants.
        // It ends when the executor has drained, or shutdown would wait for it forever.
        let drained = self.engine.drained().cancelled_owned();
        let reports = WatchStream::new(self.engine.watch_load())
            .map(Ok)
            .take_until(drained);
        Ok(Response::new(Box::pin(reports)))
    }
}
