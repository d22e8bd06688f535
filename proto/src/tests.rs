//! Wire-format regression tests: known bytes and field numbers that must match kvproto.

use prost::Message;

use crate::{deadlock, errorpb, etcdserverpb, keyspacepb, kvrpcpb, metapb, pdpb, storepb, tikvpb};

fn enc<M: Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// Encodes a protobuf tag (field number + wire type) as varint bytes.
fn tag(field: u32, wire_type: u32) -> Vec<u8> {
    let mut v = Vec::new();
    prost::encoding::encode_varint(u64::from(field << 3 | wire_type), &mut v);
    v
}

const VARINT: u32 = 0;
const LEN: u32 = 2;

#[test]
fn raw_get_request_bytes() {
    let req = kvrpcpb::RawGetRequest {
        context: Some(kvrpcpb::Context {
            region_id: 1,
            ..Default::default()
        }),
        key: b"k".to_vec(),
        cf: "write".into(),
    };
    let want: Vec<u8> = [
        &[0x0a, 0x02, 0x08, 0x01][..], // context (1) { region_id (1) = 1 }
        &[0x12, 0x01, b'k'],           // key (2)
        &[0x1a, 0x05],                 // cf (3)
        b"write",
    ]
    .concat();
    assert_eq!(enc(&req), want);
}

#[test]
fn context_field_numbers() {
    let ctx = kvrpcpb::Context {
        api_version: kvrpcpb::ApiVersion::V2 as i32,
        ..Default::default()
    };
    assert_eq!(enc(&ctx), [tag(21, VARINT), vec![2]].concat());
    let ctx = kvrpcpb::Context {
        keyspace_id: 7,
        ..Default::default()
    };
    assert_eq!(enc(&ctx), [tag(32, VARINT), vec![7]].concat());
    let ctx = kvrpcpb::Context {
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 2,
        }),
        peer: Some(metapb::Peer {
            id: 3,
            store_id: 4,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        enc(&ctx),
        [0x12, 0x04, 0x08, 0x01, 0x10, 0x02, 0x1a, 0x04, 0x08, 0x03, 0x10, 0x04]
    );
}

#[test]
fn prewrite_pessimistic_actions_is_field_7_and_accepts_bools() {
    use kvrpcpb::prewrite_request::PessimisticAction;
    let req = kvrpcpb::PrewriteRequest {
        pessimistic_actions: vec![
            PessimisticAction::DoPessimisticCheck as i32,
            PessimisticAction::SkipPessimisticCheck as i32,
        ],
        ..Default::default()
    };
    // Packed repeated enum.
    assert_eq!(enc(&req), [0x3a, 0x02, 0x01, 0x00]);

    // Old clients send `repeated bool is_pessimistic_lock = 7`, packed or not.
    let unpacked = [0x38, 0x01, 0x38, 0x00];
    let dec = kvrpcpb::PrewriteRequest::decode(&unpacked[..]).unwrap();
    assert_eq!(
        dec.pessimistic_actions().collect::<Vec<_>>(),
        [
            PessimisticAction::DoPessimisticCheck,
            PessimisticAction::SkipPessimisticCheck
        ]
    );

    let req = kvrpcpb::PrewriteRequest {
        try_one_pc: true,
        use_async_commit: true,
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x58, 0x01, 0x68, 0x01]); // 11, 13

    let resp = kvrpcpb::PrewriteResponse {
        min_commit_ts: 5,
        one_pc_commit_ts: 6,
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x18, 0x05, 0x20, 0x06]);
}

#[test]
fn check_txn_status_response_fields() {
    let resp = kvrpcpb::CheckTxnStatusResponse {
        lock_ttl: 3,
        commit_version: 4,
        action: kvrpcpb::Action::MinCommitTsPushed as i32,
        lock_info: Some(kvrpcpb::LockInfo {
            lock_version: 9,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(
        enc(&resp),
        [0x18, 0x03, 0x20, 0x04, 0x28, 0x03, 0x32, 0x02, 0x10, 0x09]
    );
    let req = kvrpcpb::CheckTxnStatusRequest {
        verify_is_primary: true,
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x48, 0x01]);
}

#[test]
fn key_error_and_lock_info_fields() {
    let err = kvrpcpb::KeyError {
        primary_mismatch: Some(kvrpcpb::PrimaryMismatch::default()),
        ..Default::default()
    };
    assert_eq!(enc(&err), [0x5a, 0x00]); // 11
    let err = kvrpcpb::KeyError {
        txn_not_found: Some(kvrpcpb::TxnNotFound {
            start_ts: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(enc(&err), [0x42, 0x02, 0x08, 0x01]); // 8
    let lock = kvrpcpb::LockInfo {
        lock_type: kvrpcpb::Op::PessimisticLock as i32,
        min_commit_ts: 2,
        ..Default::default()
    };
    assert_eq!(enc(&lock), [0x30, 0x05, 0x48, 0x02]); // 6, 9
    let txn = kvrpcpb::TxnInfo {
        is_txn_file: true,
        ..Default::default()
    };
    assert_eq!(enc(&txn), [tag(100, VARINT), vec![1]].concat());
}

#[test]
fn pessimistic_lock_response_fields() {
    let resp = kvrpcpb::PessimisticLockResponse {
        values: vec![b"v".to_vec()],
        not_founds: vec![true],
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x2a, 0x01, b'v', 0x32, 0x01, 0x01]); // 5, 6
}

#[test]
fn raw_cas_and_ttl_fields() {
    let resp = kvrpcpb::RawCasResponse {
        succeed: true,
        previous_not_exist: true,
        previous_value: b"p".to_vec(),
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x18, 0x01, 0x20, 0x01, 0x2a, 0x01, b'p']);
    let req = kvrpcpb::RawCasRequest {
        cf: "c".into(),
        ttl: 1,
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x32, 0x01, b'c', 0x38, 0x01]);
    let resp = kvrpcpb::RawGetKeyTtlResponse {
        ttl: 2,
        not_found: true,
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x18, 0x02, 0x20, 0x01]);
    let req = kvrpcpb::RawBatchPutRequest {
        ttls: vec![1],
        for_cas: true,
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x28, 0x01, 0x32, 0x01, 0x01]);
}

#[test]
fn region_error_fields() {
    let err = errorpb::Error {
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: vec![metapb::Region {
                id: 1,
                ..Default::default()
            }],
        }),
        ..Default::default()
    };
    assert_eq!(enc(&err), [0x2a, 0x04, 0x0a, 0x02, 0x08, 0x01]);
    let err = errorpb::Error {
        not_leader: Some(errorpb::NotLeader {
            region_id: 1,
            leader: None,
        }),
        ..Default::default()
    };
    assert_eq!(enc(&err), [0x12, 0x02, 0x08, 0x01]);
    let err = errorpb::Error {
        key_not_in_region: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(enc(&err), [0x22, 0x00]);
    let err = errorpb::Error {
        bucket_version_not_match: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(enc(&err), [tag(21, LEN), vec![0]].concat());
}

#[test]
fn metapb_fields() {
    let store = metapb::Store {
        node_state: metapb::NodeState::Serving as i32,
        state: metapb::StoreState::Tombstone as i32,
        ..Default::default()
    };
    assert_eq!(enc(&store), [0x18, 0x02, 0x68, 0x01]); // 3, 13
    let region = metapb::Region {
        flashback_start_ts: 1,
        ..Default::default()
    };
    assert_eq!(enc(&region), [0x40, 0x01]); // 8
    let peer = metapb::Peer {
        role: metapb::PeerRole::Learner as i32,
        is_witness: true,
        ..Default::default()
    };
    assert_eq!(enc(&peer), [0x18, 0x01, 0x20, 0x01]);
}

#[test]
fn pd_fields() {
    let resp = pdpb::GetMembersResponse {
        header: Some(pdpb::ResponseHeader {
            cluster_id: 1,
            error: None,
        }),
        leader: Some(pdpb::Member {
            member_id: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x0a, 0x02, 0x08, 0x01, 0x1a, 0x02, 0x10, 0x02]);
    let req = pdpb::TsoRequest {
        count: 3,
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x10, 0x03]);
    let resp = pdpb::TsoResponse {
        timestamp: Some(pdpb::Timestamp {
            physical: 1,
            logical: 2,
            suffix_bits: 0,
        }),
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x1a, 0x04, 0x08, 0x01, 0x10, 0x02]);
    let resp = pdpb::GetRegionResponse {
        leader: Some(Default::default()),
        buckets: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x1a, 0x00, 0x3a, 0x00]);
    let req = pdpb::BatchScanRegionsRequest {
        contain_all_key_range: true,
        limit: 1,
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x20, 0x01, 0x28, 0x01]);
    let resp = pdpb::UpdateGcSafePointResponse {
        new_safe_point: 5,
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x10, 0x05]);
    let change = pdpb::ChangePeer {
        change_type: crate::eraftpb::ConfChangeType::AddLearnerNode as i32,
        ..Default::default()
    };
    assert_eq!(enc(&change), [0x10, 0x02]);
    let resp = pdpb::RegionHeartbeatResponse {
        change_peer_v2: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x4a, 0x00]);
    let err = pdpb::Error {
        r#type: pdpb::ErrorType::RegionsNotContainAllKeyRange as i32,
        message: String::new(),
    };
    assert_eq!(enc(&err), [0x08, 0x0c]);
}

#[test]
fn keyspace_and_etcd_fields() {
    let resp = keyspacepb::LoadKeyspaceResponse {
        header: None,
        keyspace: Some(keyspacepb::KeyspaceMeta {
            id: 1,
            ..Default::default()
        }),
    };
    assert_eq!(enc(&resp), [0x12, 0x02, 0x08, 0x01]);
    let member = etcdserverpb::Member {
        id: 1,
        client_ur_ls: vec!["u".into()],
        ..Default::default()
    };
    assert_eq!(enc(&member), [0x08, 0x01, 0x22, 0x01, b'u']);
    let req = etcdserverpb::RangeRequest {
        range_end: b"e".to_vec(),
        ..Default::default()
    };
    assert_eq!(enc(&req), [0x12, 0x01, b'e']);
}

#[test]
fn batch_commands_fields() {
    use tikvpb::batch_commands_request::{request::Cmd, Request};
    let req = tikvpb::BatchCommandsRequest {
        requests: vec![Request {
            cmd: Some(Cmd::Empty(tikvpb::BatchCommandsEmptyRequest {
                test_id: 1,
                delay_time: 0,
            })),
        }],
        request_ids: vec![7],
    };
    let want: Vec<u8> = [
        &[0x0a, 0x05][..],
        &tag(255, LEN),
        &[0x02, 0x08, 0x01],
        &[0x12, 0x01, 0x07],
    ]
    .concat();
    assert_eq!(enc(&req), want);
    let req = Request {
        cmd: Some(Cmd::CheckSecondaryLocks(Default::default())),
    };
    assert_eq!(enc(&req), [tag(33, LEN), vec![0]].concat());
    let resp = tikvpb::BatchCommandsResponse {
        transport_layer_load: 1,
        ..Default::default()
    };
    assert_eq!(enc(&resp), [0x18, 0x01]);
}

#[test]
fn store_raft_fields() {
    let msg = storepb::RaftMessage {
        message: b"m".to_vec(),
        is_tombstone: true,
        end_key: b"z".to_vec(),
        ..Default::default()
    };
    assert_eq!(enc(&msg), [0x2a, 0x01, b'm', 0x30, 0x01, 0x42, 0x01, b'z']);
}

#[test]
fn grpc_method_paths() {
    let tikv = include_str!(concat!(env!("OUT_DIR"), "/tikvpb.rs"));
    for path in [
        "/tikvpb.Tikv/KvGet",
        "/tikvpb.Tikv/KVPessimisticRollback",
        "/tikvpb.Tikv/KvGC",
        "/tikvpb.Tikv/RawGetKeyTTL",
        "/tikvpb.Tikv/RawCompareAndSwap",
        "/tikvpb.Tikv/BatchCommands",
    ] {
        assert!(tikv.contains(path), "{path}");
    }
    let pd = include_str!(concat!(env!("OUT_DIR"), "/pdpb.rs"));
    for path in [
        "/pdpb.PD/GetMembers",
        "/pdpb.PD/Tso",
        "/pdpb.PD/AllocID",
        "/pdpb.PD/GetRegionByID",
        "/pdpb.PD/BatchScanRegions",
        "/pdpb.PD/UpdateGCSafePoint",
    ] {
        assert!(pd.contains(path), "{path}");
    }
    let ks = include_str!(concat!(env!("OUT_DIR"), "/keyspacepb.rs"));
    assert!(ks.contains("/keyspacepb.Keyspace/LoadKeyspace"));
    let etcd = include_str!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
    assert!(etcd.contains("/etcdserverpb.KV/Range"));
    assert!(etcd.contains("/etcdserverpb.Cluster/MemberList"));
    let store = include_str!(concat!(env!("OUT_DIR"), "/storepb.rs"));
    assert!(store.contains("/storepb.StoreRaft/Raft"));
}

#[test]
fn deadlock_key_error_carries_the_wait_chain_as_field_4() {
    let entry = deadlock::WaitForEntry {
        txn: 3,
        wait_for_txn: 4,
        key_hash: 5,
        key: b"x".to_vec(),
        ..Default::default()
    };
    let entry_bytes = enc(&entry);
    let want_entry = [
        tag(1, VARINT),
        vec![3],
        tag(2, VARINT),
        vec![4],
        tag(3, VARINT),
        vec![5],
        tag(4, LEN),
        vec![1, b'x'],
    ]
    .concat();
    assert_eq!(entry_bytes, want_entry);
    let d = kvrpcpb::Deadlock {
        lock_ts: 1,
        lock_key: b"k".to_vec(),
        deadlock_key_hash: 2,
        wait_chain: vec![entry],
    };
    let want = [
        tag(1, VARINT),
        vec![1],
        tag(2, LEN),
        vec![1, b'k'],
        tag(3, VARINT),
        vec![2],
        tag(4, LEN),
        vec![want_entry.len() as u8],
        want_entry,
    ]
    .concat();
    assert_eq!(enc(&d), want);
    let req = deadlock::DeadlockRequest {
        tp: deadlock::DeadlockRequestType::CleanUp as i32,
        ..Default::default()
    };
    assert_eq!(enc(&req), [tag(1, VARINT), vec![2]].concat());
}
