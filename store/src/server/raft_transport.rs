//! Store-to-store raft traffic over gRPC (`storepb.StoreRaft/Raft`).
//!
//! [`GrpcTransport`] is the raftstore's [`Transport`]: messages go to a
//! dispatcher task, which keeps one client stream per destination store
//! (address looked up in placement) and sends whatever has queued up as one
//! `RaftBatch`. Queues are bounded; when a store is unreachable or slow its
//! messages are dropped and raft retransmits. Messages over [`CHUNK_SIZE`]
//! (snapshots) are streamed in chunks and joined again on arrival.
//! [`RaftService`] is the receiving side: each message goes to the local
//! raftstore.

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
/// Size of the pieces large messages are cut into.
pub const CHUNK_SIZE: usize = 1 << 20;
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
            let mut msgs = Vec::new();
            let mut next = Some(first);
            while let Some(m) = next.take() {
                if m.message.len() > CHUNK_SIZE {
                    // Flush what is queued, then the pieces, one batch each.
                    if !msgs.is_empty()
                        && batch_tx
                            .send(RaftBatch {
                                msgs: std::mem::take(&mut msgs),
                            })
                            .await
                            .is_err()
                    {
                        break;
                    }
                    for piece in chunk(m) {
                        if batch_tx
                            .send(RaftBatch { msgs: vec![piece] })
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                } else {
                    msgs.push(m);
                }
                if msgs.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !msgs.is_empty() && batch_tx.send(RaftBatch { msgs }).await.is_err() {
                break;
            }
            if batch_tx.is_closed() {
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
        let mut joiner = Joiner::default();
        while let Some(batch) = stream.message().await? {
            for m in batch.msgs {
                let Some(m) = joiner.push(m) else { continue };
                if self.router.send_raft_message(m).is_err() {
                    return Err(Status::unavailable("store is shutting down"));
                }
            }
        }
        Ok(Response::new(Done {}))
    }
}

/// Cuts a large message into pieces of [`CHUNK_SIZE`].
fn chunk(m: RaftMessage) -> Vec<RaftMessage> {
    let count = m.message.len().div_ceil(CHUNK_SIZE) as u32;
    m.message
        .chunks(CHUNK_SIZE)
        .enumerate()
        .map(|(i, piece)| RaftMessage {
            message: piece.to_vec(),
            chunk_index: i as u32,
            chunk_count: count,
            ..header_of(&m)
        })
        .collect()
}

/// Every field of `m` but its payload.
fn header_of(m: &RaftMessage) -> RaftMessage {
    RaftMessage {
        region_id: m.region_id,
        from_peer: m.from_peer,
        to_peer: m.to_peer,
        region_epoch: m.region_epoch,
        is_tombstone: m.is_tombstone,
        start_key: m.start_key.clone(),
        end_key: m.end_key.clone(),
        ..Default::default()
    }
}

/// Joins the pieces of chunked messages arriving on one stream (in order).
#[derive(Default)]
struct Joiner {
    partial: Option<RaftMessage>,
}

impl Joiner {
    fn push(&mut self, m: RaftMessage) -> Option<RaftMessage> {
        if m.chunk_count == 0 {
            return Some(m);
        }
        if m.chunk_index == 0 {
            self.partial = Some(RaftMessage {
                chunk_index: 0,
                chunk_count: 0,
                ..m.clone()
            });
        } else if let Some(p) = self.partial.as_mut() {
            if p.region_id != m.region_id {
                self.partial = None;
                return None;
            }
            p.message.extend_from_slice(&m.message);
        }
        if m.chunk_index + 1 == m.chunk_count {
            return self.partial.take();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_join_back_into_the_message() {
        let m = RaftMessage {
            region_id: 7,
            message: (0..(CHUNK_SIZE * 2 + 10)).map(|i| i as u8).collect(),
            start_key: b"a".to_vec(),
            ..Default::default()
        };
        let pieces = chunk(m.clone());
        assert_eq!(pieces.len(), 3);
        let mut j = Joiner::default();
        let mut out = None;
        for p in pieces {
            assert!(out.is_none());
            out = j.push(p);
        }
        assert_eq!(out, Some(m));
        let small = RaftMessage::default();
        assert_eq!(j.push(small.clone()), Some(small));
    }
}
