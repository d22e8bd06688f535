//! Filter factories for raft tests, after TiKV's `test_raftstore` (`PartitionFilterFactory`,
//! `IsolationFilterFactory`, `RegionPacketFilter`).
//!
//! A store's [`Filters`](super::transport::Filters) only see its outgoing messages, so a cut
//! in both directions needs filters on both sides. A [`FilterFactory`] says which filters each
//! store gets ([`TestCluster::add_send_filter`](super::test_cluster::TestCluster) installs them
//! everywhere): [`Partition`] cuts two groups of stores apart, [`Isolation`] cuts one store
//! off, and [`RegionPacketFilter`] drops one region's messages (of chosen types) sent by a
//! store, received by it, or both, letting the first `n` through with [`allow`](
//! RegionPacketFilter::allow).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use proto::storepb::RaftMessage;
use raft::prelude::MessageType;

use super::transport::{BlockStores, Filter};

/// The filters each store of a test cluster gets.
pub trait FilterFactory {
    /// The filters for the outgoing traffic of `store_id`.
    fn generate(&self, store_id: u64) -> Vec<Box<dyn Filter>>;
}

/// Cuts stores `left` off from stores `right`, both ways (each side keeps its own links).
pub struct Partition {
    pub left: Vec<u64>,
    pub right: Vec<u64>,
}

impl FilterFactory for Partition {
    fn generate(&self, store_id: u64) -> Vec<Box<dyn Filter>> {
        let other = if self.left.contains(&store_id) {
            &self.right
        } else if self.right.contains(&store_id) {
            &self.left
        } else {
            return Vec::new();
        };
        vec![Box::new(BlockStores(other.iter().copied().collect()))]
    }
}

/// Cuts one store off from all others, both ways.
pub struct Isolation {
    pub store_id: u64,
    /// Every store of the cluster.
    pub stores: Vec<u64>,
}

impl FilterFactory for Isolation {
    fn generate(&self, store_id: u64) -> Vec<Box<dyn Filter>> {
        let blocked: HashSet<u64> = if store_id == self.store_id {
            self.stores
                .iter()
                .copied()
                .filter(|s| *s != store_id)
                .collect()
        } else {
            [self.store_id].into()
        };
        vec![Box::new(BlockStores(blocked))]
    }
}

/// Which side of a store a [`RegionPacketFilter`] watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Messages the store sends.
    Send,
    /// Messages sent to the store.
    Recv,
    Both,
}

/// Drops the messages of one region sent by, or to, one store (of the chosen types, all by
/// default), after letting the first `n` of them through.
#[derive(Clone)]
pub struct RegionPacketFilter {
    region_id: u64,
    store_id: u64,
    direction: Direction,
    types: Option<HashSet<i32>>,
    /// Matching messages still let through; shared by the filters made on every store.
    allowance: Arc<AtomicUsize>,
}

impl RegionPacketFilter {
    /// Drops every message of `region_id` that `store_id` sends.
    pub fn new(region_id: u64, store_id: u64) -> Self {
        RegionPacketFilter {
            region_id,
            store_id,
            direction: Direction::Send,
            types: None,
            allowance: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// Only messages of `t` (may be given more than once).
    pub fn msg_type(mut self, t: MessageType) -> Self {
        self.types.get_or_insert_with(HashSet::new).insert(t as i32);
        self
    }

    /// Lets the first `n` matching messages through.
    pub fn allow(self, n: usize) -> Self {
        self.allowance.store(n, Ordering::SeqCst);
        self
    }

    /// Whether `msg`, sent by the store this copy is installed on, is one to drop.
    fn matches(&self, msg: &RaftMessage, sender: u64) -> bool {
        if msg.region_id != self.region_id {
            return false;
        }
        let to = msg.to_peer.map_or(0, |p| p.store_id);
        let sent = sender == self.store_id && self.direction != Direction::Recv;
        let received = to == self.store_id && self.direction != Direction::Send;
        if !sent && !received {
            return false;
        }
        let Some(types) = &self.types else {
            return true;
        };
        <raft::prelude::Message as protobuf::Message>::parse_from_bytes(&msg.message)
            .is_ok_and(|m| types.contains(&(m.get_msg_type() as i32)))
    }
}

/// One store's copy of a [`RegionPacketFilter`].
struct Installed {
    filter: RegionPacketFilter,
    sender: u64,
}

impl Filter for Installed {
    fn allow(&self, msg: &RaftMessage) -> bool {
        if !self.filter.matches(msg, self.sender) {
            return true;
        }
        self.filter
            .allowance
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn describe(&self) -> String {
        let f = &self.filter;
        format!(
            "drop region {} messages {:?} store {} (types {:?})",
            f.region_id, f.direction, f.store_id, f.types
        )
    }
}

impl FilterFactory for RegionPacketFilter {
    fn generate(&self, store_id: u64) -> Vec<Box<dyn Filter>> {
        let installed = Installed {
            filter: self.clone(),
            sender: store_id,
        };
        vec![Box::new(installed)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::metapb;

    fn msg(region_id: u64, from: u64, to: u64, t: MessageType) -> RaftMessage {
        let mut m = raft::prelude::Message::default();
        m.set_msg_type(t);
        RaftMessage {
            region_id,
            from_peer: Some(metapb::Peer {
                id: from * 100,
                store_id: from,
                ..Default::default()
            }),
            to_peer: Some(metapb::Peer {
                id: to * 100,
                store_id: to,
                ..Default::default()
            }),
            message: protobuf::Message::write_to_bytes(&m).unwrap(),
            ..Default::default()
        }
    }

    /// Whether `msg` passes the filters `factory` gives its sender.
    fn passes(factory: &dyn FilterFactory, m: &RaftMessage) -> bool {
        let sender = m.from_peer.unwrap().store_id;
        factory.generate(sender).iter().all(|f| f.allow(m))
    }

    #[test]
    fn a_partition_cuts_both_ways_and_keeps_each_side_whole() {
        let p = Partition {
            left: vec![1],
            right: vec![2, 3],
        };
        let app = MessageType::MsgAppend;
        assert!(!passes(&p, &msg(1, 1, 2, app)));
        assert!(!passes(&p, &msg(1, 3, 1, app)));
        assert!(passes(&p, &msg(1, 2, 3, app)));
        assert!(
            passes(&p, &msg(1, 4, 1, app)),
            "a store in neither group is untouched"
        );
    }

    #[test]
    fn an_isolated_store_neither_sends_nor_receives() {
        let i = Isolation {
            store_id: 2,
            stores: vec![1, 2, 3],
        };
        let app = MessageType::MsgAppend;
        assert!(!passes(&i, &msg(1, 2, 1, app)));
        assert!(!passes(&i, &msg(1, 3, 2, app)));
        assert!(passes(&i, &msg(1, 1, 3, app)));
    }

    #[test]
    fn a_region_packet_filter_matches_region_direction_and_type_and_allows_n() {
        let hb = MessageType::MsgHeartbeat;
        let app = MessageType::MsgAppend;
        let send = RegionPacketFilter::new(7, 1).msg_type(app);
        assert!(!passes(&send, &msg(7, 1, 2, app)));
        assert!(passes(&send, &msg(7, 1, 2, hb)), "other types pass");
        assert!(passes(&send, &msg(8, 1, 2, app)), "other regions pass");
        assert!(passes(&send, &msg(7, 2, 1, app)), "received messages pass");
        let recv = RegionPacketFilter::new(7, 1).direction(Direction::Recv);
        assert!(!passes(&recv, &msg(7, 2, 1, hb)));
        assert!(passes(&recv, &msg(7, 1, 2, hb)));
        let both = RegionPacketFilter::new(7, 1).direction(Direction::Both);
        assert!(!passes(&both, &msg(7, 2, 1, hb)) && !passes(&both, &msg(7, 1, 3, hb)));
        // The first two matching messages pass, from whichever store, then none.
        let two = RegionPacketFilter::new(7, 1)
            .direction(Direction::Both)
            .allow(2);
        let filters: Vec<_> = [1, 2].iter().map(|s| two.generate(*s)).collect();
        let pass = |f: &Vec<Box<dyn Filter>>, m| f.iter().all(|f| f.allow(&m));
        assert!(pass(&filters[0], msg(7, 1, 2, hb)));
        assert!(pass(&filters[1], msg(7, 2, 1, hb)));
        assert!(!pass(&filters[0], msg(7, 1, 2, hb)));
        assert!(!pass(&filters[1], msg(7, 2, 1, hb)));
        assert!(
            pass(&filters[1], msg(7, 2, 3, hb)),
            "not to or from store 1"
        );
    }
}
