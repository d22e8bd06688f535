//! Restart on the same data directory keeps cluster id, bootstrap, stores, regions, GC safe
//! point, keyspaces, ids and TSO monotonicity.

mod common;

use common::*;
use proto::pdpb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test]
async fn restart_keeps_metadata_and_tso_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = TestPd::connect(&server).await;
    let (store_id, region_id, peer_id) = pd.must_bootstrap_cluster().await;
    pd.must_put_store(store(50)).await;
    // A split applied through heartbeats (persisted behind).
    let leader = peer(peer_id, store_id);
    let (tx, rx) = mpsc::channel(4);
    let mut replies = pd
        .raw()
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for r in [
        region(region_id, b"", b"k", 2, &[leader]),
        region(500, b"k", b"", 2, &[peer(501, store_id)]),
    ] {
        let l = r.peers[0];
        tx.send(pdpb::RegionHeartbeatRequest {
            header: header(cid),
            region: Some(r),
            leader: Some(l),
            ..Default::default()
        })
        .await
        .unwrap();
        replies.message().await.unwrap().unwrap();
    }
    pd.must_update_gc_safe_point(77).await;
    let now = placement::state::now_secs();
    server
        .state()
        .commit(|view| view.plan_create_keyspace("kept", now))
        .await
        .unwrap();
    let last_ts = pd.tso().await.unwrap();
    let last_id = pd.must_alloc_id().await;
    drop(tx);
    server.stop().await.unwrap();

    let server = must_start(dir.path()).await;
    assert_eq!(server.cluster_id(), cid, "cluster id survives");
    let mut pd = TestPd::connect(&server).await;
    assert!(pd.must_is_bootstrapped().await);
    let stores = pd.must_get_all_stores(false).await;
    let ids: Vec<u64> = stores.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![store_id, 50]);
    for (key, want, want_leader) in [(&b"a"[..], region_id, peer_id), (&b"x"[..], 500, 501)] {
        let (r, l) = pd.must_get_region(key).await;
        assert_eq!(r.unwrap().id, want);
        assert_eq!(l.unwrap().id, want_leader, "last leader is remembered");
    }
    assert_eq!(pd.must_get_gc_safe_point().await, 77);
    assert!(server.state().view().keyspaces().by_name("kept").is_some());
    let ts = pd.tso().await.unwrap();
    assert!(ts > last_ts, "tso {ts} after restart must exceed {last_ts}");
    let id = pd.must_alloc_id().await;
    assert!(id > last_id, "id {id} after restart must exceed {last_id}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn configured_cluster_id_must_match_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    server.stop().await.unwrap();
    let mut config = test_config(dir.path());
    config.cluster_id = cid + 1;
    let err = placement::start(config)
        .await
        .err()
        .expect("conflict refused");
    assert!(err.to_string().contains("holds cluster"), "{err}");
    let mut config = test_config(dir.path());
    config.cluster_id = cid;
    placement::start(config)
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
}
