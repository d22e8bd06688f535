//! The raft thread of a placement member.
//!
//! One loop drives the member's raft-rs [`RawNode`]: it takes proposals and peer messages
//! from a channel, ticks every [`TICK`], and handles each ready: messages out, the snapshot and
//! new entries persisted with the hard state and the applied records in one synced RocksDB
//! write, committed entries applied (metadata ops, configuration changes), then proposals
//! answered (a membership change raft-rs dropped, as a failure). Everything this thread does
//! blocks on disk, so nothing here runs on the async runtime.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use prost::Message as _;
use proto::placementpb::{MemberInfo, MetaOps};
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot};

use super::log::{self, MetaLog, MetaRaftStorage, MetaSnapshots, Restored};
use super::transport::Transport;
use super::{Event, Shared};
use crate::error::{Error, Result};
use crate::storage::{apply_ops, MetaStore};

/// The raft tick.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks without a heartbeat before a follower campaigns (randomised up to twice this).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between leader heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// How often the leader confirms its leadership with a quorum (a ReadIndex round) to renew
/// its lease.
const LEASE_PROBE: Duration = Duration::from_millis(200);
/// How long a confirmation holds: a follower that heard from the leader does not vote for
/// anyone else for at least one election timeout (check-quorum), so no other member leads
/// before that; the margin covers clock-rate differences.
const LEASE: Duration = Duration::from_millis((ELECTION_TICKS as u64) * 100 - 200);
/// Log entries kept behind the applied index when compacting.
const KEEP_ENTRIES: u64 = 2_000;
/// Compact once this many applied entries are in the log.
const COMPACT_AFTER: u64 = 20_000;

/// Why a membership change cannot be made now.
const CHANGE_IN_PROGRESS: &str = "another membership change is still in progress";

/// The answer to a proposal once its entry is applied (or lost).
pub type Ack = oneshot::Sender<Result<()>>;

/// What the server asks of the raft thread.
pub enum Msg {
    /// Replicate a metadata change; `ack` answers once it is applied here.
    Propose {
        data: Vec<u8>,
        ack: Option<Ack>,
    },
    /// Messages from peers.
    Step(Vec<Message>),
    /// Messages to `to` were lost (a failed call, a full queue, no address): raft probes
    /// the peer again rather than stream to it blindly.
    Unreachable {
        to: u64,
    },
    /// A snapshot sent to `to` was delivered (the peer accepted it) or lost: raft resumes
    /// replication, or sends another.
    SnapshotStatus {
        to: u64,
        delivered: bool,
    },
    /// Hand leadership to `to`.
    TransferLeader {
        to: u64,
    },
    /// Add (with its info as context) or remove a voter.
    ConfChange {
        change: ConfChangeType,
        member: MemberInfo,
        ack: Ack,
    },
    Close,
}

/// A proposal waiting for its entry to be applied.
struct Pending {
    index: u64,
    term: u64,
    /// A membership change: raft-rs may have turned its entry into an empty one.
    conf_change: bool,
    ack: Ack,
}

pub struct Node {
    raw: RawNode<MetaRaftStorage>,
    log: MetaLog,
    store: MetaStore,
    applied: Arc<AtomicU64>,
    shared: Arc<Shared>,
    transport: Transport,
    events: mpsc::UnboundedSender<Event>,
    /// Proposals waiting for their entry.
    pending: VecDeque<Pending>,
    /// The term whose leadership was announced, 0 when following.
    announced: u64,
    /// Base of the lease probes' timestamps (their ReadIndex context).
    epoch: Instant,
    /// When the last lease probe was sent.
    last_probe: Option<Instant>,
}

impl Node {
    pub fn new(
        restored: Restored,
        store: MetaStore,
        shared: Arc<Shared>,
        transport: Transport,
        events: mpsc::UnboundedSender<Event>,
        logger: &slog::Logger,
    ) -> Result<Node> {
        let applied = Arc::new(AtomicU64::new(restored.applied));
        let cfg = raft::Config {
            id: shared.id(),
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: restored.applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        let storage = MetaRaftStorage {
            log: restored.log.reader(),
            snapshots: MetaSnapshots {
                store: store.clone(),
                applied: applied.clone(),
            },
        };
        let raw = RawNode::new(&cfg, storage, logger)?;
        shared.set_voters(
            restored
                .log
                .mem()
                .initial_state()?
                .conf_state
                .voters
                .clone(),
        );
        Ok(Node {
            raw,
            log: restored.log,
            store,
            applied,
            shared,
            transport,
            events,
            pending: VecDeque::new(),
            announced: 0,
            epoch: Instant::now(),
            last_probe: None,
        })
    }

    /// Runs until [`Msg::Close`] or every sender is gone (`Ok`), or until the raft state can
    /// no longer be persisted (the error): the member then serves nothing more from memory
    /// that the disk does not hold, and the caller stops the process ([`crate::writer`]).
    pub fn run(mut self, rx: Receiver<Msg>) -> Result<()> {
        let outcome = self.drive(&rx);
        self.shared.set_role(0, self.raw.raft.term, false);
        for p in self.pending.drain(..) {
            let _ = p.ack.send(Err(Error::WriterStopped));
        }
        outcome
    }

    fn drive(&mut self, rx: &Receiver<Msg>) -> Result<()> {
        // A lone voter need not wait for an election timeout.
        if self.shared.voters() == vec![self.shared.id()] {
            let _ = self.raw.campaign();
        }
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut closing = false;
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    closing |= self.handle(msg);
                    for msg in rx.try_iter().take(4096) {
                        closing |= self.handle(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => closing = true,
            }
            if self.store.faults().take_raft_panic() {
                panic!("injected fault: the placement raft thread panics");
            }
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick = Instant::now() + TICK;
            }
            self.probe_lease();
            self.on_ready()?;
            self.publish_role();
            if let Err(e) = self.maybe_compact() {
                tracing::warn!(error = %e, "raft log compaction failed");
            }
            if closing {
                return Ok(());
            }
        }
    }

    /// Handles one request; true when the thread should stop.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Propose { data, ack } => {
                let last = self.raw.raft.raft_log.last_index();
                match self.raw.propose(vec![], data) {
                    Ok(()) if self.raw.raft.raft_log.last_index() > last => {
                        if let Some(ack) = ack {
                            self.wait_for_last_entry(false, ack);
                        }
                    }
                    _ => {
                        if let Some(ack) = ack {
                            let _ = ack.send(Err(self.shared.not_leader()));
                        }
                    }
                }
            }
            Msg::Step(msgs) => {
                for m in msgs {
                    if let Err(e) = self.raw.step(m) {
                        tracing::debug!(error = %e, "raft message dropped");
                    }
                }
            }
            Msg::Unreachable { to } => self.raw.report_unreachable(to),
            Msg::SnapshotStatus { to, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    tracing::info!(
                        to,
                        "a snapshot to a placement member was lost; it is resent"
                    );
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(to, status);
            }
            Msg::TransferLeader { to } => {
                // The transferee may be elected at once, without waiting for this leader's
                // lease to run out: stop handing out timestamps before it can be.
                self.shared.revoke_lease();
                self.raw.transfer_leader(to);
                let handing_over = self.raw.raft.lead_transferee.is_some();
                self.shared.set_handing_over(handing_over);
            }
            Msg::ConfChange {
                change,
                member,
                ack,
            } => self.propose_conf_change(change, member, ack),
            Msg::Close => return true,
        }
        false
    }

    /// Answers `ack` once the entry just appended (the last one) is applied.
    fn wait_for_last_entry(&mut self, conf_change: bool, ack: Ack) {
        self.pending.push_back(Pending {
            index: self.raw.raft.raft_log.last_index(),
            term: self.raw.raft.term,
            conf_change,
            ack,
        });
    }

    fn propose_conf_change(&mut self, change: ConfChangeType, member: MemberInfo, ack: Ack) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = ack.send(Err(self.shared.not_leader()));
            return;
        }
        if self.raw.raft.has_pending_conf() {
            let _ = ack.send(Err(Error::Membership(CHANGE_IN_PROGRESS.into())));
            return;
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(change);
        cc.node_id = member.id;
        let last = self.raw.raft.raft_log.last_index();
        match self.raw.propose_conf_change(member.encode_to_vec(), cc) {
            Ok(()) if self.raw.raft.raft_log.last_index() > last => {
                self.wait_for_last_entry(true, ack);
            }
            Ok(()) => {
                let _ = ack.send(Err(Error::Membership(CHANGE_IN_PROGRESS.into())));
            }
            Err(e) => {
                let _ = ack.send(Err(Error::Membership(e.to_string())));
            }
        }
    }

    /// A leader starts a ReadIndex round every [`LEASE_PROBE`]; its context is the moment it
    /// was sent, and the lease runs from there once a quorum confirms it ([`Node::on_ready`]).
    fn probe_lease(&mut self) {
        if self.raw.raft.state != StateRole::Leader {
            self.last_probe = None;
            return;
        }
        if self.raw.raft.lead_transferee.is_some() {
            // No lease while handing over; rounds sent until the transfer ends never count.
            self.shared.revoke_lease();
            self.last_probe = None;
            return;
        }
        let now = Instant::now();
        if self.last_probe.is_some_and(|t| now - t < LEASE_PROBE) {
            return;
        }
        self.last_probe = Some(now);
        let sent = (now - self.epoch).as_nanos() as u64;
        self.raw.read_index(sent.to_be_bytes().to_vec());
    }

    fn renew_lease(&self, states: &[raft::ReadState]) {
        if self.raw.raft.lead_transferee.is_some() {
            return;
        }
        for rs in states {
            if let Ok(bytes) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) {
                let sent = self.epoch + Duration::from_nanos(u64::from_be_bytes(bytes));
                self.shared.extend_lease(sent, sent + LEASE);
            }
        }
    }

    fn on_ready(&mut self) -> Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.renew_lease(&ready.take_read_states());
        self.transport.send(ready.take_messages());
        // One write for everything this ready persists: a snapshot with the hard state that
        // goes with it, so a failure part-way never leaves one without the other.
        let mut batch = WriteBatch::default();
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            log::install_snapshot(&self.store, &self.log, &mut batch, &snap)?;
            let meta = snap.get_metadata();
            self.applied.store(meta.index, Ordering::Release);
            self.shared.set_voters(meta.get_conf_state().voters.clone());
            tracing::info!(index = meta.index, "placement member installs a snapshot");
        }
        let mut acks = Vec::new();
        self.apply(ready.take_committed_entries(), &mut batch, &mut acks)?;
        log::append(&self.log, &mut batch, ready.entries())?;
        if let Some(hs) = ready.hs() {
            log::set_hard_state(&self.log, &mut batch, hs)?;
        }
        let sync =
            !ready.snapshot().is_empty() || !ready.entries().is_empty() || ready.hs().is_some();
        if !batch.is_empty() {
            self.store.write_batch(batch, sync)?;
        }
        self.answer(acks);
        self.transport.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        let mut batch = WriteBatch::default();
        if let Some(commit) = light.commit_index() {
            let mut hs = self.log.mem().rl().hard_state().clone();
            hs.commit = commit;
            log::set_hard_state(&self.log, &mut batch, &hs)?;
        }
        self.transport.send(light.take_messages());
        let mut acks = Vec::new();
        self.apply(light.take_committed_entries(), &mut batch, &mut acks)?;
        if !batch.is_empty() {
            self.store.write_batch(batch, false)?;
        }
        self.answer(acks);
        self.raw.advance_apply();
        Ok(())
    }

    /// Applies committed entries into `batch`; the answers go out once it is written.
    fn apply(
        &mut self,
        entries: Vec<Entry>,
        batch: &mut WriteBatch,
        acks: &mut Vec<(Ack, Result<()>)>,
    ) -> Result<()> {
        let Some(last) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        for entry in entries {
            let outcome = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => Ok(()),
                EntryType::EntryNormal => match MetaOps::decode(&entry.data[..]) {
                    Ok(ops) => {
                        apply_ops(batch, &ops);
                        Ok(())
                    }
                    Err(e) => {
                        tracing::error!(index = entry.index, error = %e, "undecodable metadata entry skipped");
                        Err(Error::Corrupt {
                            key: format!("raft entry {}", entry.index),
                            reason: e.to_string(),
                        })
                    }
                },
                EntryType::EntryConfChange => self.apply_conf_change(&entry, batch),
                EntryType::EntryConfChangeV2 => Ok(()),
            };
            self.answer_applied(&entry, outcome, acks);
        }
        log::set_applied(batch, last);
        self.applied.store(last, Ordering::Release);
        Ok(())
    }

    /// Answers the proposals waiting for entries up to `entry` (just applied, with
    /// `outcome`): entries they wanted were overwritten by another leader's (not leader any
    /// more), or were membership changes raft-rs turned into empty entries (refused).
    fn answer_applied(
        &mut self,
        entry: &Entry,
        outcome: Result<()>,
        acks: &mut Vec<(Ack, Result<()>)>,
    ) {
        let outcome = outcome.map_err(|e| e.to_string());
        while let Some(p) = self.pending.front() {
            if p.index > entry.index {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let result = if p.index != entry.index || p.term != entry.term {
                Err(self.shared.not_leader())
            } else if p.conf_change && entry.get_entry_type() != EntryType::EntryConfChange {
                Err(Error::Membership(format!(
                    "the change was dropped by raft: {CHANGE_IN_PROGRESS}"
                )))
            } else {
                match (&outcome, p.conf_change) {
                    (Ok(()), _) => Ok(()),
                    (Err(e), true) => Err(Error::Membership(e.clone())),
                    (Err(e), false) => Err(Error::WriteFailed(e.clone())),
                }
            };
            acks.push((p.ack, result));
        }
    }

    fn apply_conf_change(&mut self, entry: &Entry, batch: &mut WriteBatch) -> Result<()> {
        let cc = ConfChange::parse_from_bytes(&entry.data).map_err(|e| Error::Corrupt {
            key: format!("raft entry {}", entry.index),
            reason: e.to_string(),
        })?;
        // raft-rs carries a proposal's context on the entry.
        if let Ok(info) = MemberInfo::decode(&entry.context[..]) {
            self.shared.learn(&info);
        }
        let cs = self.raw.apply_conf_change(&cc)?;
        log::set_conf_state(&self.log, batch, &cs)?;
        self.shared.set_voters(cs.voters.clone());
        tracing::info!(
            change = ?cc.get_change_type(),
            member_id = cc.node_id,
            voters = ?cs.voters,
            "placement membership changed"
        );
        Ok(())
    }

    fn answer(&self, acks: Vec<(Ack, Result<()>)>) {
        for (ack, result) in acks {
            let _ = ack.send(result);
        }
    }

    /// Publishes the role, and announces leadership once everything committed before this
    /// term is applied here.
    fn publish_role(&mut self) {
        let raft = &self.raw.raft;
        let leading = raft.state == StateRole::Leader;
        self.shared.set_role(raft.leader_id, raft.term, leading);
        self.shared
            .set_handing_over(leading && raft.lead_transferee.is_some());
        if !leading {
            if self.announced != 0 {
                self.announced = 0;
                let _ = self.events.send(Event::Follow);
            }
            return;
        }
        let caught_up = raft.commit_to_current_term()
            && self.applied.load(Ordering::Acquire) >= raft.raft_log.committed;
        if self.announced != raft.term && caught_up {
            let term = raft.term;
            match self.store.load() {
                Ok(stored) => {
                    self.announced = term;
                    tracing::info!(term, "placement member leads");
                    let _ = self.events.send(Event::Lead {
                        term,
                        stored: Box::new(stored),
                    });
                }
                Err(e) => tracing::error!(error = %e, "cannot load metadata to lead"),
            }
        }
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let applied = self.applied.load(Ordering::Acquire);
        let first = self.log.mem().first_index()?;
        if applied > first + COMPACT_AFTER {
            log::compact(&self.log, &self.store, applied - KEEP_ENTRIES)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
