//! Applying committed entries: data writes, splits and membership changes
//! of every region in one engine write, then answering their proposals,
//! creating the regions splits made, dropping removed replicas and
//! truncating logs.
//!
//! The apply write and the publication of the new applied states happen
//! together under the store's apply gate (`snap::worker`), so a snapshot is
//! always built from exactly the data of the index it names. The leader
//! decides log truncation ([`gc_index`], keeping what lagging followers
//! still need) and proposes it, so every replica truncates at the same
//! index and a follower that becomes leader can still catch the laggards up.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{
    ConfChange, ConfChangeTransition, ConfChangeType, ConfChangeV2, Entry, EntryType,
};
use raft::Storage as _;
use rocksdb::WriteBatch;

use super::cmd::RaftCmd;
use super::driver::{RaftStore, RaftStoreConfig};
use super::local_keys;
use super::membership::{self, JointRefused};
use super::peer::Peer;
use super::peer_storage::{self, RaftStateError};
use super::{split, ProposeError};
use crate::engine::{Modify, CF_RAFT, DATA_CFS};
use proto::metapb;

/// Per-region outcome of applying one batch of committed entries.
struct Applied {
    region_id: u64,
    entries: Vec<Entry>,
    results: Vec<Result<(), ProposeError>>,
    /// The log truncation the leader decided, if one applied.
    compact_to: Option<u64>,
}

/// What applying a batch leaves for after its engine write, across regions.
#[derive(Default)]
struct FollowUps {
    /// The splits applied, each with whether this replica led the parent region.
    splits: Vec<(bool, split::SplitOutcome)>,
    /// The regions whose replica here a membership change removed.
    removed: Vec<u64>,
}

/// What applying one region's entries adds to the batch's engine write.
#[derive(Default)]
struct RegionWrites {
    /// The engine writes of the entries applied.
    modifies: Vec<Modify>,
    /// The log truncation the leader decided, if one applied.
    compact_to: Option<u64>,
}

impl RaftStore {
    /// Applies committed entries of every region in one write batch, then
    /// answers their proposals, starts regions splits created and drops
    /// replicas that were removed.
    pub(super) fn apply(
        &mut self,
        to_apply: Vec<(u64, Vec<Entry>)>,
        wb: WriteBatch,
    ) -> Result<(), RaftStateError> {
        let regions: Vec<u64> = to_apply.iter().map(|(id, _)| *id).collect();
        let removed = self.apply_entries(to_apply, wb)?;
        self.propose_compactions(&regions);
        for region_id in removed {
            self.destroy_peer(region_id)?;
        }
        Ok(())
    }

    /// On the leaders among `regions`, proposes the log truncations [`gc_index`] calls for.
    /// Never between taking a ready and advancing it: raft-rs requires the unstable log to
    /// end where that ready left it.
    pub(super) fn propose_compactions(&mut self, regions: &[u64]) {
        for id in regions {
            if let Some(p) = self.peers.get_mut(id) {
                propose_compaction(p, &self.cfg);
            }
        }
    }

    /// [`RaftStore::apply`] less its follow-ups: log truncations are not proposed and the
    /// replicas removed are not dropped but returned, for the caller to drop once nothing of
    /// theirs is still being written.
    pub(super) fn apply_entries(
        &mut self,
        to_apply: Vec<(u64, Vec<Entry>)>,
        mut wb: WriteBatch,
    ) -> Result<Vec<u64>, RaftStateError> {
        let mut applied = Vec::with_capacity(to_apply.len());
        let mut follow_ups = FollowUps::default();
        for (region_id, entries) in to_apply {
            let Some(p) = self.peers.get_mut(&region_id) else {
                continue;
            };
            if p.installing.is_some() {
                // Applied once the snapshot under them is installed.
                p.held.extend(entries);
                continue;
            }
            let mut writes = RegionWrites::default();
            let mut results = Vec::with_capacity(entries.len());
            for e in &entries {
                let result = apply_entry(
                    p,
                    region_id,
                    e,
                    &mut self.dirty,
                    &mut writes,
                    &mut follow_ups,
                )?;
                results.push(result);
                p.set_applied(e.index);
            }
            writes.modifies.push(p.ps.apply_state_modify());
            self.engine.fill_batch(&mut wb, &writes.modifies)?;
            applied.push(Applied {
                region_id,
                entries,
                results,
                compact_to: writes.compact_to,
            });
        }
        self.write_applied(wb, &applied)?;
        // New regions are routable before the split's proposer hears back.
        if !follow_ups.splits.is_empty() {
            for (was_leader, outcome) in follow_ups.splits {
                self.start_split_regions(was_leader, outcome)?;
            }
            self.refresh_meta();
        }
        self.finish_applied(applied)?;
        Ok(follow_ups.removed)
    }

    /// Writes the apply batch `wb` and publishes the new applied states of `applied` together,
    /// under the apply gate.
    fn write_applied(&self, wb: WriteBatch, applied: &[Applied]) -> Result<(), RaftStateError> {
        let _gate = self.gate.write();
        if !wb.is_empty() {
            self.engine.write_batch(wb, false)?;
        }
        for a in applied {
            if let Some(p) = self.peers.get(&a.region_id) {
                p.publish();
            }
        }
        Ok(())
    }

    /// Answers the proposals of `applied`, reports their progress to raft, serves the reads
    /// waiting for it and truncates the logs the leaders decided to (in one write).
    fn finish_applied(&mut self, applied: Vec<Applied>) -> Result<(), RaftStateError> {
        let mut gc_wb = WriteBatch::default();
        for a in applied {
            let p = self.peers.get_mut(&a.region_id).expect("peer with entries");
            for (e, r) in a.entries.iter().zip(a.results) {
                p.on_applied(e, r);
            }
            if let Some(last) = a.entries.last() {
                p.node.advance_apply_to(last.index);
            }
            p.complete_reads();
            p.publish_lease();
            if let Some(to) = a.compact_to {
                p.ps.compact_to(to, &self.engine, &mut gc_wb)?;
            }
        }
        if !gc_wb.is_empty() {
            self.engine.write_batch(gc_wb, false)?;
        }
        Ok(())
    }

    /// Creates the replicas of regions a split produced on this store; on the
    /// parent's leader they campaign at once so the new ranges stay served.
    fn start_split_regions(
        &mut self,
        was_leader: bool,
        outcome: split::SplitOutcome,
    ) -> Result<(), RaftStateError> {
        for region in outcome.new_regions {
            let Some(me) = region.peers.iter().find(|p| p.store_id == self.store_id) else {
                continue;
            };
            if let Some(existing) = self.peers.get(&region.id) {
                if existing.is_initialized() {
                    continue;
                }
            }
            let ps = peer_storage::load(&self.engine, &region)?;
            let mut peer = Peer::new(region.clone(), me.id, ps, &self.peer_ctx)?;
            if was_leader {
                peer.node.campaign()?;
            }
            // Have the split checker look at the new region too: it may still
            // be over the limits.
            peer.written.store(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                region_id = region.id,
                parent = outcome.left.id,
                "region created by split"
            );
            self.peers.insert(region.id, peer);
        }
        Ok(())
    }

    /// Drops a replica removed from its region: its data, raft state and
    /// metadata go; a tombstone keeps stale messages from recreating it.
    pub(super) fn destroy_peer(&mut self, region_id: u64) -> Result<(), RaftStateError> {
        self.destroy_removed_peer(region_id, 0)
    }

    /// [`Self::destroy_peer`] for a replica another one said was removed at conf version
    /// `removed_at` (newer than what this replica saw, if it was cut off meanwhile).
    pub(super) fn destroy_removed_peer(
        &mut self,
        region_id: u64,
        removed_at: u64,
    ) -> Result<(), RaftStateError> {
        let Some(mut p) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        p.withdraw_lease();
        p.fail_pending();
        let mut m = Vec::new();
        // An uninitialized replica owns no data yet (its region has no range: deleting "its"
        // range would wipe the store). An initialized one owns its range, less whatever another
        // initialized region here holds (never expected; kept as a guard).
        let owned = if p.is_initialized() {
            let others = self
                .peers
                .values()
                .filter(|o| o.is_initialized())
                .map(|o| &o.region);
            crate::data_keys::exclusive_data_ranges(&p.region, others)
        } else {
            Vec::new()
        };
        for (start, end) in owned {
            for cf in DATA_CFS {
                m.push(Modify::DeleteRange {
                    cf,
                    start: start.clone(),
                    end: end.clone(),
                });
            }
        }
        m.extend(peer_storage::destroy_writes(
            &p.region, p.peer_id, removed_at,
        ));
        self.engine.write(&m, true)?;
        tracing::info!(
            region_id,
            peer_id = p.peer_id,
            "replica removed from this store"
        );
        self.dirty = true;
        Ok(())
    }
}

/// Applies one committed entry of `p`, the replica of `region_id`, by its type: the outer error is a local failure (the
/// store must stop), the inner one the entry's own outcome.
fn apply_entry(
    p: &mut Peer,
    region_id: u64,
    e: &Entry,
    dirty: &mut bool,
    writes: &mut RegionWrites,
    follow_ups: &mut FollowUps,
) -> Result<Result<(), ProposeError>, RaftStateError> {
    Ok(match e.get_entry_type() {
        EntryType::EntryNormal => match p.entry_cmd(e) {
            Some(RaftCmd::CompactLog { index, .. }) => {
                writes.compact_to = Some(index);
                Ok(())
            }
            cmd => apply_normal(p, e, cmd, &mut writes.modifies, &mut follow_ups.splits)?,
        },
        EntryType::EntryConfChange => {
            *dirty = true;
            let r = apply_conf_change(p, e, &mut writes.modifies);
            note_removal(r, region_id, &mut follow_ups.removed)
        }
        EntryType::EntryConfChangeV2 => {
            *dirty = true;
            let r = apply_conf_change_v2(p, e, &mut writes.modifies);
            note_removal(r, region_id, &mut follow_ups.removed)
        }
    })
}

/// The outcome of a membership change `r`, noting `region_id` in `removed` if it removed
/// this replica.
fn note_removal(
    r: Result<bool, ProposeError>,
    region_id: u64,
    removed: &mut Vec<u64>,
) -> Result<(), ProposeError> {
    if let Ok(true) = r {
        removed.push(region_id);
    }
    r.map(|_| ())
}

/// Applies one normal entry: the outer error is a local failure (the store
/// must stop), the inner one the command's own outcome.
fn apply_normal(
    p: &mut Peer,
    e: &Entry,
    cmd: Option<RaftCmd>,
    modifies: &mut Vec<Modify>,
    splits: &mut Vec<(bool, split::SplitOutcome)>,
) -> Result<Result<(), ProposeError>, RaftStateError> {
    Ok(match cmd {
        None | Some(RaftCmd::CompactLog { .. }) => Ok(()),
        Some(RaftCmd::Write(w)) => {
            if let Err(err) = w.check(&p.region) {
                tracing::info!(region_id = p.region.id, index = e.index, error = %err, "write refused at apply");
                return Ok(Err(err));
            }
            let bytes: usize = w.modifies.iter().map(Modify::size).sum();
            p.written
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
            modifies.extend(w.modifies);
            Ok(())
        }
        Some(RaftCmd::BatchSplit(bs)) => match split::exec_batch_split(&p.region, &bs) {
            Ok(outcome) => {
                modifies.extend(split::split_writes(&outcome)?);
                p.set_region(outcome.left.clone());
                p.written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                splits.push((p.is_leader(), outcome));
                Ok(())
            }
            Err(reason) => {
                tracing::info!(region_id = p.region.id, %reason, "split rejected");
                Err(ProposeError::SplitRejected {
                    region_id: p.region.id,
                    reason,
                })
            }
        },
    })
}

/// Applies a membership change; Ok(true) if it removed this replica.
fn apply_conf_change(
    p: &mut Peer,
    e: &Entry,
    modifies: &mut Vec<Modify>,
) -> Result<bool, ProposeError> {
    let region_id = p.region.id;
    let reject = |reason: String| ProposeError::Rejected { region_id, reason };
    let cc = ConfChange::parse_from_bytes(&e.data).map_err(|err| reject(err.to_string()))?;
    let peer = metapb::Peer::decode(e.context.as_ref()).map_err(|err| reject(err.to_string()))?;
    if membership::in_joint(&p.region) {
        tracing::info!(
            region_id,
            index = e.index,
            "single membership change refused: region is joint"
        );
        return Err(reject(
            "the region is in a joint state: leave it before a single membership change".into(),
        ));
    }
    let mut region = p.region.clone();
    let role = |r: metapb::PeerRole| metapb::Peer {
        role: r as i32,
        ..peer
    };
    match cc.get_change_type() {
        ConfChangeType::AddNode => match region.peers.iter_mut().find(|x| x.id == peer.id) {
            Some(x) => x.role = metapb::PeerRole::Voter as i32,
            None => region.peers.push(role(metapb::PeerRole::Voter)),
        },
        ConfChangeType::AddLearnerNode => {
            if !region.peers.iter().any(|x| x.id == peer.id) {
                region.peers.push(role(metapb::PeerRole::Learner));
            }
        }
        ConfChangeType::RemoveNode => region.peers.retain(|x| x.id != peer.id),
    }
    let cs = p
        .node
        .apply_conf_change(&cc)
        .map_err(|err| reject(err.to_string()))?;
    p.ps.mem().wl().set_conf_state(cs);
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.conf_ver += 1;
    region.region_epoch = Some(epoch);
    modifies.push(Modify::Put {
        cf: CF_RAFT,
        key: local_keys::region_state_key(region_id),
        value: region.encode_to_vec(),
    });
    tracing::info!(region_id, change = ?cc.get_change_type(), peer_id = peer.id, store_id = peer.store_id, "membership changed");
    p.set_region(region);
    Ok(cc.get_change_type() == ConfChangeType::RemoveNode && peer.id == p.peer_id)
}

/// Applies a joint-consensus membership change (entering or leaving the joint state, see
/// [`membership`]); Ok(true) if it removed this replica. The region's metadata decides
/// whether it is valid, the same way on every replica; an invalid one changes nothing.
fn apply_conf_change_v2(
    p: &mut Peer,
    e: &Entry,
    modifies: &mut Vec<Modify>,
) -> Result<bool, ProposeError> {
    let region_id = p.region.id;
    let reject = |reason: String| {
        tracing::info!(region_id, index = e.index, %reason, "joint membership change refused");
        ProposeError::Rejected { region_id, reason }
    };
    let cc = ConfChangeV2::parse_from_bytes(&e.data).map_err(|err| reject(err.to_string()))?;
    let refused = |why: JointRefused| reject(why.to_string());
    let changes = membership::decode_context(&e.context).map_err(refused)?;
    let leave = cc.leave_joint();
    let (region, removes_me) = if leave {
        (region_leaving_joint(p, &changes).map_err(refused)?, false)
    } else {
        region_entering_joint(p, &cc, &changes).map_err(refused)?
    };
    let cs = p
        .node
        .apply_conf_change(&cc)
        .map_err(|err| reject(err.to_string()))?;
    p.ps.mem().wl().set_conf_state(cs);
    modifies.push(Modify::Put {
        cf: CF_RAFT,
        key: local_keys::region_state_key(region_id),
        value: region.encode_to_vec(),
    });
    let conf_ver = region.region_epoch.map(|ep| ep.conf_ver).unwrap_or(0);
    if leave {
        log_left_joint(region_id, conf_ver, &region);
        if leader_demoted(p, &region) {
            // Proposed under another leader, applied under this one (a demoting voter elected
            // meanwhile): raft-rs keeps a demoted leader in office; hand it to a voter.
            p.set_region(region);
            let to = p.hand_over_leadership();
            tracing::info!(
                region_id,
                ?to,
                "leader demoted to learner; handing leadership over"
            );
            return Ok(false);
        }
    } else {
        log_entered_joint(region_id, conf_ver, &changes);
    }
    p.set_region(region);
    Ok(removes_me)
}

/// `p`'s region once it left its joint state, or why the leave-joint entry is refused.
fn region_leaving_joint(
    p: &Peer,
    changes: &[membership::PeerChange],
) -> Result<metapb::Region, JointRefused> {
    if !changes.is_empty() {
        return Err(JointRefused::LeaveWithChanges);
    }
    membership::leave_joint(&p.region)
}

/// `p`'s region once it entered the joint state `cc` and `changes` describe, and whether that
/// removes this replica; or why the entry is refused.
fn region_entering_joint(
    p: &Peer,
    cc: &ConfChangeV2,
    changes: &[membership::PeerChange],
) -> Result<(metapb::Region, bool), JointRefused> {
    if cc.get_transition() != ConfChangeTransition::Explicit {
        return Err(JointRefused::Transition(cc.get_transition()));
    }
    if !membership::matches(cc, changes) {
        return Err(JointRefused::Mismatch);
    }
    let region = membership::enter_joint(&p.region, changes)?;
    let removes_me = changes
        .iter()
        .any(|(t, peer)| *t == ConfChangeType::RemoveNode && peer.id == p.peer_id);
    Ok((region, removes_me))
}

/// Whether `p` leads while `region`, just out of its joint state, made it a learner.
fn leader_demoted(p: &Peer, region: &metapb::Region) -> bool {
    let demoted_me = region
        .peers
        .iter()
        .any(|x| x.id == p.peer_id && x.role() == metapb::PeerRole::Learner);
    demoted_me && p.is_leader()
}

/// Logs the peer roles of `region` once it left its joint state.
fn log_left_joint(region_id: u64, conf_ver: u64, region: &metapb::Region) {
    let roles: Vec<String> = region
        .peers
        .iter()
        .map(|x| format!("{}@{}:{:?}", x.id, x.store_id, x.role()))
        .collect();
    tracing::info!(region_id, conf_ver, ?roles, "left joint state");
}

/// Logs the `changes` a region entered its joint state with.
fn log_entered_joint(region_id: u64, conf_ver: u64, changes: &[membership::PeerChange]) {
    let changes: Vec<String> = changes
        .iter()
        .map(|(t, x)| format!("{t:?} {}@{}", x.id, x.store_id))
        .collect();
    tracing::info!(
        region_id,
        conf_ver,
        ?changes,
        "membership changed: joint state entered"
    );
}

/// On a leader, proposes truncating the log when [`gc_index`] says so; every
/// replica truncates at the same index when the command applies.
fn propose_compaction(p: &mut Peer, cfg: &RaftStoreConfig) {
    let Some(index) = gc_index(p, cfg) else {
        return;
    };
    if index <= p.compact_proposed {
        return;
    }
    let Ok(term) = p.ps.mem().term(index) else {
        return;
    };
    let cmd = RaftCmd::CompactLog { index, term };
    if p.node.propose(vec![], cmd.encode()).is_ok() {
        p.compact_proposed = index;
    }
}

/// Where the leader should truncate the region's log now, if at all.
/// Applied entries beyond `log-gc-threshold` go, but every entry some
/// follower has not acknowledged stays (a follower that restarted a few
/// seconds ago then catches up from the log), until the log passes the
/// count or size limit: then a lagging follower gets a snapshot instead.
pub(super) fn gc_index(p: &Peer, cfg: &RaftStoreConfig) -> Option<u64> {
    if !p.is_leader() {
        return None;
    }
    let applied = p.ps.apply_state.applied_index;
    let truncated = p.ps.apply_state.truncated_index;
    if applied < truncated + 2 * cfg.log_gc_threshold {
        return None;
    }
    let mut to = applied - cfg.log_gc_threshold;
    let over_limit =
        applied - truncated > cfg.log_gc_count_limit || p.ps.log_bytes() > cfg.log_gc_size_limit;
    if !over_limit {
        let slowest = p
            .node
            .raft
            .prs()
            .iter()
            // One already behind the truncation point needs a snapshot anyway.
            .filter(|(id, pr)| **id != p.peer_id && pr.matched >= truncated)
            .map(|(_, pr)| pr.matched)
            .min()
            .unwrap_or(applied);
        to = to.min(slowest);
    }
    (to > truncated).then_some(to)
}
