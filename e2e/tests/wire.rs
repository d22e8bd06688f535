//! What the official clients cannot send but other clients (client-go, tools)
//! do: requests with stale or unknown region context, the `BatchCommands`
//! stream and the gRPC health service, spoken with the generated kvproto
//! client directly.

use std::time::Duration;

use e2e::{must_eventually, must_single_store_cluster, with_deadline};
use proto::kvrpcpb::{self, Context};
use proto::pdpb::pd_client::PdClient;
use proto::pdpb::{GetMembersRequest, GetRegionRequest, RequestHeader};
use proto::tikvpb::batch_commands_request::{self, request::Cmd as Req};
use proto::tikvpb::batch_commands_response::response::Cmd as Resp;
use proto::tikvpb::tikv_client::TikvClient;
use proto::tikvpb::{BatchCommandsEmptyRequest, BatchCommandsRequest};
use proto::{errorpb, metapb};
use tonic::transport::Channel;

async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

/// The first region (holding small V1 raw keys) once placement's keyspace
/// splits have cut it at the DEFAULT keyspace's first boundary, and its leader.
async fn must_region(pd_addr: &str, key: &[u8]) -> (metapb::Region, metapb::Peer) {
    let boundary = proto::codec::keyspace_boundaries(0)[0].clone();
    must_eventually(
        "the first region to be split at the DEFAULT keyspace's boundary",
        Duration::from_secs(30),
        || async {
            let (region, leader) = region_of(pd_addr, key).await;
            if region.end_key == boundary {
                Ok((region, leader))
            } else {
                Err(format!("{region:?}"))
            }
        },
    )
    .await
}

async fn region_of(pd_addr: &str, key: &[u8]) -> (metapb::Region, metapb::Peer) {
    let mut pd = PdClient::new(connect(pd_addr).await);
    let members = pd
        .get_members(GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    let header = Some(RequestHeader {
        cluster_id: members.header.unwrap().cluster_id,
        ..Default::default()
    });
    let resp = pd
        .get_region(GetRegionRequest {
            header,
            region_key: key.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (
        resp.region.expect("region"),
        resp.leader.unwrap_or_default(),
    )
}

fn ctx(region: &metapb::Region, leader: &metapb::Peer) -> Context {
    Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: Some(*leader),
        ..Default::default()
    }
}

fn put(context: Context, key: &[u8]) -> kvrpcpb::RawPutRequest {
    kvrpcpb::RawPutRequest {
        context: Some(context),
        key: key.to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

async fn must_region_error(
    kv: &mut TikvClient<Channel>,
    req: kvrpcpb::RawPutRequest,
) -> errorpb::Error {
    let resp = kv.raw_put(req).await.expect("raw put rpc").into_inner();
    assert!(resp.error.is_empty(), "{resp:?}");
    resp.region_error.expect("a region error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_unknown_and_misrouted_requests_get_region_errors_and_write_nothing() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(120), async {
        let cluster = must_single_store_cluster().await;
        let (region, leader) = must_region(&cluster.pd_endpoint(), b"a").await;
        let mut kv = TikvClient::new(connect(&cluster.store_addr(0)).await);
        let good = ctx(&region, &leader);

        let mut unknown = good.clone();
        unknown.region_id = 987_654_321;
        let e = must_region_error(&mut kv, put(unknown, b"a1")).await;
        assert_eq!(
            e.region_not_found.map(|r| r.region_id),
            Some(987_654_321),
            "{e:?}"
        );

        let mut stale = good.clone();
        let mut epoch = region.region_epoch.unwrap();
        epoch.version -= 1;
        stale.region_epoch = Some(epoch);
        let e = must_region_error(&mut kv, put(stale, b"a2")).await;
        let current = e.epoch_not_match.expect("epoch_not_match").current_regions;
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].id, region.id);
        assert_eq!(current[0].region_epoch, region.region_epoch);

        let mut wrong_store = good.clone();
        wrong_store.peer.as_mut().unwrap().store_id += 100;
        let e = must_region_error(&mut kv, put(wrong_store, b"a3")).await;
        assert!(e.store_not_match.is_some(), "{e:?}");

        // The first region ends at the DEFAULT keyspace's raw boundary.
        let outside = [region.end_key.clone(), b"-beyond".to_vec()].concat();
        let e = must_region_error(&mut kv, put(good.clone(), &outside)).await;
        let kn = e.key_not_in_region.expect("key_not_in_region");
        assert_eq!((kn.region_id, kn.key), (region.id, outside.clone()));

        for key in [&b"a1"[..], b"a2", b"a3", &outside] {
            let get = kvrpcpb::RawGetRequest {
                context: Some(good.clone()),
                key: key.to_vec(),
                ..Default::default()
            };
            let resp = kv.raw_get(get).await.unwrap().into_inner();
            // The outside key is refused again, the others are simply absent.
            assert!(
                resp.not_found || resp.region_error.is_some(),
                "{key:?} was written: {resp:?}"
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_commands_echo_request_ids_and_health_is_serving() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(120), async {
        let cluster = must_single_store_cluster().await;
        let (region, leader) = must_region(&cluster.pd_endpoint(), b"b").await;
        let channel = connect(&cluster.store_addr(0)).await;

        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", "tikvpb.Tikv"] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health check")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );
        }

        let mut kv = TikvClient::new(channel);
        let c = ctx(&region, &leader);
        let request = |cmd| batch_commands_request::Request { cmd: Some(cmd) };
        let first = BatchCommandsRequest {
            requests: vec![
                request(Req::RawPut(put(c.clone(), b"b1"))),
                request(Req::Empty(BatchCommandsEmptyRequest {
                    test_id: 7,
                    delay_time: 0,
                })),
            ],
            request_ids: vec![11, 12],
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(first).await.unwrap();
        let mut responses = kv
            .batch_commands(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open stream")
            .into_inner();
        let mut seen = std::collections::HashMap::new();
        while seen.len() < 2 {
            let batch = responses
                .message()
                .await
                .expect("stream")
                .expect("response");
            assert_eq!(batch.responses.len(), batch.request_ids.len());
            for (id, r) in batch.request_ids.into_iter().zip(batch.responses) {
                seen.insert(id, r.cmd.expect("a response command"));
            }
        }
        assert!(
            matches!(&seen[&11], Resp::RawPut(r) if r.region_error.is_none() && r.error.is_empty())
        );
        assert!(matches!(&seen[&12], Resp::Empty(e) if e.test_id == 7));

        let get = kvrpcpb::RawGetRequest {
            context: Some(c),
            key: b"b1".to_vec(),
            ..Default::default()
        };
        tx.send(BatchCommandsRequest {
            requests: vec![request(Req::RawGet(get))],
            request_ids: vec![13],
        })
        .await
        .unwrap();
        let batch = responses
            .message()
            .await
            .expect("stream")
            .expect("response");
        assert_eq!(batch.request_ids, vec![13]);
        match batch.responses[0].cmd.as_ref() {
            Some(Resp::RawGet(r)) => assert_eq!(r.value, b"v"),
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_missing_request_ids_ends_the_stream_with_a_clear_error() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(120), async {
        let cluster = must_single_store_cluster().await;
        let (region, leader) = must_region(&cluster.pd_endpoint(), b"b").await;
        let mut kv = TikvClient::new(connect(&cluster.store_addr(0)).await);
        let c = ctx(&region, &leader);
        let request = |cmd| batch_commands_request::Request { cmd: Some(cmd) };
        let batch = BatchCommandsRequest {
            requests: vec![
                request(Req::RawPut(put(c.clone(), b"m1"))),
                request(Req::RawPut(put(c.clone(), b"m2"))),
            ],
            request_ids: vec![21],
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(batch).await.unwrap();
        let mut responses = kv
            .batch_commands(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("open stream")
            .into_inner();
        let status = tokio::time::timeout(Duration::from_secs(10), responses.message())
            .await
            .expect("no answer at all: the batch was dropped silently")
            .expect_err("a batch with a missing request id was answered");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        assert!(status.message().contains("request ids"), "{status}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_over_the_limits_are_refused_not_cut_short() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(120), async {
        let cluster = must_single_store_cluster().await;
        let (region, leader) = must_region(&cluster.pd_endpoint(), b"b").await;
        let mut kv = TikvClient::new(connect(&cluster.store_addr(0)).await);
        let c = ctx(&region, &leader);
        let scan = kv
            .raw_scan(kvrpcpb::RawScanRequest {
                context: Some(c.clone()),
                start_key: b"a".to_vec(),
                limit: 20_000,
                ..Default::default()
            })
            .await
            .expect_err("a raw scan over the 10240 limit was served");
        assert_eq!(scan.code(), tonic::Code::InvalidArgument, "{scan}");
        let ranges = (0..2000u32)
            .map(|i| kvrpcpb::KeyRange {
                start_key: format!("a{i:05}").into_bytes(),
                end_key: format!("a{i:05}z").into_bytes(),
            })
            .collect();
        let batch = kv
            .raw_batch_scan(kvrpcpb::RawBatchScanRequest {
                context: Some(c),
                ranges,
                each_limit: 10,
                ..Default::default()
            })
            .await
            .expect_err("a batch scan of 2000 ranges was served");
        assert_eq!(batch.code(), tonic::Code::InvalidArgument, "{batch}");
    })
    .await;
}

/// client-go polls every store with `GetStoreSafeTS` (no region context): the store answers
/// it with the smallest safe ts of its replicas (a leader's resolved ts, a recent TSO ts here:
/// no lock is held), instead of `Unimplemented`, while a call it does not serve, `RawChecksum`,
/// is refused with `Unimplemented` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_safe_ts_is_answered_and_unserved_calls_are_unimplemented() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(120), async {
        let cluster = must_single_store_cluster().await;
        let mut kv = TikvClient::new(connect(&cluster.store_addr(0)).await);
        let safe_ts = e2e::must_eventually("a safe ts above 0", Duration::from_secs(30), || {
            let mut kv = kv.clone();
            async move {
                let resp = kv
                    .get_store_safe_ts(kvrpcpb::StoreSafeTsRequest {
                        key_range: Some(kvrpcpb::KeyRange::default()),
                    })
                    .await
                    .map_err(|e| format!("GetStoreSafeTS failed: {e}"))?
                    .into_inner();
                match resp.safe_ts {
                    0 => Err("safe ts 0".to_owned()),
                    ts => Ok(ts),
                }
            }
        })
        .await;
        // A TSO timestamp: milliseconds since the epoch above 18 logical bits.
        let physical_ms = safe_ts >> 18;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            physical_ms <= now_ms && now_ms - physical_ms < 60_000,
            "safe ts {safe_ts} is {physical_ms} ms, now is {now_ms}"
        );
        let status = kv
            .raw_checksum(kvrpcpb::RawChecksumRequest::default())
            .await
            .expect_err("RawChecksum is not served");
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status}");
    })
    .await;
}

/// A transaction that died after a secondary lock landed and before its primary did leaves an
/// orphan. The store answers `CheckTxnStatus` on the missing primary with `TxnNotFound` (as TiKV
/// does) until a caller asks for the rollback; tikv-client 0.4.0 never asks (tikv/client-rust#543),
/// so the fault suite rolls such orphans back itself once their TTL has passed
/// (`e2e::suite::orphans`). Here: not before the TTL, then exactly the orphan, after which the
/// key reads absent, the dead transaction cannot commit and the key takes new writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphaned_lock_is_rolled_back_once_its_ttl_passes_and_not_before() {
    use e2e::suite::clock::CallError;
    use e2e::suite::orphans;
    use tikv_client::TimestampExt;

    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(120), async {
        let cluster = must_single_store_cluster().await;
        let client = e2e::must_txn_client(&cluster, e2e::Api::V1).await;
        let mut kv = TikvClient::new(connect(&cluster.store_addr(0)).await);
        let (primary, secondary) = (
            b"jr-orphan-primary".to_vec(),
            b"jr-orphan-secondary".to_vec(),
        );
        let start_ts = client
            .current_timestamp()
            .await
            .expect("a timestamp")
            .version();
        let ttl_ms = 3000;
        let pd = cluster.pd_endpoint();
        let orphan = (primary.as_slice(), start_ts, ttl_ms);
        let resp = prewrite_alone(&pd, &mut kv, &secondary, orphan).await;
        assert!(
            resp.errors.is_empty() && resp.region_error.is_none(),
            "{resp:?}"
        );

        let read = |client: tikv_client::TransactionClient| async move {
            let ts = client.current_timestamp().await?;
            let mut snapshot = client.snapshot(ts, e2e::suite::clock::txn_options(false));
            snapshot.get(b"jr-orphan-secondary".to_vec()).await
        };
        let error = match read(client.clone()).await {
            Err(e) => CallError::Client(e),
            // A client that resolves the orphan itself waited for its TTL; nothing left to test.
            Ok(value) => panic!("the client resolved the orphan itself, reading {value:?}"),
        };
        let e = match &error {
            CallError::Client(e) => e,
            CallError::Timeout => unreachable!(),
        };
        assert_eq!(orphans::txn_not_found(e), Some(start_ts), "{e}");
        assert_eq!(
            orphans::recover(&client, &error).await,
            0,
            "rolled back before its TTL"
        );

        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let resolved = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let n = orphans::recover(&client, &error).await;
            if n > 0 || tokio::time::Instant::now() > deadline {
                break n;
            }
        };
        assert_eq!(
            resolved, 1,
            "the orphan's one lock is resolved once its TTL has passed"
        );
        let now = client
            .current_timestamp()
            .await
            .expect("a timestamp")
            .version();
        assert!(orphans::expired(start_ts, ttl_ms, now));
        assert_eq!(
            read(client.clone()).await.expect("the key reads again"),
            None
        );

        let late = prewrite_alone(&pd, &mut kv, &primary, orphan).await;
        assert!(
            !late.errors.is_empty(),
            "the rolled-back transaction prewrote its primary: {late:?}"
        );

        let mut txn = client
            .begin_with_options(e2e::suite::clock::txn_options(false))
            .await
            .expect("begin");
        txn.put(secondary.clone(), b"after".to_vec())
            .await
            .expect("put");
        txn.commit()
            .await
            .expect("the key the orphan held takes new writes");
    })
    .await;
}

/// Prewrites `key` alone (a put) on its region's leader, for the transaction `(primary,
/// start_ts, ttl_ms)`.
async fn prewrite_alone(
    pd: &str,
    kv: &mut TikvClient<Channel>,
    key: &[u8],
    (primary, start_ts, ttl_ms): (&[u8], u64, u64),
) -> kvrpcpb::PrewriteResponse {
    let (region, leader) = region_of(pd, &proto::codec::encode_bytes(key)).await;
    let req = kvrpcpb::PrewriteRequest {
        context: Some(ctx(&region, &leader)),
        mutations: vec![kvrpcpb::Mutation {
            op: kvrpcpb::Op::Put as i32,
            key: key.to_vec(),
            value: b"orphan".to_vec(),
            ..Default::default()
        }],
        primary_lock: primary.to_vec(),
        start_version: start_ts,
        lock_ttl: ttl_ms,
        ..Default::default()
    };
    kv.kv_prewrite(req)
        .await
        .expect("prewrite rpc")
        .into_inner()
}

/// A client may gzip its requests and offer to take gzipped answers (tikv-client 0.4 offers);
/// the store reads the former and, as TiKV does by default, answers uncompressed: its answers
/// are small, and compressing each one cost more CPU than anything else under load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzipped_requests_are_read_and_answers_go_out_uncompressed() {
    use tonic::codec::CompressionEncoding::Gzip;
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(60), async {
        let cluster = must_single_store_cluster().await;
        let (region, leader) = must_region(&cluster.pd_endpoint(), b"a").await;
        let mut kv = TikvClient::new(connect(&cluster.store_addr(0)).await)
            .send_compressed(Gzip)
            .accept_compressed(Gzip);
        let resp = kv
            .raw_put(put(ctx(&region, &leader), b"gz"))
            .await
            .expect("a gzipped raw put");
        assert_eq!(resp.metadata().get("grpc-encoding"), None);
        let put_resp = resp.into_inner();
        assert!(
            put_resp.error.is_empty() && put_resp.region_error.is_none(),
            "{put_resp:?}"
        );
        let got = kv
            .raw_get(kvrpcpb::RawGetRequest {
                context: Some(ctx(&region, &leader)),
                key: b"gz".to_vec(),
                ..Default::default()
            })
            .await
            .expect("raw get");
        assert_eq!(
            got.metadata().get("grpc-encoding"),
            None,
            "the answer was compressed"
        );
        assert_eq!(got.into_inner().value, b"v");
    })
    .await;
}
