//! The `tikvpb.Tikv` gRPC service: a thin shell over [`Storage`].
//!
//! Each unary RPC calls the storage command of the same name, folds its
//! error into the response (`respond`) and records metrics. `BatchCommands`
//! (client-go's stream) runs the same commands concurrently and answers each
//! with its request id as soon as it completes.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use proto::kvrpcpb::*;
use proto::tikvpb::batch_commands_request::request::Cmd as Req;
use proto::tikvpb::batch_commands_response::response::Cmd as Resp;
use proto::tikvpb::tikv_server::Tikv;
use proto::tikvpb::{
    batch_commands_request, batch_commands_response, BatchCommandsRequest, BatchCommandsResponse,
};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::metrics;
use super::respond::respond;
use crate::storage::Storage;

/// Commands of one `BatchCommands` stream running at once.
pub const MAX_INFLIGHT_PER_STREAM: usize = 1024;

#[derive(Clone)]
pub struct KvService {
    storage: Storage,
}

impl KvService {
    pub fn new(storage: Storage) -> Self {
        KvService { storage }
    }
}

macro_rules! call {
    ($self:ident, $req:expr, $method:ident) => {{
        let start = Instant::now();
        let r = respond($self.storage.$method($req).await);
        metrics::observe(
            stringify!($method),
            r.is_ok(),
            start.elapsed().as_secs_f64(),
        );
        r
    }};
}

/// Implements `Tikv`: every listed RPC calls the storage command of the same
/// name; RPCs not listed answer `Unimplemented` (the generated default).
macro_rules! tikv_service {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Tikv for KvService {
            $(
                #[tracing::instrument(skip_all, fields(region_id = req.get_ref().context.as_ref().map(|c| c.region_id)))]
                async fn $method(&self, req: Request<$req>) -> Result<Response<$resp>, Status> {
                    call!(self, req.into_inner(), $method).map(Response::new)
                }
            )*

            async fn raw_coprocessor(
                &self,
                _req: Request<RawCoprocessorRequest>,
            ) -> Result<Response<RawCoprocessorResponse>, Status> {
                Ok(Response::new(RawCoprocessorResponse {
                    error: "raw coprocessor plugins are not supported by this store".into(),
                    ..Default::default()
                }))
            }

            #[tracing::instrument(skip_all)]
            async fn unsafe_destroy_range(
                &self,
                req: Request<UnsafeDestroyRangeRequest>,
            ) -> Result<Response<UnsafeDestroyRangeResponse>, Status> {
                call!(self, req.into_inner(), unsafe_destroy_range).map(Response::new)
            }

            /// The smallest safe ts of this store's replicas in the range (client-go polls it
            /// to pick stale read timestamps every replica can serve).
            async fn get_store_safe_ts(
                &self,
                req: Request<StoreSafeTsRequest>,
            ) -> Result<Response<StoreSafeTsResponse>, Status> {
                let req = req.into_inner();
                let safe_ts = self.storage.store_safe_ts(req.key_range.as_ref());
                Ok(Response::new(StoreSafeTsResponse { safe_ts }))
            }

            async fn batch_commands(
                &self,
                req: Request<Streaming<BatchCommandsRequest>>,
            ) -> Result<Response<BoxStream<BatchCommandsResponse>>, Status> {
                Ok(Response::new(self.serve_batch_commands(req.into_inner())))
            }
        }
    };
}

tikv_service! {
    kv_get(GetRequest) -> GetResponse;
    kv_scan(ScanRequest) -> ScanResponse;
    kv_prewrite(PrewriteRequest) -> PrewriteResponse;
    kv_pessimistic_lock(PessimisticLockRequest) -> PessimisticLockResponse;
    kv_pessimistic_rollback(PessimisticRollbackRequest) -> PessimisticRollbackResponse;
    kv_txn_heart_beat(TxnHeartBeatRequest) -> TxnHeartBeatResponse;
    kv_check_txn_status(CheckTxnStatusRequest) -> CheckTxnStatusResponse;
    kv_check_secondary_locks(CheckSecondaryLocksRequest) -> CheckSecondaryLocksResponse;
    kv_commit(CommitRequest) -> CommitResponse;
    kv_cleanup(CleanupRequest) -> CleanupResponse;
    kv_batch_get(BatchGetRequest) -> BatchGetResponse;
    kv_batch_rollback(BatchRollbackRequest) -> BatchRollbackResponse;
    kv_scan_lock(ScanLockRequest) -> ScanLockResponse;
    kv_resolve_lock(ResolveLockRequest) -> ResolveLockResponse;
    kv_gc(GcRequest) -> GcResponse;
    kv_delete_range(DeleteRangeRequest) -> DeleteRangeResponse;
    raw_get(RawGetRequest) -> RawGetResponse;
    raw_batch_get(RawBatchGetRequest) -> RawBatchGetResponse;
    raw_put(RawPutRequest) -> RawPutResponse;
    raw_batch_put(RawBatchPutRequest) -> RawBatchPutResponse;
    raw_delete(RawDeleteRequest) -> RawDeleteResponse;
    raw_batch_delete(RawBatchDeleteRequest) -> RawBatchDeleteResponse;
    raw_scan(RawScanRequest) -> RawScanResponse;
    raw_delete_range(RawDeleteRangeRequest) -> RawDeleteRangeResponse;
    raw_batch_scan(RawBatchScanRequest) -> RawBatchScanResponse;
    raw_get_key_ttl(RawGetKeyTtlRequest) -> RawGetKeyTtlResponse;
    raw_compare_and_swap(RawCasRequest) -> RawCasResponse;
}

impl KvService {
    /// Answers a `BatchCommands` stream: each command runs concurrently and
    /// its response goes out, with its request id, as soon as it is done. At
    /// most [`MAX_INFLIGHT_PER_STREAM`] run at once; the stream's requests
    /// wait (backpressure) beyond that. A batch whose request ids do not
    /// match its requests ends the stream with `InvalidArgument`: no request
    /// is ever dropped without an answer.
    fn serve_batch_commands(
        &self,
        mut inbound: Streaming<BatchCommandsRequest>,
    ) -> BoxStream<BatchCommandsResponse> {
        let (tx, rx) = mpsc::channel(1024);
        let svc = self.clone();
        let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT_PER_STREAM));
        tokio::spawn(async move {
            while let Some(Ok(batch)) = inbound.next().await {
                if batch.requests.len() != batch.request_ids.len() {
                    let msg = format!(
                        "BatchCommands: {} requests but {} request ids",
                        batch.requests.len(),
                        batch.request_ids.len()
                    );
                    tracing::warn!(%msg, "batch refused");
                    let _ = tx.send(Err(Status::invalid_argument(msg))).await;
                    return;
                }
                for (req, id) in batch.requests.into_iter().zip(batch.request_ids) {
                    let Ok(permit) = inflight.clone().acquire_owned().await else {
                        return;
                    };
                    let (svc, tx) = (svc.clone(), tx.clone());
                    tokio::spawn(async move {
                        let resp = svc.dispatch(req).await;
                        drop(permit);
                        let out = BatchCommandsResponse {
                            responses: vec![resp],
                            request_ids: vec![id],
                            transport_layer_load: 0,
                        };
                        let _ = tx.send(Ok(out)).await;
                    });
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

impl KvService {
    /// Runs one command of a `BatchCommands` stream.
    async fn dispatch(
        &self,
        req: batch_commands_request::Request,
    ) -> batch_commands_response::Response {
        macro_rules! route {
            ($r:expr, $($variant:ident => $method:ident),* $(,)?) => {
                match $r {
                    $(Some(Req::$variant(r)) => call!(self, r, $method).map(Resp::$variant),)*
                    Some(Req::Empty(e)) => Ok(Resp::Empty(proto::tikvpb::BatchCommandsEmptyResponse {
                        test_id: e.test_id,
                    })),
                    _ => Err(Status::unimplemented("command not supported in BatchCommands")),
                }
            };
        }
        let cmd = route!(req.cmd,
            Get => kv_get, Scan => kv_scan, Prewrite => kv_prewrite, Commit => kv_commit,
            Cleanup => kv_cleanup, BatchGet => kv_batch_get, BatchRollback => kv_batch_rollback,
            ScanLock => kv_scan_lock, ResolveLock => kv_resolve_lock, Gc => kv_gc,
            DeleteRange => kv_delete_range, RawGet => raw_get, RawBatchGet => raw_batch_get,
            RawPut => raw_put, RawBatchPut => raw_batch_put, RawDelete => raw_delete,
            RawBatchDelete => raw_batch_delete, RawScan => raw_scan,
            RawDeleteRange => raw_delete_range, RawBatchScan => raw_batch_scan,
            PessimisticLock => kv_pessimistic_lock, PessimisticRollback => kv_pessimistic_rollback,
            CheckTxnStatus => kv_check_txn_status, TxnHeartBeat => kv_txn_heart_beat,
            CheckSecondaryLocks => kv_check_secondary_locks,
        );
        match cmd {
            Ok(cmd) => batch_commands_response::Response { cmd: Some(cmd) },
            Err(status) => {
                tracing::warn!(%status, "batch command failed");
                batch_commands_response::Response { cmd: None }
            }
        }
    }
}
