//! `pdpb.PD` over real gRPC against an in-process placement: membership, TSO, bootstrap,
//! stores, region heartbeats and lookups, splits, GC safe points and cluster-id checks.

mod common;

use common::*;
use proto::pdpb::{self, ErrorType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

#[tokio::test]
async fn get_members_needs_no_header() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let mut pd = TestPd::connect(&server).await;
    let resp = pd.must_get_members().await;
    assert_ne!(server.cluster_id(), 0);
    let leader = resp.leader.expect("leader is set");
    assert_eq!(leader.client_urls, vec![server.url()]);
    assert_eq!(leader.name, "pd-test");
    assert_eq!(resp.members, vec![leader.clone()]);
    assert_eq!(resp.etcd_leader, Some(leader));

    let info = pd.must_get_cluster_info().await;
    assert_eq!(
        info.service_modes,
        vec![pdpb::ServiceMode::PdSvcMode as i32]
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tso_stream_answers_each_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = TestPd::connect(&server).await;
    let (tx, rx) = mpsc::channel(16);
    let mut responses = pd
        .raw()
        .tso(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let counts = [1u32, 3, 64, 1, 10];
    let mut last = 0u64;
    for round in 0..3 {
        for &count in &counts {
            tx.send(pdpb::TsoRequest {
                header: header(cid),
                count,
                dc_location: String::new(),
            })
            .await
            .unwrap();
        }
        for &count in &counts {
            let resp = responses
                .message()
                .await
                .unwrap()
                .expect("a response per request");
            assert_ok_header(&resp.header, cid);
            assert_eq!(
                resp.count, count,
                "round {round}: counts come back in order"
            );
            let ts = resp.timestamp.unwrap();
            assert!(ts.logical < 1 << 18);
            let largest = ((ts.physical as u64) << 18) | ts.logical as u64;
            let smallest = largest - u64::from(count) + 1;
            assert!(smallest > last, "batch starts at {smallest} after {last}");
            last = largest;
        }
    }
    // The physical part is wall-clock milliseconds.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!((last >> 18).abs_diff(now) < 10_000);

    // A wrong cluster id ends the stream with FailedPrecondition.
    tx.send(pdpb::TsoRequest {
        header: header(cid + 1),
        count: 1,
        dc_location: String::new(),
    })
    .await
    .unwrap();
    let err = responses.message().await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn lookups_before_bootstrap_say_not_bootstrapped() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let mut pd = TestPd::connect(&server).await;
    assert!(!pd.must_is_bootstrapped().await);
    let region = pd.get_region(b"a").await.unwrap();
    assert_eq!(error_type(&region.header), ErrorType::NotBootstrapped);
    let store = pd.get_store(1).await.unwrap();
    assert_eq!(error_type(&store.header), ErrorType::NotBootstrapped);
    let all = pd.get_all_stores(false).await.unwrap();
    assert_eq!(error_type(&all.header), ErrorType::NotBootstrapped);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_cluster_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = TestPd::connect(&server).await;
    // The header is what this test is about: requests are made by hand.
    for h in [header(cid + 1), None] {
        let err = pd
            .raw()
            .get_region(pdpb::GetRegionRequest {
                header: h,
                region_key: vec![],
                need_buckets: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert!(err.message().contains("mismatch cluster id"));
    }
    let err = pd
        .raw()
        .alloc_id(pdpb::AllocIdRequest {
            header: header(cid + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bootstrap_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = TestPd::connect(&server).await;
    let (store_id, region_id, peer_id) = pd.must_bootstrap_cluster().await;
    assert!(store_id < region_id && region_id < peer_id, "ids increase");

    let whole = region(region_id, b"", b"", 1, &[peer(peer_id, store_id)]);
    let again = pd.bootstrap(store(store_id), whole).await.unwrap();
    assert_eq!(error_type(&again.header), ErrorType::AlreadyBootstrapped);
    assert!(pd.must_is_bootstrapped().await);

    pd.must_put_store(store(100)).await;
    let dup = pd
        .put_store(proto::metapb::Store {
            id: 101,
            ..store(100)
        })
        .await
        .unwrap();
    assert_eq!(
        error_type(&dup.header),
        ErrorType::Unknown,
        "duplicated address"
    );

    let got = pd.must_get_store(100).await;
    assert_eq!(got.address, store(100).address);
    let missing = pd.get_store(999).await.unwrap();
    assert_eq!(error_type(&missing.header), ErrorType::Unknown);
    assert!(missing.store.is_none());

    pd.must_store_heartbeat(pdpb::StoreStats {
        store_id: 100,
        capacity: 1 << 30,
        available: 1 << 29,
        ..Default::default()
    })
    .await;
    let got = pd.get_store(100).await.unwrap();
    assert_eq!(got.stats.unwrap().capacity, 1 << 30);

    let all = pd.must_get_all_stores(true).await;
    let ids: Vec<u64> = all.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![store_id, 100]);

    assert_eq!(pd.must_get_cluster_config().await.max_peer_count, 3);
    pd.must_put_cluster_config(proto::metapb::Cluster {
        id: cid,
        max_peer_count: 1,
    })
    .await;
    assert_eq!(pd.must_get_cluster_config().await.max_peer_count, 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn gc_safe_point_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let mut pd = TestPd::connect(&server).await;
    pd.must_bootstrap_cluster().await;
    for (ask, want) in [(100, 100), (50, 100), (100, 100), (200, 200)] {
        let kept = pd.must_update_gc_safe_point(ask).await;
        assert_eq!(kept, want, "asked {ask}");
    }
    assert_eq!(pd.must_get_gc_safe_point().await, 200);

    let svc = pd
        .must_update_service_gc_safe_point(b"cdc", 3600, 300)
        .await;
    assert_eq!(
        svc.service_id,
        b"gc_worker".to_vec(),
        "gc_worker at 0 is the minimum"
    );
    assert_eq!(svc.min_safe_point, 0);
    server.stop().await.unwrap();
}
