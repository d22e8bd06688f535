//! One region replica: a raft-rs [`RawNode`] plus its durable state, the
//! proposals waiting for their entries to apply and the reads waiting for
//! their read index.
//!
//! The peer is plain state: the driver (`driver.rs`) feeds it ticks,
//! messages and proposals and collects its readies; nothing here blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message, MessageType};
use raft::{RawNode, StateRole, Storage as _};
use tokio::sync::oneshot;

use super::cmd::RaftCmd;
use super::lease::{Lease, LocalLease};
use super::membership;
use super::peer_storage::{PeerStorage, RaftStateError};
use super::read_context::{ReadBody, ReadContext};
use super::read_progress::ReadProgress;
use super::snap::worker::{GenState, GenTask, SnapSource};
use super::snapshot::{PeerRaftStorage, PendingInstall, RegionSnapshots};
use super::ProposeError;
use crate::percolator::{self, ConcurrencyManager};
use proto::{kvrpcpb, metapb, storepb};

pub type Callback = oneshot::Sender<Result<(), ProposeError>>;
/// Answers a read with the leader term it was confirmed in.
pub type ReadCallback = oneshot::Sender<Result<u64, ProposeError>>;

/// Reads sent for a read index under one request id.
struct SentRead {
    id: u64,
    /// The term it was sent in.
    term: u64,
    sent_at: Instant,
    /// A follower's or learner's read (else a leader's, which only completes while it leads).
    replica: bool,
    cbs: Vec<ReadCallback>,
}

/// Reads whose read index is known.
struct ReadyRead {
    index: u64,
    term: u64,
    replica: bool,
    cbs: Vec<ReadCallback>,
}

/// How long a read waits for its read index before it fails with `ReadIndexNotReady` (the
/// client backs off and retries): a forwarded request the leader dropped, or a leader that
/// cannot reach a quorum, is answered rather than waited on forever.
pub const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(5);

struct Proposal {
    index: u64,
    term: u64,
    /// A membership change: raft-rs turns one it will not apply (another
    /// change still pending) into an empty normal entry, which must not be
    /// reported as done.
    conf_change: bool,
    /// When it was appended: its commit renews the leader lease from then.
    proposed_at: Instant,
    cb: Callback,
}

pub struct Peer {
    pub region: metapb::Region,
    pub peer_id: u64,
    pub node: RawNode<PeerRaftStorage>,
    pub ps: PeerStorage,
    /// The applied state the snapshot builder sees (published after each
    /// apply write, under the store's apply gate).
    src: Arc<Mutex<SnapSource>>,
    /// A received snapshot whose data the apply worker is installing; until
    /// it is done, committed entries wait in `held` and no read completes.
    pub installing: Option<PendingInstall>,
    pub held: Vec<Entry>,
    /// The highest log truncation this replica proposed as leader.
    pub compact_proposed: u64,
    proposals: VecDeque<Proposal>,
    /// A leader's reads not yet sent for a read index (sent together), and the reads
    /// waiting for one (a leader's batches and single replica reads, by request id).
    reads_to_send: Vec<ReadCallback>,
    reads_sent: VecDeque<SentRead>,
    /// Reads whose read index is known, waiting for it to be applied.
    reads_ready: VecDeque<ReadyRead>,
    next_read_id: u64,
    /// The store's max ts and in-memory locks, which a leader checks for a replica read.
    cm: ConcurrencyManager,
    /// Applied index and safe ts for stale reads, published; as leader, the resolved ts.
    pub progress: Arc<ReadProgress>,
    /// Follower: resolved ts the leader sent, with the index each waits for `(index, ts)`.
    pending_safe_ts: VecDeque<(u64, u64)>,
    /// The leader lease (`lease.rs`): reads answered without a ReadIndex round.
    lease: Lease,
    /// The lease as published for reads on request threads ([`Peer::publish_lease`]).
    pub local_lease: Arc<LocalLease>,
    /// The term of the last entry applied here: a leader answers from its lease only once it
    /// has applied an entry of its own term (and so everything earlier leaders committed).
    applied_term: u64,
    /// Until then this replica, just loaded at store start, refuses votes as though it had
    /// heard from a leader (it may have, just before the restart, and so be part of the
    /// quorum a leader's lease rests on).
    refuse_votes_until: Option<Instant>,
    /// Peers heard from, by id, with when (for `down_peers`).
    peer_cache: HashMap<u64, metapb::Peer>,
    last_heard: HashMap<u64, Instant>,
    /// Bytes applied since the split checker last looked (it resets it).
    pub written: Arc<std::sync::atomic::AtomicU64>,
}

/// Raft timing and flow-control knobs of every region replica.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: usize,
}

/// What every replica of a store is built with.
pub struct PeerCtx {
    pub cfg: PeerConfig,
    pub logger: slog::Logger,
    /// The snapshot generation worker's queue.
    pub gen_tx: crossbeam_channel::Sender<GenTask>,
    /// The leader lease's length (`lease::max_lease`; zero: every read takes a ReadIndex
    /// round).
    pub max_lease: Duration,
    /// The store's max ts and in-memory locks (`percolator`).
    pub cm: ConcurrencyManager,
}

impl Peer {
    pub fn new(
        region: metapb::Region,
        peer_id: u64,
        ps: PeerStorage,
        ctx: &PeerCtx,
    ) -> Result<Self, RaftStateError> {
        let cfg = &ctx.cfg;
        let raft_cfg = raft::Config {
            id: peer_id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied: ps.apply_state.applied_index,
            max_size_per_msg: cfg.max_size_per_msg,
            max_inflight_msgs: cfg.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let src = Arc::new(Mutex::new(SnapSource::default()));
        let storage = PeerRaftStorage {
            log: ps.log.reader(),
            snapshots: RegionSnapshots {
                src: src.clone(),
                gen: Arc::new(Mutex::new(GenState::Idle)),
                gen_tx: ctx.gen_tx.clone(),
            },
        };
        let node = RawNode::new(&raft_cfg, storage, &ctx.logger)?;
        let mut peer = Peer {
            region: metapb::Region::default(),
            peer_id,
            node,
            ps,
            src,
            installing: None,
            held: Vec::new(),
            compact_proposed: 0,
            proposals: VecDeque::new(),
            reads_to_send: Vec::new(),
            reads_sent: VecDeque::new(),
            reads_ready: VecDeque::new(),
            next_read_id: 1,
            cm: ctx.cm.clone(),
            progress: Arc::default(),
            pending_safe_ts: VecDeque::new(),
            lease: Lease::new(ctx.max_lease),
            local_lease: Arc::default(),
            applied_term: 0,
            refuse_votes_until: None,
            peer_cache: HashMap::new(),
            last_heard: HashMap::new(),
            written: Arc::default(),
        };
        peer.set_region(region);
        peer.publish();
        Ok(peer)
    }

    /// A replica that has region metadata (not one waiting for a snapshot).
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    pub fn set_region(&mut self, region: metapb::Region) {
        let now = Instant::now();
        for p in &region.peers {
            self.peer_cache.insert(p.id, *p);
            self.last_heard.entry(p.id).or_insert(now);
        }
        self.region = region;
    }

    pub fn set_applied(&mut self, index: u64) {
        self.ps.apply_state.applied_index = index;
    }

    /// Publishes the region and applied index to the snapshot builder. Call
    /// only once the applied data is in the engine, under the apply gate.
    pub fn publish(&self) {
        let applied = self.ps.apply_state.applied_index;
        self.progress.set_applied(applied);
        let term = self.node.store().term(applied).unwrap_or(0);
        *self.src.lock() = SnapSource {
            region: self.region.clone(),
            applied_index: applied,
            applied_term: term,
            installing: self.installing.is_some(),
        };
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn peer_by_id(&self, id: u64) -> Option<metapb::Peer> {
        self.peer_cache.get(&id).copied()
    }

    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        let leader = self.node.raft.leader_id;
        self.region.peers.iter().find(|p| p.id == leader).copied()
    }

    pub fn not_leader(&self) -> ProposeError {
        ProposeError::NotLeader {
            region_id: self.region.id,
            leader: self.leader_peer(),
        }
    }

    fn track(&mut self, cb: Callback, conf_change: bool) {
        self.proposals.push_back(Proposal {
            index: self.node.raft.raft_log.last_index(),
            term: self.node.raft.term,
            conf_change,
            proposed_at: Instant::now(),
            cb,
        });
    }

    /// Appends `cmd` to the log if this replica leads (in `term`, when the
    /// caller read its input in that term); `cb` fires once applied.
    pub fn propose(&mut self, cmd: &RaftCmd, term: Option<u64>, cb: Callback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        if term.is_some_and(|t| t != self.node.raft.term) {
            // Leadership was lost and regained since the caller's read: what
            // it decided may rest on state another leader changed meanwhile.
            let _ = cb.send(Err(ProposeError::Stale {
                region_id: self.region.id,
            }));
            return;
        }
        if let Err(e) = self.node.propose(vec![], cmd.encode()) {
            tracing::debug!(region_id = self.region.id, error = %e, "proposal dropped");
            // Raft drops proposals while handing leadership over: the client
            // should back off and look the leader up again, not retry here.
            let _ = cb.send(Err(ProposeError::Stale {
                region_id: self.region.id,
            }));
            return;
        }
        self.track(cb, false);
    }

    /// Starts handing leadership to `peer_id` if that is safe now: it is a
    /// live voter (heard from within an election timeout) whose log is
    /// nearly complete, and no transfer is under way. In a joint state it
    /// must vote in the incoming configuration: never a demoting voter.
    pub fn transfer_leader(&mut self, peer_id: u64) -> bool {
        if !self.is_leader() || peer_id == self.peer_id || self.node.raft.lead_transferee.is_some()
        {
            return false;
        }
        let last = self.node.raft.raft_log.last_index();
        let caught_up = self.is_incoming_voter(peer_id)
            && self
                .node
                .raft
                .prs()
                .get(peer_id)
                .is_some_and(|pr| pr.recent_active && pr.matched + 8 >= last);
        if caught_up {
            // The target campaigns with the force flag, which voters grant inside their
            // lease: this leader's lease ends for the term.
            self.lease.give_up(self.node.raft.term);
            self.node.transfer_leader(peer_id);
        }
        caught_up
    }

    /// Whether `peer_id` votes in the incoming configuration (a voter or an incoming voter;
    /// not a demoting voter, which leaves the voters when the joint state is left).
    fn is_incoming_voter(&self, peer_id: u64) -> bool {
        let in_raft = self
            .node
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters
            .contains(&peer_id);
        let in_region = self.region.peers.iter().any(|p| {
            p.id == peer_id
                && matches!(
                    p.role(),
                    metapb::PeerRole::Voter | metapb::PeerRole::IncomingVoter
                )
        });
        in_raft && in_region
    }

    /// Whether raft's configuration (or the region's roles) is joint.
    fn is_joint(&self) -> bool {
        !self
            .node
            .raft
            .prs()
            .conf()
            .to_conf_state()
            .voters_outgoing
            .is_empty()
            || membership::in_joint(&self.region)
    }

    fn reject(&self, cb: Callback, reason: impl Into<String>) {
        let _ = cb.send(Err(ProposeError::Rejected {
            region_id: self.region.id,
            reason: reason.into(),
        }));
    }

    /// `cb` back if this replica may propose a membership change now; else answers it (not
    /// the leader, or another change still being applied: raft-rs would log a second one as an
    /// empty entry, so it is refused at once).
    fn may_change_membership(&self, cb: Callback) -> Option<Callback> {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return None;
        }
        if self.node.raft.has_pending_conf() {
            self.reject(cb, "another membership change is still being applied");
            return None;
        }
        Some(cb)
    }

    /// Proposes adding, promoting or removing `peer`; `cb` fires once applied.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChangeType,
        peer: metapb::Peer,
        cb: Callback,
    ) {
        let Some(cb) = self.may_change_membership(cb) else {
            return;
        };
        if self.is_joint() {
            self.reject(
                cb,
                "the region is in a joint state: leave it before a single membership change",
            );
            return;
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = peer.id;
        let context = prost::Message::encode_to_vec(&peer);
        if let Err(e) = self.node.propose_conf_change(context, cc) {
            let reason = format!("conf change refused: {e}");
            let _ = cb.send(Err(ProposeError::Rejected {
                region_id: self.region.id,
                reason,
            }));
            return;
        }
        self.track(cb, true);
    }

    /// Proposes a joint-consensus membership change (see [`membership`]): non-empty `changes`
    /// enter a joint state with all of them in one raft change, empty ones leave it. `cb`
    /// fires once applied. Refused at once: a replica that does not lead, another change still
    /// being applied, entering while joint, leaving while not, demoting the leader itself,
    /// removing a voter (it must be demoted first) and whatever else the region's metadata
    /// makes invalid. A leader that is itself a demoting voter does not leave the joint state
    /// (it would lead as a learner): it hands leadership to a caught-up voter of the new
    /// configuration and refuses, so the request is made again to the new leader.
    pub fn propose_conf_change_v2(&mut self, changes: Vec<membership::PeerChange>, cb: Callback) {
        let Some(cb) = self.may_change_membership(cb) else {
            return;
        };
        let joint = self.is_joint();
        if changes.is_empty() {
            if !joint {
                self.reject(
                    cb,
                    "the region is not in a joint state: there is nothing to leave",
                );
                return;
            }
            let me = self.region.peers.iter().find(|p| p.id == self.peer_id);
            if me.is_some_and(|p| p.role() == metapb::PeerRole::DemotingVoter) {
                let to = self.hand_over_leadership();
                let reason = match to {
                    Some(to) => format!(
                        "the leader is a demoting voter and cannot leave the joint state: \
                         leadership is being handed to peer {to}; ask it again"
                    ),
                    None => "the leader is a demoting voter and cannot leave the joint state: \
                             no caught-up voter of the new configuration to hand leadership to \
                             yet"
                    .to_string(),
                };
                self.reject(cb, reason);
                return;
            }
        } else {
            if joint {
                self.reject(
                    cb,
                    "the region is already in a joint state: leave it before another \
                     membership change",
                );
                return;
            }
            if let Some((_, p)) = changes.iter().find(|(t, p)| {
                p.id == self.peer_id
                    && matches!(
                        t,
                        ConfChangeType::AddLearnerNode | ConfChangeType::RemoveNode
                    )
            }) {
                self.reject(
                    cb,
                    format!(
                        "peer {} is the leader: it cannot be demoted or removed; transfer \
                         leadership first",
                        p.id
                    ),
                );
                return;
            }
            if let Err(reason) = membership::enter_joint(&self.region, &changes) {
                self.reject(cb, reason.to_string());
                return;
            }
        }
        let cc = membership::conf_change_v2(&changes);
        let context = membership::encode_context(&changes);
        if let Err(e) = self.node.propose_conf_change(context, cc) {
            self.reject(cb, format!("conf change refused: {e}"));
            return;
        }
        self.track(cb, true);
    }

    /// Starts handing leadership to a caught-up voter of the incoming configuration; the
    /// peer it goes to, if any.
    pub(super) fn hand_over_leadership(&mut self) -> Option<u64> {
        if let Some(to) = self.node.raft.lead_transferee {
            return Some(to);
        }
        let mut candidates: Vec<u64> = self.node.raft.prs().conf().to_conf_state().voters;
        candidates.sort_unstable();
        let me = self.peer_id;
        candidates
            .into_iter()
            .filter(|id| *id != me)
            .find(|id| self.transfer_leader(*id))
    }

    /// Queues a linearizable read; `cb` fires once this replica, as leader,
    /// has applied everything committed when the read arrived.
    pub fn read_index(&mut self, cb: ReadCallback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        if self.in_lease(Instant::now()) {
            let _ = cb.send(Ok(self.node.raft.term));
            return;
        }
        self.reads_to_send.push(cb);
    }

    /// Whether this leader may answer a read from what it has applied, without asking a
    /// quorum: it holds the lease, has applied an entry of its term, installs no snapshot
    /// and hands no leadership over.
    pub fn in_lease(&self, now: Instant) -> bool {
        self.lease_bound().is_some_and(|(_, until)| now < until)
    }

    /// The term and end of the lease this replica may answer reads from, if every condition
    /// of [`Peer::in_lease`] but the time holds.
    fn lease_bound(&self) -> Option<(u64, Instant)> {
        let term = self.node.raft.term;
        let ready = self.is_leader()
            && self.applied_term == term
            && self.installing.is_none()
            && self.node.raft.lead_transferee.is_none();
        ready
            .then(|| self.lease.until(term))
            .flatten()
            .map(|until| (term, until))
    }

    /// Publishes the lease for reads on request threads: called by the raftstore loop before
    /// it sends what a round produced and after it applies.
    pub fn publish_lease(&self) {
        self.local_lease.publish(self.lease_bound());
    }

    /// Withdraws the published lease (the replica is going away).
    pub fn withdraw_lease(&self) {
        self.local_lease.publish(None);
    }

    /// Refuses votes until `until` (see `refuse_votes_until`).
    pub fn refuse_votes_until(&mut self, until: Instant) {
        self.refuse_votes_until = Some(until);
    }

    /// Queues a replica read (this replica a follower or learner): `cb` fires once this
    /// replica has applied everything the leader had committed when it confirmed the read, or
    /// with the lock the leader's check met (`ProposeError::ReplicaReadLocked`). Each is its own
    /// read index request, carrying its check to the leader ([`ReadContext`]).
    pub fn replica_read_index(&mut self, check: kvrpcpb::ReadIndexRequest, cb: ReadCallback) {
        if self.node.raft.leader_id == raft::INVALID_ID {
            // raft-rs would drop the request: say so now, the client tries another replica.
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        let id = self.send_read_index(ReadBody::Check(check));
        self.reads_sent.push_back(SentRead {
            id,
            term: self.node.raft.term,
            sent_at: Instant::now(),
            replica: true,
            cbs: vec![cb],
        });
    }

    /// Follower: asks the leader for its resolved ts (answered at once, not through a quorum
    /// round; see `read_progress`). Nothing to do without a known leader.
    pub fn request_safe_ts(&mut self) {
        if self.is_leader()
            || self.node.raft.leader_id == raft::INVALID_ID
            || !self.is_initialized()
        {
            return;
        }
        self.send_read_index(ReadBody::SafeTsRequest);
    }

    /// Hands raft-rs a read index request under this replica's next read id; the id.
    fn send_read_index(&mut self, body: ReadBody) -> u64 {
        let id = self.next_read_id;
        self.next_read_id += 1;
        let ctx = ReadContext {
            peer_id: self.peer_id,
            id,
            body,
        };
        self.node.read_index(ctx.encode());
        id
    }

    /// Takes the resolved ts the leader sent once this replica has applied what it goes with.
    fn advance_safe_ts(&mut self) {
        let applied = self.ps.apply_state.applied_index;
        while self
            .pending_safe_ts
            .front()
            .is_some_and(|(index, _)| *index <= applied)
        {
            let (_, ts) = self.pending_safe_ts.pop_front().expect("front exists");
            self.progress.advance_safe_ts(ts);
        }
    }

    /// As leader, answers a follower's ask for the resolved ts: a `MsgReadIndexResp` carrying
    /// it, with the index it goes with (nothing while none is resolved yet).
    fn answer_safe_ts(&mut self, msg: &Message, ctx: &ReadContext) {
        let Some((ts, index)) = self.progress.last_resolved() else {
            return;
        };
        let answer = ReadContext {
            body: ReadBody::SafeTs(ts),
            ..ctx.clone()
        };
        self.send_read_answer(msg.from, answer, index);
    }

    /// Sends a read index answer of our own making to `to` (raft-rs's follower takes a
    /// `MsgReadIndexResp` with one entry holding the context as a read state).
    fn send_read_answer(&mut self, to: u64, ctx: ReadContext, index: u64) {
        let entry = Entry {
            data: ctx.encode().into(),
            ..Default::default()
        };
        let mut resp = Message {
            from: self.peer_id,
            to,
            term: self.node.raft.term,
            index,
            entries: vec![entry].into(),
            ..Default::default()
        };
        resp.set_msg_type(MessageType::MsgReadIndexResp);
        self.node.raft.msgs.push(resp);
    }

    /// Sends one read-index request for every read queued this round.
    pub fn flush_reads(&mut self) {
        // raft-rs silently drops read-index requests until the leader has
        // committed an entry of its own term; keep them queued until then.
        if self.reads_to_send.is_empty() || !self.node.raft.commit_to_current_term() {
            return;
        }
        let sent_at = Instant::now();
        let id = self.send_read_index(ReadBody::Plain);
        self.reads_sent.push_back(SentRead {
            id,
            term: self.node.raft.term,
            sent_at,
            replica: false,
            cbs: std::mem::take(&mut self.reads_to_send),
        });
    }

    /// As leader, before raft-rs answers a replica's read index request: raises `max_ts` to
    /// the read's start ts and checks the in-memory locks of its ranges. A lock the read must
    /// see is answered at once with the lock (a `MsgReadIndexResp` carrying it, index 0), and
    /// the request is not stepped; so is an ask for the resolved ts. True when answered here.
    fn check_replica_read(&mut self, msg: &Message) -> bool {
        let Some(ctx) = msg
            .entries
            .first()
            .and_then(|e| ReadContext::decode(&e.data))
        else {
            return false;
        };
        let check = match &ctx.body {
            ReadBody::Check(check) if check.start_ts != 0 => check,
            ReadBody::SafeTsRequest => {
                self.answer_safe_ts(msg, &ctx);
                return true;
            }
            _ => return false,
        };
        // What a leader read does before its snapshot, for the follower's read.
        self.cm.update_max_ts(check.start_ts);
        let found = check.ranges.iter().find_map(|r| {
            let upper = (!r.end_key.is_empty()).then_some(r.end_key.as_slice());
            percolator::read_check_range(&self.cm, None, check.start_ts, &r.start_key, upper)
                .err()
                .and_then(|e| e.locked)
        });
        let Some(lock) = found else {
            return false;
        };
        let answer = ctx.locked(lock);
        self.send_read_answer(msg.from, answer, 0);
        true
    }

    /// Records read indexes raft confirmed.
    pub fn on_read_states(&mut self, states: Vec<raft::ReadState>) {
        for rs in states {
            let Some(ctx) = ReadContext::decode(&rs.request_ctx) else {
                continue;
            };
            if ctx.peer_id != self.peer_id {
                continue;
            }
            if let ReadBody::SafeTs(ts) = ctx.body {
                if self
                    .pending_safe_ts
                    .back()
                    .is_none_or(|(i, t)| rs.index >= *i && ts >= *t)
                {
                    self.pending_safe_ts.push_back((rs.index, ts));
                }
                self.advance_safe_ts();
                continue;
            }
            if let ReadBody::Locked(lock) = ctx.body {
                // Answered ahead of the others: only this one is done.
                if let Some(i) = self.reads_sent.iter().position(|r| r.id == ctx.id) {
                    let read = self.reads_sent.remove(i).expect("position is in range");
                    let err = ProposeError::ReplicaReadLocked(Box::new(lock));
                    for cb in read.cbs {
                        let _ = cb.send(Err(err.clone()));
                    }
                }
                continue;
            }
            while let Some(front) = self.reads_sent.front() {
                if front.id > ctx.id {
                    break;
                }
                let read = self.reads_sent.pop_front().expect("front exists");
                if read.id == ctx.id {
                    // A quorum answered heartbeats sent after `sent_at` in `term`.
                    if !read.replica && read.term == self.node.raft.term && self.is_leader() {
                        self.lease.renew(read.term, read.sent_at);
                    }
                    self.reads_ready.push_back(ReadyRead {
                        index: rs.index,
                        term: read.term,
                        replica: read.replica,
                        cbs: read.cbs,
                    });
                } else {
                    // Raft dropped that request (e.g. no commit in this term yet).
                    self.fail_read(read.cbs);
                }
            }
        }
        self.complete_reads();
    }

    fn fail_read(&self, cbs: Vec<ReadCallback>) {
        for cb in cbs {
            let _ = cb.send(Err(ProposeError::ReadIndexNotReady {
                region_id: self.region.id,
            }));
        }
    }

    /// Fails the reads that waited longer than [`READ_INDEX_TIMEOUT`] for their read index.
    pub fn expire_reads(&mut self, now: Instant) {
        while self
            .reads_sent
            .front()
            .is_some_and(|r| now.duration_since(r.sent_at) >= READ_INDEX_TIMEOUT)
        {
            let read = self.reads_sent.pop_front().expect("front exists");
            self.fail_read(read.cbs);
        }
    }

    /// Answers reads whose read index has been applied: a leader's while it still leads in
    /// the term it confirmed them in, a replica's in any case (the index is a point the
    /// leader confirmed after the read arrived).
    pub fn complete_reads(&mut self) {
        if self.installing.is_some() {
            return;
        }
        self.advance_safe_ts();
        let applied = self.ps.apply_state.applied_index;
        while self.reads_ready.front().is_some_and(|r| r.index <= applied) {
            let read = self.reads_ready.pop_front().expect("front exists");
            let res = if read.replica {
                Ok(self.node.raft.term)
            } else if read.term == self.node.raft.term && self.is_leader() {
                Ok(read.term)
            } else {
                Err(self.not_leader())
            };
            for cb in read.cbs {
                let _ = cb.send(res.clone());
            }
        }
    }

    /// Decodes a committed normal entry (None for a new leader's empty entry).
    pub fn entry_cmd(&self, entry: &Entry) -> Option<RaftCmd> {
        if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
            return None;
        }
        match RaftCmd::decode(&entry.data) {
            Ok(cmd) => Some(cmd),
            Err(e) => {
                tracing::error!(region_id = self.region.id, index = entry.index, error = %e, "skipping undecodable entry");
                None
            }
        }
    }

    /// Answers the proposals of `entry` once it is applied with `result`.
    pub fn on_applied(&mut self, entry: &Entry, result: Result<(), ProposeError>) {
        self.applied_term = entry.term;
        if entry.get_entry_type() != EntryType::EntryNormal {
            // The quorum that acknowledged earlier sends may not be one of the new
            // membership.
            self.lease.expire(Instant::now());
        }
        while let Some(front) = self.proposals.front() {
            if front.index > entry.index {
                break;
            }
            let p = self.proposals.pop_front().expect("front exists");
            let ignored = p.conf_change && entry.get_entry_type() == EntryType::EntryNormal;
            let res = if p.index == entry.index && p.term == entry.term && ignored {
                Err(ProposeError::Rejected {
                    region_id: self.region.id,
                    reason: "membership change ignored by raft: another change is still pending"
                        .into(),
                })
            } else if p.index == entry.index && p.term == entry.term {
                if !p.conf_change && entry.term == self.node.raft.term && self.is_leader() {
                    // Committed: a quorum received it after it was proposed.
                    self.lease.renew(entry.term, p.proposed_at);
                }
                result.clone()
            } else {
                Err(ProposeError::Stale {
                    region_id: self.region.id,
                })
            };
            let _ = p.cb.send(res);
        }
    }

    /// Restarts the silence clocks (on becoming leader).
    pub fn reset_heard(&mut self) {
        let now = Instant::now();
        for t in self.last_heard.values_mut() {
            *t = now;
        }
    }

    /// Fails every waiting proposal and read: the replica is going away (removed, store
    /// stopping), so no entry will be applied here any more.
    pub fn fail_pending(&mut self) {
        let err = self.not_leader();
        for p in self.proposals.drain(..) {
            let _ = p.cb.send(Err(err.clone()));
        }
        self.fail_reads();
    }

    /// Fails every waiting read, when leadership is lost. Proposals stay: an entry this
    /// leader appended may still be committed by the next one, and its proposer must hear
    /// the truth when the entry at that index is applied here (success if it is the same
    /// entry, `Stale` if another leader replaced it). Failing it now would have the client
    /// retry a write that may already be applied (a compare-and-swap would then report that
    /// it did not swap).
    pub fn fail_reads(&mut self) {
        let err = self.not_leader();
        let reads = self.reads_to_send.drain(..);
        let sent = self.reads_sent.drain(..).flat_map(|r| r.cbs);
        let ready = self.reads_ready.drain(..).flat_map(|r| r.cbs);
        for cb in reads.chain(sent).chain(ready) {
            let _ = cb.send(Err(err.clone()));
        }
    }

    /// Steps a message from another replica.
    pub fn step(&mut self, from: metapb::Peer, msg: Message) {
        self.peer_cache.insert(from.id, from);
        let now = Instant::now();
        self.last_heard.insert(from.id, now);
        if self.refuse_votes_until.is_some_and(|until| now < until)
            && matches!(
                msg.get_msg_type(),
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            )
            && msg.context != raft::CAMPAIGN_TRANSFER
        {
            tracing::debug!(
                region_id = self.region.id,
                from = from.id,
                "vote refused: just restarted"
            );
            return;
        }
        if msg.get_msg_type() == MessageType::MsgReadIndex
            && self.is_leader()
            && self.check_replica_read(&msg)
        {
            return;
        }
        if let Err(e) = self.node.step(msg) {
            tracing::debug!(region_id = self.region.id, error = %e, "raft message refused");
        }
    }

    /// Wraps raft messages for the transport (those to unknown peers are dropped).
    pub fn wrap_messages(&self, store_id: u64, msgs: Vec<Message>) -> Vec<storepb::RaftMessage> {
        let from = metapb::Peer {
            id: self.peer_id,
            store_id,
            ..Default::default()
        };
        msgs.into_iter()
            .filter_map(|m| {
                let to = self.peer_by_id(m.to)?;
                Some(storepb::RaftMessage {
                    region_id: self.region.id,
                    from_peer: Some(from),
                    to_peer: Some(to),
                    region_epoch: self.region.region_epoch,
                    message: m.write_to_bytes().ok()?,
                    is_tombstone: false,
                    is_snapshot: m.get_msg_type() == MessageType::MsgSnapshot,
                    start_key: self.region.start_key.clone(),
                    end_key: self.region.end_key.clone(),
                })
            })
            .collect()
    }

    /// Peers that need a snapshot to catch up (TiKV's `pending_peers`).
    pub fn pending_peers(&self) -> Vec<metapb::Peer> {
        if !self.is_leader() {
            return vec![];
        }
        let truncated = self.ps.apply_state.truncated_index;
        self.node
            .raft
            .prs()
            .iter()
            .filter(|(id, pr)| **id != self.peer_id && pr.matched < truncated)
            .filter_map(|(id, _)| self.peer_by_id(*id))
            .collect()
    }

    /// Peers not heard from for `after`, with how long (seconds).
    pub fn down_peers(&self, after: Duration) -> Vec<(metapb::Peer, u64)> {
        if !self.is_leader() {
            return vec![];
        }
        let now = Instant::now();
        self.region
            .peers
            .iter()
            .filter(|p| p.id != self.peer_id)
            .filter_map(|p| {
                let silent = self
                    .last_heard
                    .get(&p.id)
                    .map(|t| now.duration_since(*t))
                    .unwrap_or_default();
                (silent > after).then_some((*p, silent.as_secs()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::raftstore::peer_storage;
    use crate::raftstore::test_cluster::region_on;

    /// A replica of `region` (peer 101 on store 1), on an engine kept in `dir`.
    fn peer_of(dir: &tempfile::TempDir, region: metapb::Region) -> Peer {
        let engine = Engine::open(dir.path()).unwrap();
        engine
            .write(&peer_storage::bootstrap_writes(&region).unwrap(), true)
            .unwrap();
        let ps = peer_storage::load(&engine, &region).unwrap();
        let (gen_tx, _gen_rx) = crossbeam_channel::unbounded();
        let ctx = PeerCtx {
            cfg: crate::raftstore::RaftStoreConfig::default().peer,
            logger: crate::raftstore::logger::raft_logger(),
            gen_tx,
            max_lease: Duration::ZERO,
            cm: ConcurrencyManager::new(0),
        };
        Peer::new(region, 101, ps, &ctx).unwrap()
    }

    /// Whether `p` has answered a vote request (its ready carries a vote response).
    fn answered_vote(p: &mut Peer) -> bool {
        if !p.node.has_ready() {
            return false;
        }
        let mut rd = p.node.ready();
        let answered = rd
            .take_messages()
            .into_iter()
            .chain(rd.take_persisted_messages())
            .any(|m| {
                matches!(
                    m.get_msg_type(),
                    MessageType::MsgRequestVoteResponse | MessageType::MsgRequestPreVoteResponse
                )
            });
        let mut light = p.node.advance(rd);
        p.node.advance_apply();
        let _ = light.take_messages();
        answered
    }

    fn vote_request(kind: MessageType, term: u64, context: &[u8]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = 102;
        m.to = 101;
        m.term = term;
        m.log_term = 100;
        m.index = 100;
        m.context = context.to_vec().into();
        m
    }

    #[test]
    fn a_replica_just_loaded_refuses_votes_but_not_a_leadership_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = peer_of(&dir, region_on(1, &[1, 2, 3]));
        let candidate = metapb::Peer {
            id: 102,
            store_id: 2,
            ..Default::default()
        };
        p.refuse_votes_until(Instant::now() + Duration::from_secs(3600));
        for kind in [MessageType::MsgRequestPreVote, MessageType::MsgRequestVote] {
            p.step(candidate, vote_request(kind, 7, b""));
            assert!(
                !answered_vote(&mut p),
                "{kind:?} answered inside the window"
            );
        }
        p.step(
            candidate,
            vote_request(MessageType::MsgRequestVote, 8, raft::CAMPAIGN_TRANSFER),
        );
        assert!(answered_vote(&mut p), "a transfer's vote must be answered");
        p.refuse_votes_until(Instant::now());
        p.step(candidate, vote_request(MessageType::MsgRequestVote, 9, b""));
        assert!(answered_vote(&mut p), "votes are answered after the window");
    }

    #[test]
    fn the_snapshot_builder_sees_an_applied_index_only_once_published() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = peer_of(&dir, region_on(1, &[1]));
        let before = p.src.lock().applied_index;
        // Applying entries moves the raft thread's view only: their data is
        // not in the engine until the batch is written.
        p.set_applied(before + 3);
        let mut split = p.region.clone();
        split.end_key = b"m".to_vec();
        p.set_region(split.clone());
        assert_eq!(p.src.lock().applied_index, before);
        assert_ne!(p.src.lock().region, split);
        p.publish();
        assert_eq!(p.src.lock().applied_index, before + 3);
        assert_eq!(p.src.lock().region, split);
    }
}
