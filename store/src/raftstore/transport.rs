//! How raft messages leave the store, and the filters tests put in their way.
//!
//! The raftstore loop hands each round's outgoing messages to a
//! [`Transport`]; it must not block (a message it cannot deliver is dropped:
//! raft retransmits). What became of snapshots and of messages to
//! unreachable stores goes back to the loop through [`Feedback`], so raft
//! retries a lost snapshot instead of waiting on it forever. The gRPC
//! implementation lives in `server`. Every
//! transport can be wrapped in a [`FilteredTransport`], whose [`Filter`]s drop
//! messages by destination store or message type, so tests can partition,
//! isolate or starve replicas (TiKV's `transport_simulate`, raft-rs's
//! `network.rs`). The store's status port can install the same filters in a
//! running process when fault injection is enabled.

use std::collections::HashSet;
use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::RwLock;
use proto::storepb::RaftMessage;

use super::driver::ControlMsg;

/// The transport's way back to the raftstore loop; never blocks.
#[derive(Clone, Debug)]
pub struct Feedback {
    ctl: Sender<ControlMsg>,
}

impl Feedback {
    pub(crate) fn new(ctl: Sender<ControlMsg>) -> Self {
        Feedback { ctl }
    }

    /// A snapshot message (`msg`) was delivered with its data, or was lost.
    pub fn snapshot_status(&self, msg: &RaftMessage, delivered: bool) {
        let _ = self.ctl.send(ControlMsg::SnapshotStatus {
            region_id: msg.region_id,
            to_peer_id: msg.to_peer.map(|p| p.id).unwrap_or(0),
            delivered,
        });
    }

    /// `msg`'s store could not be reached.
    pub fn unreachable(&self, msg: &RaftMessage) {
        let _ = self.ctl.send(ControlMsg::Unreachable {
            region_id: msg.region_id,
            to_peer_id: msg.to_peer.map(|p| p.id).unwrap_or(0),
        });
    }
}

pub trait Transport: Send + Sync + 'static {
    /// Queues `msgs` for their stores (`to_peer.store_id`); never blocks.
    /// Snapshot messages (`is_snapshot`) carry their data along and are
    /// reported through `feedback` when delivered or lost.
    fn send(&self, msgs: Vec<RaftMessage>, feedback: &Feedback);
}

/// Decides whether a message may pass.
pub trait Filter: Send + Sync + 'static {
    fn allow(&self, msg: &RaftMessage) -> bool;
    /// A short description, for logs and the status API.
    fn describe(&self) -> String;
}

/// Drops every message to or from the given stores, relative to this store:
/// with `stores` = the other side of a partition, this store is cut off from
/// them in the outgoing direction (install it on both sides for a full cut).
pub struct BlockStores(pub HashSet<u64>);

impl Filter for BlockStores {
    fn allow(&self, msg: &RaftMessage) -> bool {
        let to = msg.to_peer.map(|p| p.store_id).unwrap_or(0);
        !self.0.contains(&to)
    }
    fn describe(&self) -> String {
        let mut ids: Vec<_> = self.0.iter().collect();
        ids.sort();
        format!("block stores {ids:?}")
    }
}

/// Drops messages of the given raft message types (`eraftpb::MessageType` numbers).
pub struct DropTypes(pub HashSet<i32>);

impl Filter for DropTypes {
    fn allow(&self, msg: &RaftMessage) -> bool {
        match <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&msg.message) {
            Ok(m) => !self.0.contains(&(m.get_msg_type() as i32)),
            Err(_) => true,
        }
    }
    fn describe(&self) -> String {
        format!("drop message types {:?}", self.0)
    }
}

/// The shared, replaceable set of filters of one store.
#[derive(Clone, Default)]
pub struct Filters(Arc<RwLock<Vec<Box<dyn Filter>>>>);

impl Filters {
    pub fn add(&self, f: Box<dyn Filter>) {
        self.0.write().push(f);
    }
    pub fn clear(&self) {
        self.0.write().clear();
    }
    pub fn describe(&self) -> Vec<String> {
        self.0.read().iter().map(|f| f.describe()).collect()
    }
    fn allow(&self, msg: &RaftMessage) -> bool {
        self.0.read().iter().all(|f| f.allow(msg))
    }
}

pub struct FilteredTransport<T> {
    inner: T,
    filters: Filters,
}

impl<T: Transport> FilteredTransport<T> {
    pub fn new(inner: T, filters: Filters) -> Self {
        FilteredTransport { inner, filters }
    }
}

impl<T: Transport> Transport for FilteredTransport<T> {
    fn send(&self, mut msgs: Vec<RaftMessage>, feedback: &Feedback) {
        msgs.retain(|m| {
            let allowed = self.filters.allow(m);
            if !allowed && m.is_snapshot {
                // Lost on the way, as a reset stream would lose it.
                feedback.snapshot_status(m, false);
            }
            allowed
        });
        if !msgs.is_empty() {
            self.inner.send(msgs, feedback);
        }
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, msgs: Vec<RaftMessage>, feedback: &Feedback) {
        (**self).send(msgs, feedback)
    }
}

/// Drops the first `n` messages of one raft message type, then lets all
/// through (a snapshot lost once, say).
pub struct DropFirst {
    pub msg_type: i32,
    pub remaining: std::sync::atomic::AtomicUsize,
}

impl Filter for DropFirst {
    fn allow(&self, msg: &RaftMessage) -> bool {
        use std::sync::atomic::Ordering;
        let matches = <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&msg.message)
            .is_ok_and(|m| m.get_msg_type() as i32 == self.msg_type);
        if !matches {
            return true;
        }
        self.remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
    }
    fn describe(&self) -> String {
        format!("drop the next messages of type {}", self.msg_type)
    }
}
