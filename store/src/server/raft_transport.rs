//! Store-to-store raft traffic over gRPC (`storepb.StoreRaft/Raft`).
//!
//! [`GrpcTransport`] is the raftstore's [`Transport`]: messages go to a
//! dispatcher task, which keeps one client stream per destination store
//! (address looked up in placement) and sends whatever has queued up as one
//! `RaftBatch`. Queues are bounded; when a store is unreachable or slow its
//! messages are dropped and raft retransmits. [`RaftService`] is the
//! receiving side: each message goes to the local raftstore.

use std::collections::HashMap;
use std::time::Duration;

use proto::storepb::store_raft_client::StoreRaftClient;
use proto::storepb::store_raft_server::StoreRaft;
use proto::storepb::{Done, RaftBatch, RaftMessage};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::pd::PdClient;
use crate::raftstore::transport::Transport;
use crate::raftstore::Router;

/// Largest message a raft stream carries (snapshots travel whole).
pub const MAX_RAFT_MESSAGE: usize = 1 << 30;
const QUEUE_PER_STORE: usize = 8192;
const MAX_BATCH: usize = 512;

pub struct GrpcTransport {
    tx: mpsc::UnboundedSender<Vec<RaftMessage>>,
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<RaftMessage>) {
        let _ = self.tx.send(msgs);
    }
}

impl GrpcTransport {
    /// Starts the dispatcher on the current runtime.
    pub fn start(pd: PdClient) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(pd, rx));
        GrpcTransport { tx }
    }
}

async fn dispatch(pd: PdClient, mut rx: mpsc::UnboundedReceiver<Vec<RaftMessage>>) {
    let mut queues: HashMap<u64, mpsc::Sender<RaftMessage>> = HashMap::new();
    while let Some(msgs) = rx.recv().await {
        for m in msgs {
            let store_id = m.to_peer.map(|p| p.store_id).unwrap_or(0);
            let q = queues.entry(store_id).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_STORE);
                tokio::spawn(connection(pd.clone(), store_id, rx));
                tx
            });
            if q.try_send(m).is_err() {
                tracing::debug!(store_id, "raft queue full; message dropped");
            }
        }
    }
}

/// Keeps a stream to `store_id` open and feeds it batches from `rx`.
async fn connection(pd: PdClient, store_id: u64, mut rx: mpsc::Receiver<RaftMessage>) {
    loop {
        let client = match connect(&pd, store_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store_id, error = %e, "raft connection failed");
                // Drop what queued up meanwhile: raft resends what matters.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (batch_tx, batch_rx) = mpsc::channel::<RaftBatch>(64);
        let mut client = client;
        let call = tokio::spawn(async move { client.raft(ReceiverStream::new(batch_rx)).await });
        loop {
            let Some(first) = rx.recv().await else {
                return;
            };
            let mut msgs = vec![first];
            while msgs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            if batch_tx.send(RaftBatch { msgs }).await.is_err() {
                break;
            }
        }
        if let Ok(Err(status)) = call.await {
            tracing::debug!(store_id, %status, "raft stream ended");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(
    pd: &PdClient,
    store_id: u64,
) -> Result<StoreRaftClient<tonic::transport::Channel>, String> {
    let store = pd.get_store(store_id).await.map_err(|e| e.to_string())?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", store.address))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(StoreRaftClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE))
}

/// Receives raft messages from other stores.
pub struct RaftService {
    router: Router,
}

impl RaftService {
    pub fn new(router: Router) -> Self {
        RaftService { router }
    }
}

#[tonic::async_trait]
impl StoreRaft for RaftService {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            for m in batch.msgs {
                if self.router.send_raft_message(m).is_err() {
                    return Err(Status::unavailable("store is shutting down"));
                }
            }
        }
        Ok(Response::new(Done {}))
    }
}
