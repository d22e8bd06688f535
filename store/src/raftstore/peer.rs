//! One region replica: a raft-rs [`RawNode`] plus its durable state and the
//! proposals waiting for their entries to apply.
//!
//! The peer is plain state: the driver (`driver.rs`) feeds it ticks and
//! proposals and collects its readies; nothing here blocks or spawns.

use std::collections::VecDeque;

use raft::prelude::Entry;
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};
use tokio::sync::oneshot;

use super::cmd::RaftCmd;
use super::peer_storage::{PeerStorage, StorageError};
use super::ProposeError;
use proto::metapb;

pub type Callback = oneshot::Sender<Result<(), ProposeError>>;

struct Proposal {
    index: u64,
    term: u64,
    cb: Callback,
}

pub struct Peer {
    pub region: metapb::Region,
    pub peer_id: u64,
    pub node: RawNode<MemStorage>,
    pub ps: PeerStorage,
    proposals: VecDeque<Proposal>,
}

/// Raft timing and flow-control knobs of every region replica.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: usize,
}

impl Peer {
    pub fn new(
        region: metapb::Region,
        peer_id: u64,
        ps: PeerStorage,
        cfg: &PeerConfig,
        logger: &slog::Logger,
    ) -> Result<Self, StorageError> {
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
        let node = RawNode::new(&raft_cfg, ps.mem.clone(), logger)?;
        Ok(Peer {
            region,
            peer_id,
            node,
            ps,
            proposals: VecDeque::new(),
        })
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn leader_peer(&self) -> Option<metapb::Peer> {
        let leader = self.node.raft.leader_id;
        self.region.peers.iter().find(|p| p.id == leader).cloned()
    }

    pub fn not_leader(&self) -> ProposeError {
        ProposeError::NotLeader {
            region_id: self.region.id,
            leader: self.leader_peer(),
        }
    }

    /// Appends `cmd` to the log if this replica leads; `cb` fires once applied.
    pub fn propose(&mut self, cmd: &RaftCmd, cb: Callback) {
        if !self.is_leader() {
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        let before = self.ps.last_index();
        if let Err(e) = self.node.propose(vec![], cmd.encode()) {
            tracing::debug!(region_id = self.region.id, error = %e, "proposal dropped");
            let _ = cb.send(Err(self.not_leader()));
            return;
        }
        let index = self.node.raft.raft_log.last_index();
        debug_assert!(index > before);
        self.proposals.push_back(Proposal {
            index,
            term: self.node.raft.term,
            cb,
        });
    }

    /// Decodes a committed entry (None for the empty entry of a new leader).
    pub fn entry_cmd(&self, entry: &Entry) -> Option<RaftCmd> {
        if entry.data.is_empty() {
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
        while let Some(front) = self.proposals.front() {
            if front.index > entry.index {
                break;
            }
            let p = self.proposals.pop_front().expect("front exists");
            let res = if p.index == entry.index && p.term == entry.term {
                result.clone()
            } else {
                Err(ProposeError::Stale {
                    region_id: self.region.id,
                })
            };
            let _ = p.cb.send(res);
        }
    }

    /// Fails every waiting proposal, e.g. when leadership is lost.
    pub fn fail_proposals(&mut self) {
        let err = self.not_leader();
        for p in self.proposals.drain(..) {
            let _ = p.cb.send(Err(err.clone()));
        }
    }
}
