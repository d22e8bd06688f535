//! Raft messages arriving from other stores: stepping them into the right
//! replica, creating a replica for a region this store is being added to,
//! and the tombstones that tell a removed replica to go.

use protobuf::Message as _;
use raft::prelude::{Message, MessageType};

use super::driver::RaftStore;
use super::peer::Peer;
use super::peer_storage;
use super::snap::{SnapDescriptor, SnapKey};
use proto::{metapb, storepb};

impl RaftStore {
    pub(super) fn on_raft_message(&mut self, m: storepb::RaftMessage) {
        let (Some(from), Some(to)) = (m.from_peer, m.to_peer) else {
            return;
        };
        if to.store_id != self.store_id {
            return;
        }
        if m.is_tombstone {
            self.on_tombstone(&m, to.id);
            return;
        }
        let Ok(msg) = Message::parse_from_bytes(&m.message) else {
            tracing::warn!(region_id = m.region_id, "undecodable raft message dropped");
            return;
        };
        if self
            .peers
            .get(&m.region_id)
            .is_some_and(|p| p.peer_id < to.id && p.installing.is_none())
        {
            // Our replica was removed while we were away, and this store has
            // been added back under a new peer id: start over from a snapshot.
            tracing::info!(
                region_id = m.region_id,
                new_peer_id = to.id,
                "stale replica replaced"
            );
            if let Err(e) = self.destroy_peer(m.region_id) {
                self.fatal(&format!(
                    "removing a stale replica of region {}: {e}",
                    m.region_id
                ));
                return;
            }
        }
        if !self.peers.contains_key(&m.region_id) && !self.maybe_create_peer(&m, &msg) {
            return;
        }
        if self.tell_if_removed(&m, from) {
            return;
        }
        let p = self.peers.get_mut(&m.region_id).expect("peer exists");
        if p.peer_id != to.id {
            tracing::debug!(
                region_id = m.region_id,
                to = to.id,
                me = p.peer_id,
                "message for another peer id dropped"
            );
            return;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot && !self.snapshot_fits(&m, &msg) {
            return;
        }
        let p = self.peers.get_mut(&m.region_id).expect("peer exists");
        p.step(from, msg);
    }

    /// Answers a message from a replica that is no longer in the region (it
    /// was removed while away) with a tombstone, so it destroys itself.
    fn tell_if_removed(&self, m: &storepb::RaftMessage, from: metapb::Peer) -> bool {
        let Some(p) = self.peers.get(&m.region_id) else {
            return false;
        };
        let theirs = m.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        let mine = p.region.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        // An uninitialized sender (conf_ver 0) may be a replica being added.
        if !p.is_initialized()
            || theirs == 0
            || theirs >= mine
            || p.region.peers.iter().any(|x| x.id == from.id)
        {
            return false;
        }
        let tombstone = storepb::RaftMessage {
            region_id: m.region_id,
            from_peer: m.to_peer,
            to_peer: Some(from),
            region_epoch: p.region.region_epoch,
            is_tombstone: true,
            ..Default::default()
        };
        tracing::info!(
            region_id = m.region_id,
            peer_id = from.id,
            store_id = from.store_id,
            "telling a removed replica to go"
        );
        self.transport.send(vec![tombstone], &self.feedback);
        true
    }

    fn on_tombstone(&mut self, m: &storepb::RaftMessage, to_peer_id: u64) {
        let Some(p) = self.peers.get(&m.region_id) else {
            return;
        };
        let theirs = m.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        let mine = p.region.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        // A replica installing a snapshot goes once the install is done (the
        // removed replica's peers tell it again).
        if p.peer_id != to_peer_id
            || !p.is_initialized()
            || theirs <= mine
            || p.installing.is_some()
        {
            return;
        }
        tracing::info!(
            region_id = m.region_id,
            "replica was removed from its region; destroying it"
        );
        if let Err(e) = self.destroy_removed_peer(m.region_id, theirs) {
            self.fatal(&format!(
                "destroying a removed replica of region {}: {e}",
                m.region_id
            ));
        }
    }

    /// Whether a snapshot may be stepped: its data arrived whole, this
    /// replica is not still installing another, and its range is free on
    /// this store (no other region overlaps it).
    fn snapshot_fits(&self, m: &storepb::RaftMessage, msg: &Message) -> bool {
        let snap = msg.get_snapshot();
        let Ok(desc) = SnapDescriptor::decode(&snap.data) else {
            tracing::warn!(region_id = m.region_id, "undecodable snapshot dropped");
            return false;
        };
        let key = SnapKey {
            region_id: m.region_id,
            term: snap.get_metadata().term,
            index: snap.get_metadata().index,
        };
        if !self.snap_mgr.has_received(&key, &desc.meta) {
            tracing::warn!(
                region_id = m.region_id,
                index = key.index,
                "snapshot message without its data dropped"
            );
            return false;
        }
        if self
            .peers
            .get(&m.region_id)
            .is_some_and(|p| p.installing.is_some())
        {
            tracing::info!(
                region_id = m.region_id,
                "still installing a snapshot; new one dropped"
            );
            return false;
        }
        let region = &desc.region;
        if let Some(other) = self.overlapping(m.region_id, &region.start_key, &region.end_key) {
            tracing::info!(
                region_id = m.region_id,
                other,
                "snapshot overlaps another region; dropped"
            );
            return false;
        }
        true
    }

    /// An initialized region other than `except` overlapping `[start, end)`.
    fn overlapping(&self, except: u64, start: &[u8], end: &[u8]) -> Option<u64> {
        self.peers
            .values()
            .filter(|p| p.region.id != except && p.is_initialized())
            .find(|p| {
                let r = &p.region;
                (end.is_empty() || r.start_key.as_slice() < end)
                    && (r.end_key.is_empty() || start < r.end_key.as_slice())
            })
            .map(|p| p.region.id)
    }

    /// Creates an empty replica for a region this store is being added to;
    /// it catches up from a snapshot. Messages that cannot create one (a
    /// vote, a range still held by another region) are dropped.
    fn maybe_create_peer(&mut self, m: &storepb::RaftMessage, msg: &Message) -> bool {
        let creates = matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        if !creates || m.is_tombstone {
            return false;
        }
        let to = m.to_peer.expect("checked by caller");
        if self.is_tombstone(m.region_id, m.region_epoch.as_ref(), to.id) {
            return false;
        }
        if self
            .overlapping(m.region_id, &m.start_key, &m.end_key)
            .is_some()
        {
            return false;
        }
        let region = metapb::Region {
            id: m.region_id,
            ..Default::default()
        };
        let ps = peer_storage::empty(m.region_id);
        match Peer::new(region, to.id, ps, &self.peer_ctx) {
            Ok(p) => {
                tracing::info!(
                    region_id = m.region_id,
                    peer_id = to.id,
                    "replica created, waiting for a snapshot"
                );
                self.peers.insert(m.region_id, p);
                true
            }
            Err(e) => {
                tracing::warn!(region_id = m.region_id, error = %e, "creating replica failed");
                false
            }
        }
    }

    /// Whether a message sent at `epoch` to peer `to_peer_id` of `region_id` is for a replica
    /// this store already removed (see [`peer_storage::Tombstone`]).
    fn is_tombstone(
        &self,
        region_id: u64,
        epoch: Option<&metapb::RegionEpoch>,
        to_peer_id: u64,
    ) -> bool {
        let conf_ver = epoch.map(|e| e.conf_ver).unwrap_or(0);
        match peer_storage::tombstone(&self.engine, region_id) {
            Ok(Some(dead)) => dead.outdates(conf_ver, to_peer_id),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(region_id, error = %e, "reading tombstone failed");
                true
            }
        }
    }
}
