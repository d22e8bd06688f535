//! Raft messages between placement members: `placementpb.MemberRaft` over gRPC on the peer
//! URL.
//!
//! [`Transport::send`] is called from the raft thread and never blocks: each peer has a
//! bounded queue drained by one async task that sends what has gathered as one `Step` batch.
//! A full queue, a failed call or a test filter drops messages, and raft hears of it
//! ([`Msg::Unreachable`], [`Msg::SnapshotStatus`]): it then resends what matters, a snapshot
//! included, instead of waiting for an answer that never comes. A snapshot counts as
//! delivered once the peer accepted the batch holding it. Every batch and every answer
//! carries the sender's [`MemberInfo`], which is how members learn each other's client URLs
//! (for `GetMembers`); a batch also relays the client URLs the sender knows of the other
//! members, so that followers, which never message each other, learn each other's from the
//! leader.
//!
//! [`MemberRaftService`] receives batches and `Join` requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use proto::placementpb::member_raft_client::MemberRaftClient;
use proto::placementpb::member_raft_server::MemberRaft;
use proto::placementpb::{JoinRequest, JoinResponse, MemberInfo, RaftAck, RaftBatch};
use protobuf::Message as _;
use raft::eraftpb::{ConfChangeType, Message, MessageType};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use super::filter::Filters;
use super::node::Msg;
use super::Shared;

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Messages sent in one call at most.
const BATCH: usize = 512;
/// Largest raft batch accepted or sent: snapshots carry the whole metadata.
pub const MAX_MESSAGE: usize = 512 << 20;

/// One encoded raft message on its way to a peer.
struct Outgoing {
    bytes: Vec<u8>,
    snapshot: bool,
}

/// Tells the raft thread that messages to `to` were lost or delivered.
#[derive(Clone)]
struct Feedback {
    node: Sender<Msg>,
    to: u64,
}

impl Feedback {
    /// The peer did not get a message (and a snapshot, if `snapshots` > 0).
    fn lost(&self, snapshots: usize) {
        let _ = self.node.send(Msg::Unreachable { to: self.to });
        for _ in 0..snapshots {
            self.snapshot(false);
        }
    }

    fn snapshot(&self, delivered: bool) {
        let to = self.to;
        let _ = self.node.send(Msg::SnapshotStatus { to, delivered });
    }
}

/// Outgoing raft messages, one queue and task per peer.
#[derive(Clone)]
pub struct Transport {
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    peers: Arc<Mutex<HashMap<u64, mpsc::Sender<Outgoing>>>>,
    filters: Filters,
    /// The raft thread's own channel, for what became of the messages.
    node: Sender<Msg>,
}

impl Transport {
    pub fn new(
        runtime: tokio::runtime::Handle,
        shared: Arc<Shared>,
        node: Sender<Msg>,
        filters: Filters,
    ) -> Self {
        Transport {
            runtime,
            shared,
            peers: Arc::new(Mutex::new(HashMap::new())),
            filters,
            node,
        }
    }

    /// Queues messages for their peers; raft hears of each one that cannot be.
    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            if let Err(why) = self.try_send(&m) {
                let to = m.to;
                let kind = m.get_msg_type();
                tracing::debug!(to, ?kind, why, "raft message dropped");
                let feedback = Feedback {
                    node: self.node.clone(),
                    to,
                };
                feedback.lost(usize::from(kind == MessageType::MsgSnapshot));
            }
        }
    }

    fn try_send(&self, m: &Message) -> Result<(), &'static str> {
        if !self.filters.allow(m) {
            return Err("a test filter dropped it");
        }
        let queue = self.queue(m.to).ok_or("no peer URL known")?;
        let bytes = m.write_to_bytes().map_err(|e| {
            tracing::error!(to = m.to, error = %e, "raft message cannot be encoded");
            "it cannot be encoded"
        })?;
        let snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
        queue
            .try_send(Outgoing { bytes, snapshot })
            .map_err(|_| "the peer's queue is full")
    }

    fn queue(&self, to: u64) -> Option<mpsc::Sender<Outgoing>> {
        let mut peers = self.peers.lock();
        if let Some(q) = peers.get(&to) {
            if !q.is_closed() {
                return Some(q.clone());
            }
        }
        let url = self.shared.peer_url(to)?;
        let endpoint = Endpoint::from_shared(url.clone())
            .ok()?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3));
        let (tx, rx) = mpsc::channel(QUEUE);
        let channel = {
            let _guard = self.runtime.enter();
            endpoint.connect_lazy()
        };
        let feedback = Feedback {
            node: self.node.clone(),
            to,
        };
        self.runtime
            .spawn(peer_loop(url, channel, rx, self.shared.clone(), feedback));
        peers.insert(to, tx.clone());
        Some(tx)
    }
}

/// Sends one peer's queued messages in batches, and tells raft what became of them.
async fn peer_loop(
    url: String,
    channel: Channel,
    mut rx: mpsc::Receiver<Outgoing>,
    shared: Arc<Shared>,
    feedback: Feedback,
) {
    let to = feedback.to;
    let mut client = MemberRaftClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let mut failing = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let snapshots = batch.iter().filter(|m| m.snapshot).count();
        let request = RaftBatch {
            from: Some(shared.me().clone()),
            messages: batch.into_iter().map(|m| m.bytes).collect(),
            known: shared.known_peers(),
        };
        match client.step(request).await {
            Ok(resp) => {
                if failing {
                    tracing::info!(to, %url, "placement peer reachable again");
                    failing = false;
                }
                if let Some(member) = resp.into_inner().member {
                    shared.learn(&member);
                }
                for _ in 0..snapshots {
                    feedback.snapshot(true);
                }
            }
            Err(status) => {
                if !failing {
                    tracing::warn!(to, %url, %status, "placement peer unreachable");
                    failing = true;
                }
                feedback.lost(snapshots);
            }
        }
    }
}

/// Serves raft batches and join requests from peers.
pub struct MemberRaftService {
    shared: Arc<Shared>,
    node: Sender<Msg>,
    cluster_id: u64,
}

impl MemberRaftService {
    pub fn new(shared: Arc<Shared>, node: Sender<Msg>, cluster_id: u64) -> Self {
        MemberRaftService {
            shared,
            node,
            cluster_id,
        }
    }
}

#[tonic::async_trait]
impl MemberRaft for MemberRaftService {
    async fn step(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        let batch = request.into_inner();
        if let Some(from) = &batch.from {
            self.shared.learn(from);
        }
        for member in &batch.known {
            self.shared.learn_relayed(member);
        }
        let mut msgs = Vec::with_capacity(batch.messages.len());
        for bytes in &batch.messages {
            match Message::parse_from_bytes(bytes) {
                Ok(m) => msgs.push(m),
                Err(e) => return Err(Status::invalid_argument(format!("bad raft message: {e}"))),
            }
        }
        self.node
            .send(Msg::Step(msgs))
            .map_err(|_| Status::unavailable("placement member is stopping"))?;
        Ok(Response::new(RaftAck {
            member: Some(self.shared.me().clone()),
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let member = request
            .into_inner()
            .member
            .ok_or_else(|| Status::invalid_argument("join request without a member"))?;
        if member.id != super::member_id(&member.name) {
            return Err(Status::invalid_argument(format!(
                "member id {} does not match name `{}`",
                member.id, member.name
            )));
        }
        let leader = self.shared.leader();
        if self.shared.is_voter(member.id) {
            self.shared.learn(&member);
            return Ok(Response::new(JoinResponse {
                added: false,
                already_member: true,
                leader,
                error: String::new(),
                cluster_id: self.cluster_id,
            }));
        }
        if !self.shared.is_raft_leader() {
            return Ok(Response::new(JoinResponse {
                added: false,
                already_member: false,
                leader,
                error: self.shared.not_leader().to_string(),
                cluster_id: self.cluster_id,
            }));
        }
        let (ack, done) = oneshot::channel();
        self.node
            .send(Msg::ConfChange {
                change: ConfChangeType::AddNode,
                member: member.clone(),
                ack,
            })
            .map_err(|_| Status::unavailable("placement member is stopping"))?;
        let result = tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .map_err(|_| Status::deadline_exceeded("adding the member timed out"))?
            .map_err(|_| Status::unavailable("placement member is stopping"))?;
        Ok(Response::new(match result {
            Ok(()) => {
                tracing::info!(name = %member.name, member_id = member.id, "placement member joined");
                JoinResponse {
                    added: true,
                    already_member: false,
                    leader: Some(self.shared.me().clone()),
                    error: String::new(),
                    cluster_id: self.cluster_id,
                }
            }
            Err(e) => JoinResponse {
                added: false,
                already_member: false,
                leader,
                error: e.to_string(),
                cluster_id: self.cluster_id,
            },
        }))
    }
}

/// How a member starting without raft state enters the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A leader added it: start blank and catch up from a snapshot.
    Added { cluster_id: u64 },
    /// It is in the configuration already (an initial member): start from the initial one.
    Member { cluster_id: u64 },
    /// Nobody leads yet (a new group): start from the initial configuration.
    NewGroup,
}

/// How long a starting member keeps asking a running group (one that answers but has no
/// leader yet) to add it before giving up.
const JOIN_PATIENCE: Duration = Duration::from_secs(120);

/// Asks the other initial members (and the leader one of them names) to add `me`. Only when
/// no peer answers at all (they are starting too) does the member start a new group; a peer
/// that answers belongs to a running group, which is asked again until its leader adds this
/// member.
pub async fn try_join(setup: &super::Setup) -> crate::error::Result<Entry> {
    let started = std::time::Instant::now();
    loop {
        let (entry, answered) = join_round(setup).await;
        if entry != Entry::NewGroup || !answered {
            return Ok(entry);
        }
        if started.elapsed() > JOIN_PATIENCE {
            return Err(crate::error::Error::Membership(format!(
                "the running placement group did not add this member within {JOIN_PATIENCE:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One pass over the peers; also says whether any peer answered.
async fn join_round(setup: &super::Setup) -> (Entry, bool) {
    let mut urls: Vec<String> = setup
        .initial
        .iter()
        .filter(|m| m.id != setup.me.id)
        .filter_map(|m| m.peer_urls.first().cloned())
        .collect();
    let mut answered = false;
    let mut asked = 0;
    while asked < urls.len() && asked < 16 {
        let url = urls[asked].clone();
        asked += 1;
        let Some(resp) = ask_join(&url, &setup.me).await else {
            continue;
        };
        answered = true;
        if resp.already_member {
            return (
                Entry::Member {
                    cluster_id: resp.cluster_id,
                },
                true,
            );
        }
        if resp.added {
            return (
                Entry::Added {
                    cluster_id: resp.cluster_id,
                },
                true,
            );
        }
        tracing::info!(%url, reason = %resp.error, "placement peer did not add this member");
        // Ask the leader it names next.
        if let Some(leader_url) = resp.leader.and_then(|l| l.peer_urls.first().cloned()) {
            if !urls[asked..].contains(&leader_url) {
                urls.insert(asked, leader_url);
            }
        }
    }
    (Entry::NewGroup, answered)
}

async fn ask_join(url: &str, me: &MemberInfo) -> Option<JoinResponse> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .ok()?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(12));
    let channel = endpoint.connect().await.ok()?;
    let request = JoinRequest {
        member: Some(me.clone()),
    };
    MemberRaftClient::new(channel)
        .join(request)
        .await
        .ok()
        .map(Response::into_inner)
}
