//! How raft messages leave the store, and the filters tests put in their way.
//!
//! The raftstore loop hands each round's outgoing messages to a
//! [`Transport`]; it must not block (a message it cannot deliver is dropped:
//! raft retransmits). The gRPC implementation lives in `server`. Every
//! transport can be wrapped in a [`FilteredTransport`], whose [`Filter`]s drop
//! messages by destination store or message type, so tests can partition,
//! isolate or starve replicas (TiKV's `transport_simulate`, raft-rs's
//! `network.rs`). The store's status port can install the same filters in a
//! running process when fault injection is enabled.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::RwLock;
use proto::storepb::RaftMessage;

pub trait Transport: Send + Sync + 'static {
    /// Queues `msgs` for their stores (`to_peer.store_id`); never blocks.
    fn send(&self, msgs: Vec<RaftMessage>);
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
    fn send(&self, mut msgs: Vec<RaftMessage>) {
        msgs.retain(|m| self.filters.allow(m));
        if !msgs.is_empty() {
            self.inner.send(msgs);
        }
    }
}

impl<T: Transport + ?Sized> Transport for Arc<T> {
    fn send(&self, msgs: Vec<RaftMessage>) {
        (**self).send(msgs)
    }
}
