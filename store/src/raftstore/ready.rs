//! Handling the readies of every region in one round: persist, send, apply.
//!
//! Order per round: messages that need no persistence go out first; every
//! region's new log entries, hard state and received snapshot are written in
//! one synced batch; then the messages that had to wait for that write are
//! sent, raft advances, and the committed entries of all regions are applied
//! in one batch (writes, splits, conf changes), after which their proposals
//! and reads are answered.

use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Snapshot};
use raft::StateRole;
use rocksdb::WriteBatch;

use super::cmd::RaftCmd;
use super::driver::RaftStore;
use super::keys::{self, ApplyState};
use super::peer::Peer;
use super::peer_storage::{self, StorageError};
use super::{snapshot, split, ProposeError};
use crate::engine::{Engine, Modify, CF_RAFT, DATA_CFS};
use proto::{metapb, storepb};

/// Per-region outcome of applying one batch of committed entries.
struct Applied {
    region_id: u64,
    entries: Vec<Entry>,
    results: Vec<Result<(), ProposeError>>,
}

impl RaftStore {
    /// Persists, sends, applies and advances every region that has a ready.
    pub(super) fn on_ready(&mut self) -> Result<(), StorageError> {
        let mut log_wb = WriteBatch::default();
        let mut readies = Vec::new();
        let mut to_apply: Vec<(u64, Vec<Entry>)> = Vec::new();
        let mut early: Vec<storepb::RaftMessage> = Vec::new();
        for (id, p) in self.peers.iter_mut() {
            if !p.node.has_ready() {
                continue;
            }
            let mut rd = p.node.ready();
            if let Some(ss) = rd.ss() {
                self.dirty = true;
                if ss.raft_state == StateRole::Leader {
                    p.reset_heard();
                } else {
                    p.fail_pending();
                }
            }
            early.extend(p.wrap_messages(self.store_id, rd.take_messages()));
            if !rd.snapshot().is_empty() {
                install_snapshot(p, rd.snapshot(), &self.engine, &mut log_wb)?;
                self.dirty = true;
            }
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((*id, committed));
            }
            p.ps.append(rd.entries(), &self.engine, &mut log_wb)?;
            if let Some(hs) = rd.hs() {
                p.ps.set_hard_state(hs, &self.engine, &mut log_wb)?;
            }
            p.on_read_states(rd.take_read_states());
            readies.push((*id, rd));
        }
        if !early.is_empty() {
            self.transport.send(early);
        }
        if readies.is_empty() {
            return Ok(());
        }
        if !log_wb.is_empty() {
            self.engine.write_batch(log_wb, true)?;
        }
        let mut apply_wb = WriteBatch::default();
        let mut late = Vec::new();
        for (id, mut rd) in readies {
            let p = self.peers.get_mut(&id).expect("peer with ready");
            late.extend(p.wrap_messages(self.store_id, rd.take_persisted_messages()));
            let mut light = p.node.advance(rd);
            if let Some(commit) = light.commit_index() {
                p.ps.set_commit(commit, &self.engine, &mut apply_wb)?;
            }
            late.extend(p.wrap_messages(self.store_id, light.take_messages()));
            let committed = light.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((id, committed));
            }
        }
        if !late.is_empty() {
            self.transport.send(late);
        }
        self.apply(to_apply, apply_wb)
    }

    /// Applies committed entries of every region in one write batch, then
    /// answers their proposals, starts regions splits created and drops
    /// replicas that were removed.
    fn apply(
        &mut self,
        to_apply: Vec<(u64, Vec<Entry>)>,
        mut wb: WriteBatch,
    ) -> Result<(), StorageError> {
        let mut applied = Vec::with_capacity(to_apply.len());
        let mut splits = Vec::new();
        let mut removed = Vec::new();
        for (region_id, entries) in to_apply {
            let p = self.peers.get_mut(&region_id).expect("peer with entries");
            let mut modifies: Vec<Modify> = Vec::new();
            let mut results = Vec::with_capacity(entries.len());
            for e in &entries {
                let result = match e.get_entry_type() {
                    EntryType::EntryNormal => apply_normal(p, e, &mut modifies, &mut splits),
                    EntryType::EntryConfChange => {
                        self.dirty = true;
                        let r = apply_conf_change(p, e, &mut modifies);
                        if let Ok(true) = r {
                            removed.push(region_id);
                        }
                        r.map(|_| ())
                    }
                    EntryType::EntryConfChangeV2 => Err(ProposeError::Rejected {
                        region_id,
                        reason: "joint conf changes are not used".into(),
                    }),
                };
                results.push(result);
                p.set_applied(e.index);
            }
            modifies.push(p.ps.apply_state_modify());
            self.engine.fill_batch(&mut wb, &modifies)?;
            applied.push(Applied {
                region_id,
                entries,
                results,
            });
        }
        if !wb.is_empty() {
            self.engine.write_batch(wb, false)?;
        }
        // New regions are routable before the split's proposer hears back.
        if !splits.is_empty() {
            for (was_leader, outcome) in splits {
                self.start_split_regions(was_leader, outcome)?;
            }
            self.refresh_meta();
        }
        let mut gc_wb = WriteBatch::default();
        for a in applied {
            let p = self.peers.get_mut(&a.region_id).expect("peer with entries");
            for (e, r) in a.entries.iter().zip(a.results) {
                p.on_applied(e, r);
            }
            p.node.advance_apply();
            p.complete_reads();
            let applied = p.ps.apply_state.applied_index;
            if applied - p.ps.apply_state.truncated_index > 2 * self.cfg.log_gc_threshold {
                let to = applied - self.cfg.log_gc_threshold;
                p.ps.compact_to(to, &self.engine, &mut gc_wb)?;
            }
        }
        if !gc_wb.is_empty() {
            self.engine.write_batch(gc_wb, false)?;
        }
        for region_id in removed {
            self.destroy_peer(region_id)?;
        }
        Ok(())
    }

    /// Creates the replicas of regions a split produced on this store; on the
    /// parent's leader they campaign at once so the new ranges stay served.
    fn start_split_regions(
        &mut self,
        was_leader: bool,
        outcome: split::SplitOutcome,
    ) -> Result<(), StorageError> {
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
            let mut peer = Peer::new(
                region.clone(),
                me.id,
                ps,
                &self.engine,
                &self.cfg.peer,
                &self.logger,
            )?;
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
    pub(super) fn destroy_peer(&mut self, region_id: u64) -> Result<(), StorageError> {
        let Some(mut p) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        p.fail_pending();
        let mut m = Vec::new();
        for (start, end) in crate::keys::region_data_ranges(&p.region) {
            for cf in DATA_CFS {
                m.push(Modify::DeleteRange {
                    cf,
                    start: start.clone(),
                    end: end.clone(),
                });
            }
        }
        m.extend(peer_storage::destroy_writes(&p.region));
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

fn apply_normal(
    p: &mut Peer,
    e: &Entry,
    modifies: &mut Vec<Modify>,
    splits: &mut Vec<(bool, split::SplitOutcome)>,
) -> Result<(), ProposeError> {
    match p.entry_cmd(e) {
        None => Ok(()),
        Some(RaftCmd::Write(m)) => {
            let bytes: usize = m.iter().map(Modify::size).sum();
            p.written
                .fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
            modifies.extend(m);
            Ok(())
        }
        Some(RaftCmd::BatchSplit(bs)) => match split::exec_batch_split(&p.region, &bs) {
            Ok(outcome) => {
                modifies.extend(split::split_writes(&outcome));
                p.set_region(outcome.left.clone());
                p.written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                splits.push((p.is_leader(), outcome));
                Ok(())
            }
            Err(reason) => {
                tracing::info!(region_id = p.region.id, %reason, "split rejected");
                Err(ProposeError::Rejected {
                    region_id: p.region.id,
                    reason,
                })
            }
        },
    }
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
    p.ps.mem.wl().set_conf_state(cs);
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.conf_ver += 1;
    region.region_epoch = Some(epoch);
    modifies.push(Modify::Put {
        cf: CF_RAFT,
        key: keys::region_state_key(region_id),
        value: region.encode_to_vec(),
    });
    tracing::info!(region_id, change = ?cc.get_change_type(), peer_id = peer.id, store_id = peer.store_id, "membership changed");
    p.set_region(region);
    Ok(cc.get_change_type() == ConfChangeType::RemoveNode && peer.id == p.peer_id)
}

/// Installs a received snapshot (data, region, raft state) into `wb`.
fn install_snapshot(
    p: &mut Peer,
    snap: &Snapshot,
    engine: &Engine,
    wb: &mut WriteBatch,
) -> Result<(), StorageError> {
    let region_id = p.region.id;
    let (region, puts) = snapshot::decode_data(&snap.data).map_err(|_| StorageError::Corrupt {
        region_id,
        what: "snapshot",
    })?;
    let meta = snap.get_metadata();
    let old = p.is_initialized().then(|| p.region.clone());
    let mut hs = p.ps.hard_state.clone();
    hs.commit = hs.commit.max(meta.index);
    hs.term = hs.term.max(meta.term);
    let writes = snapshot::apply_writes(old.as_ref(), &region, puts, meta.index, meta.term, &hs);
    engine.fill_batch(wb, &writes)?;
    p.ps.mem.wl().apply_snapshot(snap.clone())?;
    p.ps.hard_state = hs;
    p.ps.apply_state = ApplyState {
        applied_index: meta.index,
        truncated_index: meta.index,
        truncated_term: meta.term,
    };
    p.set_applied(meta.index);
    tracing::info!(region_id, index = meta.index, "snapshot installed");
    crate::metrics::SNAPSHOTS
        .with_label_values(&["applied"])
        .inc();
    p.set_region(region);
    Ok(())
}
