//! Store-to-store raft traffic over gRPC (`storepb.StoreRaft`).
//!
//! [`GrpcTransport`] is the raftstore's [`Transport`]: messages go to a
//! dispatcher task, which keeps one client stream per destination store
//! (address looked up in placement) and sends whatever has queued up as one
//! `RaftBatch`. Queues are bounded; when a store is unreachable or slow its
//! messages are dropped (raft retransmits) and the raftstore is told the
//! peer is unreachable. A snapshot message travels on its own `Snapshot`
//! stream, followed by its file read in [`SNAP_CHUNK`] pieces, and its
//! outcome goes back to raft either way. [`RaftService`] is the receiving
//! side: raft messages go to the local raftstore; a snapshot's file is
//! written, verified against the message's descriptor and published before
//! its message is handed on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use proto::storepb::store_raft_client::StoreRaftClient;
use proto::storepb::store_raft_server::StoreRaft;
use proto::storepb::{Done, RaftBatch, RaftMessage, SnapshotChunk};
use protobuf::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::placement_client::{PlacementClient, PlacementError};
use crate::raftstore::snap::{file, SnapDescriptor, SnapError, SnapKey, SnapManager};
use crate::raftstore::transport::{Feedback, Transport};
use crate::raftstore::{ProposeError, Router};

/// Largest message a raft stream carries (a batch of entries; snapshots
/// travel as files, in pieces).
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;
const QUEUE_PER_STORE: usize = 8192;
/// Size of the pieces a snapshot file is sent in.
pub const SNAP_CHUNK: usize = 1 << 20;
const MAX_BATCH: usize = 512;
/// Snapshots sent, and received, at once by one store.
const CONCURRENT_SNAPSHOTS: usize = 4;

pub struct GrpcTransport {
    tx: mpsc::UnboundedSender<(Vec<RaftMessage>, Feedback)>,
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<RaftMessage>, feedback: &Feedback) {
        let _ = self.tx.send((msgs, feedback.clone()));
    }
}

impl GrpcTransport {
    /// Starts the dispatcher on the current runtime.
    pub fn start(placement: PlacementClient, snaps: Arc<SnapManager>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(placement, snaps, rx));
        GrpcTransport { tx }
    }
}

type Outbox = mpsc::Sender<(RaftMessage, Feedback)>;

async fn dispatch(
    placement: PlacementClient,
    snaps: Arc<SnapManager>,
    mut rx: mpsc::UnboundedReceiver<(Vec<RaftMessage>, Feedback)>,
) {
    let mut queues: HashMap<u64, Outbox> = HashMap::new();
    let sending = Arc::new(Semaphore::new(CONCURRENT_SNAPSHOTS));
    while let Some((msgs, feedback)) = rx.recv().await {
        for m in msgs {
            let store_id = m.to_peer.map(|p| p.store_id).unwrap_or(0);
            if m.is_snapshot {
                let (placement, snaps, fb) = (placement.clone(), snaps.clone(), feedback.clone());
                let sending = sending.clone();
                tokio::spawn(async move {
                    let Ok(_permit) = sending.acquire_owned().await else {
                        return;
                    };
                    let delivered = match send_snapshot(&placement, &snaps, store_id, &m).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(region_id = m.region_id, store_id, error = %e, "sending snapshot failed");
                            false
                        }
                    };
                    fb.snapshot_status(&m, delivered);
                });
                continue;
            }
            let q = queues.entry(store_id).or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE_PER_STORE);
                tokio::spawn(connection(placement.clone(), store_id, rx));
                tx
            });
            if q.try_send((m, feedback.clone())).is_err() {
                tracing::debug!(store_id, "raft queue full; message dropped");
            }
        }
    }
}

/// Tells raft that the peers of the messages dropped here are unreachable.
fn report_unreachable(rx: &mut mpsc::Receiver<(RaftMessage, Feedback)>) {
    let mut told = HashSet::new();
    while let Ok((m, fb)) = rx.try_recv() {
        let to = m.to_peer.map(|p| p.id).unwrap_or(0);
        if told.insert((m.region_id, to)) {
            fb.unreachable(&m);
        }
    }
}

/// Keeps a stream to `store_id` open and feeds it batches from `rx`.
async fn connection(
    placement: PlacementClient,
    store_id: u64,
    mut rx: mpsc::Receiver<(RaftMessage, Feedback)>,
) {
    loop {
        let mut client = match connect(&placement, store_id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(store_id, error = %e, "raft connection failed");
                // Drop what queued up meanwhile: raft resends what matters.
                report_unreachable(&mut rx);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (batch_tx, batch_rx) = mpsc::channel::<RaftBatch>(64);
        let call = tokio::spawn(async move { client.raft(ReceiverStream::new(batch_rx)).await });
        loop {
            let Some((first, _)) = rx.recv().await else {
                return;
            };
            let mut msgs = vec![first];
            while msgs.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok((m, _)) => msgs.push(m),
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
        report_unreachable(&mut rx);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Why a raft connection or a snapshot send to another store failed.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("looking the store up: {0}")]
    Placement(#[from] PlacementError),
    #[error("store address {address:?}: {source}")]
    Address {
        address: String,
        source: tonic::codegen::http::uri::InvalidUri,
    },
    #[error("connecting: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("undecodable raft message: {0}")]
    Message(#[from] protobuf::ProtobufError),
    #[error(transparent)]
    Snapshot(#[from] SnapError),
    #[error("{}: {source}", .path.display())]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the receiver closed the stream")]
    Closed,
    #[error("the receiver refused the snapshot: {0}")]
    Refused(#[from] Status),
    #[error("the snapshot call's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("sent {sent} of {size} bytes")]
    Short { sent: u64, size: u64 },
}

async fn connect(
    placement: &PlacementClient,
    store_id: u64,
) -> Result<StoreRaftClient<tonic::transport::Channel>, SendError> {
    let store = placement.get_store(store_id).await?;
    let address = format!("http://{}", store.address);
    let channel = tonic::transport::Channel::from_shared(address.clone())
        .map_err(|source| SendError::Address { address, source })?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(StoreRaftClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE))
}

/// The key and descriptor of a snapshot message.
fn snapshot_of(m: &RaftMessage) -> Result<(SnapKey, SnapDescriptor), SendError> {
    let msg = raft::prelude::Message::parse_from_bytes(&m.message)?;
    let snap = msg.get_snapshot();
    let key = SnapKey {
        region_id: m.region_id,
        term: snap.get_metadata().term,
        index: snap.get_metadata().index,
    };
    Ok((key, SnapDescriptor::decode(&snap.data)?))
}

/// Streams a snapshot message and then its file to `store_id`.
async fn send_snapshot(
    placement: &PlacementClient,
    snaps: &SnapManager,
    store_id: u64,
    m: &RaftMessage,
) -> Result<(), SendError> {
    let (key, desc) = snapshot_of(m)?;
    let path = snaps.gen_path(&key);
    let mut f = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(source) => return Err(SendError::File { path, source }),
    };
    let mut client = connect(placement, store_id).await?;
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(4);
    let head = SnapshotChunk {
        message: Some(m.clone()),
        data: vec![],
    };
    let call = tokio::spawn(async move { client.snapshot(ReceiverStream::new(rx)).await });
    let fed = feed_file(&tx, head, &mut f).await;
    drop(tx);
    call.await??;
    let sent = fed.map_err(|e| match e {
        FeedError::Closed => SendError::Closed,
        FeedError::Read(source) => SendError::File { path, source },
    })?;
    if sent != desc.meta.size {
        return Err(SendError::Short {
            sent,
            size: desc.meta.size,
        });
    }
    Ok(())
}

enum FeedError {
    Closed,
    Read(std::io::Error),
}

/// Sends `head`, then `f` in pieces; returns the file bytes sent.
async fn feed_file(
    tx: &mpsc::Sender<SnapshotChunk>,
    head: SnapshotChunk,
    f: &mut tokio::fs::File,
) -> Result<u64, FeedError> {
    let closed = |_| FeedError::Closed;
    tx.send(head).await.map_err(closed)?;
    let mut sent = 0u64;
    loop {
        let mut buf = vec![0u8; SNAP_CHUNK];
        let n = f.read(&mut buf).await.map_err(FeedError::Read)?;
        if n == 0 {
            return Ok(sent);
        }
        buf.truncate(n);
        sent += n as u64;
        let chunk = SnapshotChunk {
            message: None,
            data: buf,
        };
        tx.send(chunk).await.map_err(closed)?;
    }
}

/// Receives raft messages and snapshots from other stores.
pub struct RaftService {
    router: Router,
    snaps: Arc<SnapManager>,
    receiving: Arc<Semaphore>,
}

impl RaftService {
    pub fn new(router: Router, snaps: Arc<SnapManager>) -> Self {
        RaftService {
            router,
            snaps,
            receiving: Arc::new(Semaphore::new(CONCURRENT_SNAPSHOTS)),
        }
    }
}

#[tonic::async_trait]
impl StoreRaft for RaftService {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<Done>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.message().await? {
            for m in batch.msgs {
                match self.router.send_raft_message(m) {
                    Ok(()) => {}
                    Err(ProposeError::Busy) => {
                        crate::metrics::RAFT_MESSAGES_DROPPED.inc();
                        tracing::debug!("raftstore inbox full; raft message dropped");
                    }
                    Err(_) => return Err(Status::unavailable("store is shutting down")),
                }
            }
        }
        Ok(Response::new(Done {}))
    }

    async fn snapshot(
        &self,
        req: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let Ok(_permit) = self.receiving.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(
                "too many snapshots being received; try later",
            ));
        };
        let mut stream = req.into_inner();
        let head = stream
            .message()
            .await?
            .and_then(|c| c.message)
            .ok_or_else(|| Status::invalid_argument("a snapshot stream starts with its message"))?;
        let (key, desc) =
            snapshot_of(&head).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let tmp = self.snaps.recv_tmp_path(&key);
        let received = receive_file(&mut stream, &tmp, desc.meta.size).await;
        let checked = received.and_then(|(size, crc)| {
            if (size, crc) == (desc.meta.size, desc.meta.crc32) {
                Ok(())
            } else {
                Err(Status::data_loss(format!(
                    "snapshot file of region {} arrived damaged: {size} bytes, crc {crc:08x}",
                    key.region_id
                )))
            }
        });
        if let Err(e) = checked {
            self.snaps.remove(&tmp);
            return Err(e);
        }
        let dest = self.snaps.recv_path(&key);
        tokio::task::spawn_blocking(move || file::publish(&tmp, &dest))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        self.snaps.count_received();
        match self.router.send_raft_message(head) {
            Ok(()) => Ok(Response::new(Done {})),
            Err(ProposeError::Busy) => Err(Status::unavailable("raftstore busy")),
            Err(_) => Err(Status::unavailable("store is shutting down")),
        }
    }
}

/// Writes the file pieces of a snapshot stream to `tmp` (synced); returns
/// their size and checksum. More than `limit` bytes is refused.
async fn receive_file(
    stream: &mut Streaming<SnapshotChunk>,
    tmp: &std::path::Path,
    limit: u64,
) -> Result<(u64, u32), Status> {
    let io = |e: std::io::Error| Status::internal(format!("{}: {e}", tmp.display()));
    let mut f = tokio::fs::File::create(tmp).await.map_err(io)?;
    let mut crc = crc32fast::Hasher::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.data.len() as u64;
        if size > limit {
            return Err(Status::invalid_argument("snapshot longer than announced"));
        }
        crc.update(&chunk.data);
        f.write_all(&chunk.data).await.map_err(io)?;
    }
    f.sync_all().await.map_err(io)?;
    Ok((size, crc.finalize()))
}
