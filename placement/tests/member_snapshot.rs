//! A placement member that needs a snapshot gets one even when the first one sent is lost:
//! the leader hears that the send failed and sends another, instead of waiting for an answer
//! that never comes (in-process group, real raft over gRPC on loopback, real RocksDB).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::group::*;
use common::*;
use placement::member::filter::DropFirst;
use raft::eraftpb::MessageType;
use testkit::wait;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_member_catches_up_after_its_first_snapshot_is_lost() {
    let mut group = Group::start(3).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let mut pd = TestPd::connect(group.server(leader)).await;
    pd.must_bootstrap_cluster().await;
    let lost = Arc::new(DropFirst::new(MessageType::MsgSnapshot, 1));
    group
        .server(leader)
        .state()
        .writer
        .filters()
        .add(lost.clone());

    // A new member joins; it starts blank and can only catch up from a snapshot.
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let mut initial = group.configs[leader].initial_cluster.clone().unwrap();
    initial.push_str(&format!(",pd9=http://127.0.0.1:{peer_port}"));
    let config = member_config(dir.path(), "pd9", client_port, peer_port, &initial);
    let joined = placement::start(config).await.unwrap();
    let state = joined.state().clone();
    wait::for_("the leader sending its first snapshot (which is lost)")
        .within(Duration::from_secs(15))
        .every(Duration::from_millis(50))
        .until(|| lost.left() == 0)
        .await;
    // The configuration reaches a blank member only through a snapshot.
    wait::for_("the new member installing a snapshot after the lost one")
        .within(Duration::from_secs(15))
        .every(Duration::from_millis(50))
        .until(|| state.member.voters().len() == 4)
        .await;
    let leader_id = group.server(leader).state().member_id;
    assert_eq!(state.member.leader_id(), leader_id);
    joined.stop().await.unwrap();
    group.stop_all().await;
}
