//! Filters on the raft messages a member sends, so tests can partition members, cut one off
//! or lose chosen messages (TiKV's `transport_simulate`, raft-rs's `harness/src/network.rs`).
//!
//! [`Filters`] is the shared set one member's [`super::transport::Transport`] consults for
//! every outgoing message; it is empty unless a test adds to it. A message a filter drops is
//! one the transport failed to deliver: raft hears of it as of a refused connection (the peer
//! unreachable, a snapshot failed). [`BlockPeers`] cuts the sending direction to some members
//! (install it on both sides for a full partition); [`DropFirst`] loses the next few messages
//! of one type.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use raft::eraftpb::{Message, MessageType};

/// Decides whether an outgoing raft message may pass.
pub trait Filter: Send + Sync + 'static {
    fn allow(&self, msg: &Message) -> bool;
    /// A short description, for logs.
    fn describe(&self) -> String;
}

/// Drops every message to the given members.
pub struct BlockPeers(pub BTreeSet<u64>);

impl Filter for BlockPeers {
    fn allow(&self, msg: &Message) -> bool {
        !self.0.contains(&msg.to)
    }

    fn describe(&self) -> String {
        format!("block members {:?}", self.0)
    }
}

/// Drops the next `count` messages of type `kind`, then lets everything pass.
pub struct DropFirst {
    kind: MessageType,
    left: AtomicUsize,
}

impl DropFirst {
    pub fn new(kind: MessageType, count: usize) -> Self {
        DropFirst {
            kind,
            left: AtomicUsize::new(count),
        }
    }

    /// How many more it will drop.
    pub fn left(&self) -> usize {
        self.left.load(Ordering::Acquire)
    }
}

impl Filter for DropFirst {
    fn allow(&self, msg: &Message) -> bool {
        if msg.get_msg_type() != self.kind {
            return true;
        }
        let took = self
            .left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        took.is_err()
    }

    fn describe(&self) -> String {
        format!("drop the next {} {:?}", self.left(), self.kind)
    }
}

/// A shared filter the test keeps a handle on (to see what it dropped).
impl<F: Filter> Filter for Arc<F> {
    fn allow(&self, msg: &Message) -> bool {
        (**self).allow(msg)
    }

    fn describe(&self) -> String {
        (**self).describe()
    }
}

/// The replaceable set of filters of one member; clones share it.
#[derive(Clone, Default)]
pub struct Filters(Arc<RwLock<Vec<Box<dyn Filter>>>>);

impl Filters {
    pub fn add(&self, f: impl Filter) {
        tracing::warn!(filter = %f.describe(), "raft message filter added (fault injection)");
        self.0.write().push(Box::new(f));
    }

    pub fn clear(&self) {
        self.0.write().clear();
    }

    pub fn describe(&self) -> Vec<String> {
        self.0.read().iter().map(|f| f.describe()).collect()
    }

    /// Whether every filter lets `msg` pass. Each filter sees the message only if the ones
    /// before it let it through.
    pub fn allow(&self, msg: &Message) -> bool {
        let filters = self.0.read();
        if filters.is_empty() {
            return true;
        }
        filters.iter().all(|f| f.allow(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: MessageType, to: u64) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.to = to;
        m
    }

    #[test]
    fn filters_block_peers_and_drop_the_first_messages_of_a_type() {
        let filters = Filters::default();
        assert!(filters.allow(&msg(MessageType::MsgSnapshot, 2)));
        let drop_one = Arc::new(DropFirst::new(MessageType::MsgSnapshot, 1));
        filters.add(drop_one.clone());
        filters.add(BlockPeers([3].into()));
        assert!(filters.allow(&msg(MessageType::MsgAppend, 2)));
        assert!(!filters.allow(&msg(MessageType::MsgSnapshot, 2)), "first");
        assert_eq!(drop_one.left(), 0);
        assert!(filters.allow(&msg(MessageType::MsgSnapshot, 2)), "second");
        assert!(!filters.allow(&msg(MessageType::MsgAppend, 3)), "blocked");
        filters.clear();
        assert!(filters.allow(&msg(MessageType::MsgAppend, 3)));
    }
}
