//! Handling the readies of every region in one round: persist, send, apply.
//!
//! Order per round: messages that need no persistence go out first; when the
//! entries the readies report committed are all data writes (raft-rs hands
//! out only entries already persisted here, so a quorum holds them), they are
//! applied in one batch (`apply.rs`) before this round's own log write, so
//! that a write's answer never waits for the fsync of entries proposed after
//! it; every region's new log entries, hard state and received snapshot state
//! are written in one synced batch; then the messages that had to wait for
//! that write are sent, raft advances, and the committed entries left (all of
//! them in a round that splits, truncates or changes membership, whose
//! follow-ups create, replace or drop replicas) are applied. Log truncations
//! are proposed only after the readies advanced: raft-rs wants the unstable
//! log to end where a ready left it until then. A ready carrying a received
//! snapshot persists only the raft side here (log reset, region, marker) and
//! hands the data to the apply worker; the replica's committed entries wait
//! until the install is done ([`RaftStore::finish_install`]).

use raft::prelude::{Entry, EntryType, Ready, Snapshot};
use raft::StateRole;
use rocksdb::WriteBatch;

use super::cmd::RaftCmd;
use super::driver::RaftStore;
use super::peer::Peer;
use super::peer_storage::RaftStateError;
use super::snap::worker::ApplyTask;
use super::snap::{SnapDescriptor, SnapKey};
use super::snapshot::{install_writes, PendingInstall};
use proto::storepb;

/// What one round takes from the regions' readies before its log write.
#[derive(Default)]
struct Round {
    /// The round's log write: new entries, hard states, received snapshots' raft state.
    log_wb: WriteBatch,
    /// The readies taken, by region, to advance once the log write is durable.
    readies: Vec<(u64, Ready)>,
    /// The committed entries to apply, by region.
    to_apply: Vec<(u64, Vec<Entry>)>,
    /// The messages that need no persistence first.
    early: Vec<storepb::RaftMessage>,
    /// The received snapshots to hand to the apply worker once the log write is durable.
    installs: Vec<PendingInstall>,
}

impl RaftStore {
    /// Persists, sends, applies and advances every region that has a ready.
    pub(super) fn on_ready(&mut self) -> Result<(), RaftStateError> {
        let Round {
            log_wb,
            readies,
            mut to_apply,
            early,
            installs,
        } = self.take_readies()?;
        if !early.is_empty() {
            self.transport.send(early, &self.feedback);
        }
        if readies.is_empty() {
            return Ok(());
        }
        // A restart after this apply but before the log write below reaches disk finds an
        // applied index above the persisted commit index; loading raises the commit index to it.
        let early = self.apply_data_writes_early(&mut to_apply)?;
        if !log_wb.is_empty() {
            self.engine.write_batch(log_wb, true)?;
        }
        for pending in installs {
            self.dispatch_install(pending);
        }
        let (apply_wb, late) = self.advance_readies(readies, &mut to_apply)?;
        if !late.is_empty() {
            self.transport.send(late, &self.feedback);
        }
        self.propose_compactions(&early);
        self.apply(to_apply, apply_wb)
    }

    /// Takes the ready of every region that has one: notes role changes, gathers the messages
    /// that need no persistence and the committed entries, and fills the round's log write.
    fn take_readies(&mut self) -> Result<Round, RaftStateError> {
        let mut round = Round::default();
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
                    p.fail_reads();
                }
            }
            round
                .early
                .extend(p.wrap_messages(self.store_id, rd.take_messages()));
            if !rd.snapshot().is_empty() {
                let pending = begin_install(p, rd.snapshot(), &self.engine, &mut round.log_wb)?;
                round.installs.push(pending);
                self.dirty = true;
            }
            let committed = rd.take_committed_entries();
            if !committed.is_empty() {
                round.to_apply.push((*id, committed));
            }
            p.ps.append(rd.entries(), &self.engine, &mut round.log_wb)?;
            if let Some(hs) = rd.hs() {
                p.ps.set_hard_state(hs, &self.engine, &mut round.log_wb)?;
            }
            p.on_read_states(rd.take_read_states());
            round.readies.push((*id, rd));
        }
        Ok(round)
    }

    /// When the committed entries of `to_apply` are all data writes, applies them (taking them
    /// out) and returns their regions; otherwise applies nothing and returns none.
    fn apply_data_writes_early(
        &mut self,
        to_apply: &mut Vec<(u64, Vec<Entry>)>,
    ) -> Result<Vec<u64>, RaftStateError> {
        if to_apply.is_empty() || !only_data_writes(to_apply) {
            return Ok(Vec::new());
        }
        let regions = to_apply.iter().map(|(id, _)| *id).collect();
        let removed = self.apply_entries(std::mem::take(to_apply), WriteBatch::default())?;
        debug_assert!(removed.is_empty(), "data writes removed a replica");
        Ok(regions)
    }

    /// Advances the persisted `readies`, adding the entries they newly committed to `to_apply`;
    /// returns the commit index writes and the messages that waited for the log write.
    fn advance_readies(
        &mut self,
        readies: Vec<(u64, Ready)>,
        to_apply: &mut Vec<(u64, Vec<Entry>)>,
    ) -> Result<(WriteBatch, Vec<storepb::RaftMessage>), RaftStateError> {
        let mut apply_wb = WriteBatch::default();
        let mut late = Vec::new();
        for (id, mut rd) in readies {
            let p = self.peers.get_mut(&id).expect("peer with ready");
            late.extend(p.wrap_messages(self.store_id, rd.take_persisted_messages()));
            // Applied progress is reported as entries really apply (`apply.rs`):
            // a replica installing a snapshot holds its committed entries back.
            let mut light = p.node.advance_append(rd);
            if let Some(commit) = light.commit_index() {
                p.ps.set_commit(commit, &self.engine, &mut apply_wb)?;
            }
            late.extend(p.wrap_messages(self.store_id, light.take_messages()));
            let committed = light.take_committed_entries();
            if !committed.is_empty() {
                to_apply.push((id, committed));
            }
        }
        Ok((apply_wb, late))
    }

    /// Marks `p` as installing `pending` (its raft state already durable)
    /// and queues the data install; used after a ready and at restart.
    pub(super) fn start_install(&self, p: &mut Peer, pending: PendingInstall) {
        p.set_region(pending.desc.region.clone());
        p.installing = Some(pending.clone());
        p.publish();
        self.dispatch_install(pending);
    }

    fn dispatch_install(&self, pending: PendingInstall) {
        let task = ApplyTask {
            key: pending.key,
            old: pending.old,
            desc: pending.desc,
        };
        // The worker lives as long as the loop; a send fails only at shutdown,
        // and the marker makes the next start install again.
        let _ = self.workers.apply.send(task);
    }

    /// The apply worker installed the snapshot at `index`: the replica
    /// serves again, from the snapshot's state, and applies what committed
    /// meanwhile.
    pub(super) fn finish_install(
        &mut self,
        region_id: u64,
        index: u64,
    ) -> Result<(), RaftStateError> {
        let Some(p) = self.peers.get_mut(&region_id) else {
            return Ok(());
        };
        if p.installing.as_ref().map(|i| i.key.index) != Some(index) {
            return Ok(());
        }
        p.installing = None;
        {
            let _gate = self.gate.write();
            p.publish();
        }
        p.node.advance_apply_to(index);
        tracing::info!(region_id, index, "snapshot installed");
        self.dirty = true;
        let held = std::mem::take(&mut p.held);
        if held.is_empty() {
            p.complete_reads();
            return Ok(());
        }
        self.apply(vec![(region_id, held)], WriteBatch::default())
    }
}

/// Whether every entry of `to_apply` is a data write or an empty one (a new leader's): their
/// apply creates, replaces or drops no replica and proposes nothing.
fn only_data_writes(to_apply: &[(u64, Vec<Entry>)]) -> bool {
    to_apply.iter().flat_map(|(_, entries)| entries).all(|e| {
        e.get_entry_type() == EntryType::EntryNormal
            && (e.data.is_empty() || RaftCmd::is_data_write(&e.data))
    })
}

/// Persists the raft side of a received snapshot into `wb` and switches the
/// replica to it; returns the install for the apply worker.
fn begin_install(
    p: &mut Peer,
    snap: &Snapshot,
    engine: &crate::engine::Engine,
    wb: &mut WriteBatch,
) -> Result<PendingInstall, RaftStateError> {
    let region_id = p.region.id;
    let desc = SnapDescriptor::decode(&snap.data).map_err(|_| RaftStateError::Corrupt {
        region_id,
        what: "snapshot descriptor",
    })?;
    let meta = snap.get_metadata();
    let pending = PendingInstall {
        key: SnapKey {
            region_id,
            term: meta.term,
            index: meta.index,
        },
        old: p.is_initialized().then(|| p.region.clone()),
        desc,
    };
    let mut hs = p.ps.hard_state.clone();
    hs.commit = hs.commit.max(meta.index);
    hs.term = hs.term.max(meta.term);
    p.ps.install(snap, engine, wb)?;
    engine.fill_batch(wb, &install_writes(&pending, &hs)?)?;
    p.ps.hard_state = hs;
    p.set_region(pending.desc.region.clone());
    p.installing = Some(pending.clone());
    p.publish();
    tracing::info!(
        region_id,
        index = meta.index,
        "snapshot received; installing"
    );
    Ok(pending)
}
