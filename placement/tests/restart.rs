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
    let mut pd = must_pd_client(&server).await;
    let (store_id, region_id, peer_id) = must_bootstrap(&mut pd, cid).await;
    pd.put_store(pdpb::PutStoreRequest {
        header: header(cid),
        store: Some(store(50)),
    })
    .await
    .unwrap();
    // A split applied through heartbeats (persisted behind).
    let leader = peer(peer_id, store_id);
    let (tx, rx) = mpsc::channel(4);
    let mut replies = pd
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
    pd.update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
        header: header(cid),
        safe_point: 77,
    })
    .await
    .unwrap();
    let now = placement::state::now_secs();
    server
        .state()
        .commit(|view| view.plan_create_keyspace("kept", now))
        .await
        .unwrap();
    let last_ts = tso(&mut pd, cid).await.unwrap();
    let last_id = pd
        .alloc_id(pdpb::AllocIdRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    drop(tx);
    server.stop().await.unwrap();

    let server = must_start(dir.path()).await;
    assert_eq!(server.cluster_id(), cid, "cluster id survives");
    let mut pd = must_pd_client(&server).await;
    let b = pd
        .is_bootstrapped(pdpb::IsBootstrappedRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(b.bootstrapped);
    let stores = pd
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(cid),
            exclude_tombstone_stores: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<u64> = stores.stores.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![store_id, 50]);
    for (key, want, want_leader) in [(&b"a"[..], region_id, peer_id), (&b"x"[..], 500, 501)] {
        let r = pd
            .get_region(pdpb::GetRegionRequest {
                header: header(cid),
                region_key: key.to_vec(),
                need_buckets: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.region.unwrap().id, want);
        assert_eq!(
            r.leader.unwrap().id,
            want_leader,
            "last leader is remembered"
        );
    }
    let gc = pd
        .get_gc_safe_point(pdpb::GetGcSafePointRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gc.safe_point, 77);
    assert!(server.state().view().keyspaces().by_name("kept").is_some());
    let ts = tso(&mut pd, cid).await.unwrap();
    assert!(ts > last_ts, "tso {ts} after restart must exceed {last_ts}");
    let id = pd
        .alloc_id(pdpb::AllocIdRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
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
