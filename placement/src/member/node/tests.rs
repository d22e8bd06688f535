//! The raft thread's core driven by hand, one step at a time, on a real RocksDB in a temp
//! directory: membership changes raft-rs drops are reported as failed, and a snapshot is
//! persisted in one write with its hard state (so a failure part-way leaves a directory that
//! restarts).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use prost::Message as _;
use proto::placementpb::{MemberInfo, MetaOp, MetaOps};
use raft::eraftpb::{ConfChangeType, Message, MessageType, Snapshot};
use raft::{StateRole, Storage};
use tokio::sync::oneshot;

use super::{Msg, Node};
use crate::member::filter::Filters;
use crate::member::transport::Transport;
use crate::member::{log, member_id, raft_logger, Setup, Shared};
use crate::storage::MetaStore;

fn member(name: &str) -> MemberInfo {
    MemberInfo {
        id: member_id(name),
        name: name.to_owned(),
        client_urls: Vec::new(),
        // Nothing listens here: messages to it are lost, which these tests do not mind.
        peer_urls: vec!["http://127.0.0.1:1".to_owned()],
    }
}

/// A member `a` of a group of `names`, on its own database.
struct Harness {
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    store: MetaStore,
    setup: Setup,
}

impl Harness {
    fn new(names: &[&str]) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(dir.path()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let setup = Setup {
            me: member(names[0]),
            initial: names.iter().map(|n| member(n)).collect(),
        };
        Harness {
            runtime,
            _dir: dir,
            store,
            setup,
        }
    }

    /// Opens the member's raft state (a new one from the initial members, or what the
    /// directory holds) and builds its node.
    fn must_node(&self) -> Node {
        let voters: Vec<u64> = self.setup.initial.iter().map(|m| m.id).collect();
        let restored = log::restore(&self.store, &voters).unwrap();
        let shared = Arc::new(Shared::new(&self.setup));
        // What becomes of sent messages is not fed back here.
        let (feedback, _) = crossbeam_channel::unbounded();
        let transport = Transport::new(
            self.runtime.handle().clone(),
            shared.clone(),
            feedback,
            Filters::default(),
        );
        let (events, _) = tokio::sync::mpsc::unbounded_channel();
        Node::new(
            restored,
            self.store.clone(),
            shared,
            transport,
            events,
            &raft_logger(),
        )
        .unwrap()
    }
}

/// Handles readies until there are none left.
fn must_settle(node: &mut Node) {
    for _ in 0..16 {
        if !node.raw.has_ready() {
            return;
        }
        node.on_ready().unwrap();
    }
    panic!("the node kept producing readies");
}

#[test]
fn a_membership_change_raft_drops_is_reported_as_failed() {
    let h = Harness::new(&["a"]);
    let mut node = h.must_node();
    node.raw.campaign().unwrap();
    must_settle(&mut node);
    assert_eq!(node.raw.raft.state, StateRole::Leader);
    // Two changes back to back: raft-rs accepts the second proposal but turns it into an
    // empty entry, because the first is not applied yet.
    let (first, first_done) = oneshot::channel();
    let (second, second_done) = oneshot::channel();
    for (name, ack) in [("b", first), ("c", second)] {
        node.handle(Msg::ConfChange {
            change: ConfChangeType::AddNode,
            member: member(name),
            ack,
        });
    }
    must_settle(&mut node);
    let mut first_done = first_done;
    let mut second_done = second_done;
    first_done
        .try_recv()
        .expect("the first change is answered")
        .expect("the first change is applied");
    let err = second_done
        .try_recv()
        .expect("the second change is answered")
        .expect_err("the dropped change must not be reported as done");
    assert!(err.to_string().contains("membership"), "{err}");
    let mut voters = node.shared.voters();
    voters.sort_unstable();
    let mut want = vec![member_id("a"), member_id("b")];
    want.sort_unstable();
    assert_eq!(voters, want, "only the first change took effect");
}

#[test]
fn a_membership_entry_raft_emptied_is_answered_as_failed() {
    let h = Harness::new(&["a"]);
    let mut node = h.must_node();
    node.raw.campaign().unwrap();
    must_settle(&mut node);
    // Straight to raft-rs, past the node's own check: the second change is proposed while
    // the first is not applied, and raft-rs appends an empty entry in its place.
    let mut acks = Vec::new();
    for name in ["b", "c"] {
        let mut cc = raft::eraftpb::ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = member_id(name);
        node.raw
            .propose_conf_change(member(name).encode_to_vec(), cc)
            .unwrap();
        let (ack, done) = oneshot::channel();
        node.wait_for_last_entry(true, ack);
        acks.push(done);
    }
    must_settle(&mut node);
    let results: Vec<bool> = acks
        .iter_mut()
        .map(|done| done.try_recv().expect("answered").is_ok())
        .collect();
    assert_eq!(results, [true, false]);
}

/// A snapshot from the leader `b` at `index` in `term`, holding one metadata record.
fn snapshot_message(to: u64, index: u64, term: u64) -> Message {
    let ops = MetaOps {
        ops: vec![MetaOp {
            key: b"m/tso".to_vec(),
            value: 77u64.to_be_bytes().to_vec(),
            delete: false,
        }],
    };
    let mut snap = Snapshot::default();
    snap.set_data(ops.encode_to_vec().into());
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.mut_conf_state().voters = vec![to, member_id("b")];
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    m.from = member_id("b");
    m.to = to;
    m.term = term;
    m.set_snapshot(snap);
    m
}

#[test]
fn a_snapshot_interrupted_by_a_failed_write_leaves_a_member_that_restarts() {
    for writes_before_failure in 0..3 {
        let h = Harness::new(&["a", "b"]);
        let mut node = h.must_node();
        let me = h.setup.me.id;
        node.handle(Msg::Step(vec![snapshot_message(me, 10, 2)]));
        // The disk fills up somewhere while the snapshot is persisted; the member stops.
        h.store.faults().fail_writes_after(writes_before_failure);
        let _ = node.on_ready();
        drop(node);
        h.store.faults().heal_writes();
        let restarted = std::panic::catch_unwind(AssertUnwindSafe(|| h.must_node()));
        let node = restarted.unwrap_or_else(|_| {
            panic!("restart failed after {writes_before_failure} successful write(s)")
        });
        // Either nothing of the snapshot was kept, or all of it.
        let hs = node.log.mem().initial_state().unwrap().hard_state;
        let first = node.log.mem().first_index().unwrap();
        let tso = h.store.load().unwrap().tso_limit;
        match first {
            2 => assert_eq!((hs.commit, tso), (1, 0), "nothing kept"),
            11 => assert_eq!((hs.commit, hs.term, tso), (10, 2, 77), "all kept"),
            other => panic!("log starts at {other} after a restart"),
        }
    }
}
