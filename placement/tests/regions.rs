//! Region heartbeats, lookups and splits over real gRPC.

mod common;

use common::*;
use proto::metapb;
use proto::pdpb::{self, ErrorType};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn heartbeat(
    cid: u64,
    region: metapb::Region,
    leader: metapb::Peer,
) -> pdpb::RegionHeartbeatRequest {
    pdpb::RegionHeartbeatRequest {
        header: header(cid),
        region: Some(region),
        leader: Some(leader),
        approximate_size: 3 << 20,
        approximate_keys: 1000,
        term: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn heartbeats_split_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = TestPd::connect(&server).await;
    let (store_id, region_id, peer_id) = pd.must_bootstrap_cluster().await;
    let leader = peer(peer_id, store_id);

    // The bootstrap region routes every key, with its single peer as leader.
    let (r, l) = pd.must_get_region(b"anything").await;
    assert_eq!(r.as_ref().unwrap().id, region_id);
    assert_eq!(l, Some(leader));

    // Ask for ids for a split into three.
    let parent = region(region_id, b"", b"", 1, &[leader]);
    let split = pd.must_ask_batch_split(parent.clone(), 2).await;
    assert_eq!(split.len(), 2);
    for id in &split {
        assert_eq!(id.new_peer_ids.len(), 1, "one new peer per existing peer");
        assert!(id.new_region_id > peer_id);
    }
    let single = pd.must_ask_split(parent.clone()).await;
    assert_eq!(single.new_peer_ids.len(), 1);

    // The store reports the split: [..g) keeps the id, [g..p) and [p..) are new.
    let (a, b) = (&split[0], &split[1]);
    let left = region(region_id, b"", b"g", 3, &[leader]);
    let mid_leader = peer(a.new_peer_ids[0], store_id);
    let mid = region(a.new_region_id, b"g", b"p", 3, &[mid_leader]);
    let right_leader = peer(b.new_peer_ids[0], store_id);
    let right = region(b.new_region_id, b"p", b"", 3, &[right_leader]);
    pd.must_report_batch_split(vec![mid.clone(), right.clone(), left.clone()])
        .await;
    let (r, l) = pd.must_get_region(b"h").await;
    assert_eq!(r.unwrap().id, a.new_region_id);
    assert_eq!(l, Some(mid_leader), "leader guessed from the parent");

    // Heartbeats: every one is answered with an empty response on the same stream.
    let (tx, rx) = mpsc::channel(16);
    let mut replies = pd
        .raw()
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for (r, l) in [(&left, leader), (&mid, mid_leader), (&right, right_leader)] {
        tx.send(heartbeat(cid, r.clone(), l)).await.unwrap();
        let reply = replies
            .message()
            .await
            .unwrap()
            .expect("a reply per heartbeat");
        assert_ok_header(&reply.header, cid);
        assert_eq!(reply.region_id, r.id);
        assert!(reply.change_peer.is_none() && reply.transfer_leader.is_none());
    }
    // A heartbeat from before the split is stale: answered with an error, nothing changes.
    tx.send(heartbeat(cid, parent.clone(), leader))
        .await
        .unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(error_type(&reply.header), ErrorType::Unknown);
    // A heartbeat for a store placement does not know is refused.
    let stranger = peer(9999, 4242);
    tx.send(heartbeat(
        cid,
        region(7777, b"zz", b"", 9, &[stranger]),
        stranger,
    ))
    .await
    .unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(error_type(&reply.header), ErrorType::Unknown);
    assert_eq!(server.state().streams.bound_stores(), vec![store_id]);

    // Lookups by key, by id, previous region, scans.
    let cases: &[(&[u8], u64)] = &[
        (b"", region_id),
        (b"f", region_id),
        (b"g", a.new_region_id),
        (b"zzz", b.new_region_id),
    ];
    for (key, want) in cases {
        let (r, _) = pd.must_get_region(key).await;
        assert_eq!(r.unwrap().id, *want, "key {key:?}");
    }
    let (by_id, by_id_leader) = pd.must_get_region_by_id(b.new_region_id).await;
    assert_eq!(by_id, Some(right.clone()));
    assert_eq!(by_id_leader, Some(right_leader));
    let (none, _) = pd.must_get_region_by_id(123_456).await;
    assert!(
        none.is_none(),
        "unknown region: None with an ok header, as PD"
    );
    let (prev, _) = pd.must_get_prev_region(b"q").await;
    assert_eq!(prev.unwrap().id, a.new_region_id);

    let scan = pd.must_scan_regions(b"a", b"", 0).await;
    let ids: Vec<u64> = scan
        .regions
        .iter()
        .map(|r| r.region.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, vec![region_id, a.new_region_id, b.new_region_id]);
    assert_eq!(scan.region_metas.len(), 3);
    assert_eq!(scan.leaders.len(), 3);
    let limited = pd.must_scan_regions(b"h", b"", 1).await;
    assert_eq!(limited.regions.len(), 1);

    let ranges = vec![
        pdpb::KeyRange {
            start_key: b"a".to_vec(),
            end_key: b"b".to_vec(),
        },
        pdpb::KeyRange {
            start_key: b"c".to_vec(),
            end_key: b"h".to_vec(),
        },
    ];
    let batch = pd.must_batch_scan_regions(ranges, 0, true).await;
    let ids: Vec<u64> = batch
        .iter()
        .map(|r| r.region.as_ref().unwrap().id)
        .collect();
    assert_eq!(ids, vec![region_id, a.new_region_id]);

    let region_count = server.state().view().regions().len();
    assert_eq!(region_count, 3);
    drop(tx);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn heartbeat_before_bootstrap_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut pd = TestPd::connect(&server).await;
    let (tx, rx) = mpsc::channel(4);
    let mut replies = pd
        .raw()
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let p = peer(2, 1);
    tx.send(heartbeat(cid, region(1, b"", b"", 1, &[p]), p))
        .await
        .unwrap();
    let reply = replies.message().await.unwrap().unwrap();
    assert_eq!(error_type(&reply.header), ErrorType::NotBootstrapped);
    assert!(replies.message().await.unwrap().is_none(), "stream ends");
    server.stop().await.unwrap();
}
