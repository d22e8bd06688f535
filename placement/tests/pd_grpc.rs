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
    let mut pd = must_pd_client(&server).await;
    let resp = pd
        .get_members(pdpb::GetMembersRequest { header: None })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&resp.header, server.cluster_id());
    assert_ne!(server.cluster_id(), 0);
    let leader = resp.leader.expect("leader is set");
    assert_eq!(leader.client_urls, vec![server.url()]);
    assert_eq!(leader.name, "pd-test");
    assert_eq!(resp.members, vec![leader.clone()]);
    assert_eq!(resp.etcd_leader, Some(leader));

    let info = pd
        .get_cluster_info(pdpb::GetClusterInfoRequest { header: None })
        .await
        .unwrap()
        .into_inner();
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
    let mut pd = must_pd_client(&server).await;
    let (tx, rx) = mpsc::channel(16);
    let mut responses = pd.tso(ReceiverStream::new(rx)).await.unwrap().into_inner();
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
    let cid = server.cluster_id();
    let mut pd = must_pd_client(&server).await;
    let resp = pd
        .is_bootstrapped(pdpb::IsBootstrappedRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!resp.bootstrapped);
    let region = pd
        .get_region(pdpb::GetRegionRequest {
            header: header(cid),
            region_key: b"a".to_vec(),
            need_buckets: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&region.header), ErrorType::NotBootstrapped);
    let store = pd
        .get_store(pdpb::GetStoreRequest {
            header: header(cid),
            store_id: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&store.header), ErrorType::NotBootstrapped);
    let all = pd
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(cid),
            exclude_tombstone_stores: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&all.header), ErrorType::NotBootstrapped);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_cluster_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = must_pd_client(&server).await;
    for h in [header(cid + 1), None] {
        let err = pd
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
    let mut pd = must_pd_client(&server).await;
    let (store_id, region_id, peer_id) = must_bootstrap(&mut pd, cid).await;
    assert!(store_id < region_id && region_id < peer_id, "ids increase");

    let again = pd
        .bootstrap(pdpb::BootstrapRequest {
            header: header(cid),
            store: Some(store(store_id)),
            region: Some(region(region_id, b"", b"", 1, &[peer(peer_id, store_id)])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&again.header), ErrorType::AlreadyBootstrapped);
    let b = pd
        .is_bootstrapped(pdpb::IsBootstrappedRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(b.bootstrapped);

    let put = pd
        .put_store(pdpb::PutStoreRequest {
            header: header(cid),
            store: Some(store(100)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&put.header, cid);
    let dup = pd
        .put_store(pdpb::PutStoreRequest {
            header: header(cid),
            store: Some(proto::metapb::Store {
                id: 101,
                ..store(100)
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        error_type(&dup.header),
        ErrorType::Unknown,
        "duplicated address"
    );

    let got = pd
        .get_store(pdpb::GetStoreRequest {
            header: header(cid),
            store_id: 100,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&got.header, cid);
    assert_eq!(got.store.unwrap().address, store(100).address);
    let missing = pd
        .get_store(pdpb::GetStoreRequest {
            header: header(cid),
            store_id: 999,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&missing.header), ErrorType::Unknown);
    assert!(missing.store.is_none());

    let hb = pd
        .store_heartbeat(pdpb::StoreHeartbeatRequest {
            header: header(cid),
            stats: Some(pdpb::StoreStats {
                store_id: 100,
                capacity: 1 << 30,
                available: 1 << 29,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&hb.header, cid);
    let got = pd
        .get_store(pdpb::GetStoreRequest {
            header: header(cid),
            store_id: 100,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.stats.unwrap().capacity, 1 << 30);

    let all = pd
        .get_all_stores(pdpb::GetAllStoresRequest {
            header: header(cid),
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&all.header, cid);
    let ids: Vec<u64> = all.stores.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![store_id, 100]);

    let cfg = pd
        .get_cluster_config(pdpb::GetClusterConfigRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.cluster.unwrap().max_peer_count, 3);
    let put = pd
        .put_cluster_config(pdpb::PutClusterConfigRequest {
            header: header(cid),
            cluster: Some(proto::metapb::Cluster {
                id: cid,
                max_peer_count: 1,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&put.header, cid);
    let cfg = pd
        .get_cluster_config(pdpb::GetClusterConfigRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cfg.cluster.unwrap().max_peer_count, 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn gc_safe_point_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = must_pd_client(&server).await;
    must_bootstrap(&mut pd, cid).await;
    for (ask, want) in [(100, 100), (50, 100), (100, 100), (200, 200)] {
        let resp = pd
            .update_gc_safe_point(pdpb::UpdateGcSafePointRequest {
                header: header(cid),
                safe_point: ask,
            })
            .await
            .unwrap()
            .into_inner();
        assert_ok_header(&resp.header, cid);
        assert_eq!(resp.new_safe_point, want, "asked {ask}");
    }
    let got = pd
        .get_gc_safe_point(pdpb::GetGcSafePointRequest {
            header: header(cid),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.safe_point, 200);

    let svc = pd
        .update_service_gc_safe_point(pdpb::UpdateServiceGcSafePointRequest {
            header: header(cid),
            service_id: b"cdc".to_vec(),
            ttl: 3600,
            safe_point: 300,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&svc.header, cid);
    assert_eq!(
        svc.service_id,
        b"gc_worker".to_vec(),
        "gc_worker at 0 is the minimum"
    );
    assert_eq!(svc.min_safe_point, 0);
    server.stop().await.unwrap();
}
