//! `keyspacepb.Keyspace` and the etcd v3 subset client-go needs, over real gRPC.

mod common;

use common::*;
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::{MemberListRequest, RangeRequest};
use proto::keyspacepb::{GetAllKeyspacesRequest, KeyspaceState, LoadKeyspaceRequest};
use proto::pdpb::ErrorType;

const SAFE_POINT_KEY: &[u8] = b"/tidb/store/gcworker/saved_safe_point";

#[tokio::test]
async fn load_keyspace_default_and_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut ks = must_keyspace_client(&server).await;
    let resp = ks
        .load_keyspace(LoadKeyspaceRequest {
            header: header(cid),
            name: "DEFAULT".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ok_header(&resp.header, cid);
    let meta = resp.keyspace.unwrap();
    assert_eq!(meta.id, 0);
    assert_eq!(meta.state, KeyspaceState::Enabled as i32);

    let missing = ks
        .load_keyspace(LoadKeyspaceRequest {
            header: header(cid),
            name: "nope".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&missing.header), ErrorType::EntryNotFound);
    assert!(missing.keyspace.is_none());

    let all = ks
        .get_all_keyspaces(GetAllKeyspacesRequest {
            header: header(cid),
            start_id: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.keyspaces.len(), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn etcd_member_list_and_safe_point_range() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let mut cluster = ClusterClient::connect(server.url()).await.unwrap();
    let members = cluster
        .member_list(MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    let h = members.header.unwrap();
    assert_eq!(h.cluster_id, cid);
    assert_ne!(h.member_id, 0);
    assert!(h.revision > 0);
    assert_eq!(members.members.len(), 1);
    assert_eq!(members.members[0].id, h.member_id);
    assert_eq!(members.members[0].client_ur_ls, vec![server.url()]);
    assert!(!members.members[0].peer_ur_ls.is_empty());

    let mut kv = KvClient::connect(server.url()).await.unwrap();
    let range = |key: &[u8]| RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    let empty = kv.range(range(SAFE_POINT_KEY)).await.unwrap().into_inner();
    assert!(empty.kvs.is_empty(), "unset safe point reads as absent");
    assert_eq!(empty.count, 0);

    let mut pd = TestPd::connect(&server).await;
    pd.must_bootstrap_cluster().await;
    pd.must_update_gc_safe_point(4242).await;
    let got = kv.range(range(SAFE_POINT_KEY)).await.unwrap().into_inner();
    assert_eq!(got.header.unwrap().cluster_id, cid);
    assert_eq!(got.count, 1);
    assert_eq!(got.kvs[0].key, SAFE_POINT_KEY.to_vec());
    assert_eq!(got.kvs[0].value, b"4242".to_vec());
    let other = kv.range(range(b"/tidb/other")).await.unwrap().into_inner();
    assert!(other.kvs.is_empty());
    server.stop().await.unwrap();
}
