//! The gRPC side of deadlock detection (`deadlock.Deadlock`).
//!
//! [`DeadlockService`] serves `GetWaitForEntries` (this store's waiters) and
//! `Detect`: when this store is the detector leader, every request of the
//! stream goes to its wait-for graph and each deadlock found is answered on
//! the stream; otherwise, or once the role moves away, the stream fails with
//! `FAILED_PRECONDITION`. [`GrpcLeaderLink`] is the other end: it finds the
//! leader (the leader placement names for the region holding the empty key),
//! keeps one `Detect` stream to it, forwards this store's requests and hands
//! the answers to the lock manager. When the stream fails it looks the leader
//! up again; requests that find no leader are dropped (their waiters wait out
//! their timeout, and the client retries).

use std::time::Duration;

use futures::StreamExt;
use proto::deadlock::deadlock_client::DeadlockClient;
use proto::deadlock::deadlock_server::Deadlock;
use proto::deadlock::{
    DeadlockRequest, DeadlockResponse, WaitForEntriesRequest, WaitForEntriesResponse,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

use super::placement_client::PlacementClient;
use crate::lock_manager::{LeaderLink, LockManager, NotLeader};

/// Requests queued for the leader before new ones are dropped.
const LINK_QUEUE: usize = 4096;
/// Pause before looking the leader up again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[derive(Clone)]
pub struct DeadlockService {
    lm: LockManager,
}

impl DeadlockService {
    pub fn new(lm: LockManager) -> Self {
        DeadlockService { lm }
    }
}

fn not_leader() -> Status {
    Status::failed_precondition(NotLeader.to_string())
}

#[tonic::async_trait]
impl Deadlock for DeadlockService {
    async fn get_wait_for_entries(
        &self,
        _req: Request<WaitForEntriesRequest>,
    ) -> Result<Response<WaitForEntriesResponse>, Status> {
        Ok(Response::new(WaitForEntriesResponse {
            entries: self.lm.wait_for_entries(),
        }))
    }

    async fn detect(
        &self,
        req: Request<Streaming<DeadlockRequest>>,
    ) -> Result<Response<BoxStream<DeadlockResponse>>, Status> {
        if !self.lm.detector().is_leader() {
            return Err(not_leader());
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(1024);
        let lm = self.lm.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                let answer = match lm.detector().handle_remote(req) {
                    Ok(None) => continue,
                    Ok(Some(resp)) => Ok(resp),
                    Err(NotLeader) => Err(not_leader()),
                };
                let stop = answer.is_err();
                if tx.send(answer).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// This store's requests to the detector leader, over one gRPC stream.
pub struct GrpcLeaderLink {
    tx: mpsc::Sender<DeadlockRequest>,
}

impl LeaderLink for GrpcLeaderLink {
    fn send(&self, req: DeadlockRequest) {
        if self.tx.try_send(req).is_err() {
            tracing::warn!("deadlock detector queue full; request dropped");
        }
    }
}

impl GrpcLeaderLink {
    /// Starts the link task on the current runtime.
    pub fn start(placement: PlacementClient, store_id: u64, lm: LockManager) -> Self {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        tokio::spawn(run_link(placement, store_id, lm, rx));
        GrpcLeaderLink { tx }
    }
}

/// An open `Detect` stream: where to write, and the task reading answers.
struct LeaderStream {
    out: mpsc::Sender<DeadlockRequest>,
    reader: JoinHandle<()>,
}

async fn run_link(
    placement: PlacementClient,
    store_id: u64,
    lm: LockManager,
    mut rx: mpsc::Receiver<DeadlockRequest>,
) {
    let mut stream: Option<LeaderStream> = None;
    while let Some(req) = rx.recv().await {
        if stream.as_ref().is_some_and(|s| s.reader.is_finished()) {
            stream = None;
        }
        if stream.is_none() {
            match open_stream(&placement, store_id, &lm).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no deadlock detector leader; request dropped");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        let sent = match &stream {
            Some(s) => s.out.send(req).await.is_ok(),
            None => false,
        };
        if !sent {
            tracing::warn!("deadlock detector stream closed; request dropped");
            stream = None;
        }
    }
}

/// Looks the leader up and opens a `Detect` stream to it.
async fn open_stream(
    placement: &PlacementClient,
    store_id: u64,
    lm: &LockManager,
) -> Result<LeaderStream, String> {
    let leader = placement
        .get_region_leader(b"")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("placement knows no leader of the first region")?;
    if leader.store_id == store_id {
        return Err("placement names this store, which does not lead (yet)".into());
    }
    let store = placement
        .get_store(leader.store_id)
        .await
        .map_err(|e| e.to_string())?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", store.address))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", store.address))?;
    let (out, out_rx) = mpsc::channel(1024);
    let mut answers = DeadlockClient::new(channel)
        .detect(ReceiverStream::new(out_rx))
        .await
        .map_err(|s| format!("store {}: {}", leader.store_id, s.message()))?
        .into_inner();
    let lm = lm.clone();
    let leader_store = leader.store_id;
    let reader = tokio::spawn(async move {
        loop {
            match answers.message().await {
                Ok(Some(resp)) => lm.on_deadlock(resp),
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(leader_store, %status, "deadlock detector stream ended");
                    break;
                }
            }
        }
    });
    tracing::info!(leader_store, "connected to the deadlock detector leader");
    Ok(LeaderStream { out, reader })
}
