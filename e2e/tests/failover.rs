//! Store failures on a replicated 3-store cluster, seen through the official client:
//!
//! - SIGKILL of the store leading the region under a write load: writes resume on the new
//!   leader, no acknowledged write is lost, and the unavailability window is measured
//!   (`UNAVAILABILITY_MS=<n>` on stdout; run with `--nocapture` to see it);
//! - a minority partition of the leader's store: the majority elects a leader and serves the
//!   client; the isolated old leader refuses reads and writes sent to it directly; after
//!   healing, its replica holds what the majority wrote and nothing it refused;
//! - a store stopped while the others write and compact their logs catches up by snapshot and
//!   then carries the data when it is needed for a majority;
//! - a store whose engine can no longer write (a full disk) exits instead of answering health
//!   checks while it no longer replicates, and the others carry on without losing a write;
//! - a leader paused (SIGSTOP) while it holds its lease, replaced and overwritten meanwhile,
//!   serves no stale read when it wakes: its lease ran out while it slept.
//!
//! Partitions use the stores' raft filters (`[debug] fault-injection`, see `e2e::fault`).
//! Each test holds [`e2e::testing::serial`] so that measured windows do not depend on other
//! clusters sharing the cores.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::pd_api::RegionInfo;
use e2e::testing::serial;
use e2e::topology::leader_store;
use e2e::{
    longest_gap_after, must_eventually, must_raw_client, must_within, with_deadline, Api, Cluster,
    ClusterBuilder, Role, WriteLoad, FAULT_INJECTION_CONFIG,
};
use proto::kvrpcpb::{self, Context};
use proto::metapb;
use proto::tikvpb::tikv_client::TikvClient;
use testkit::wait;
use tikv_client::RawClient;

/// Bound on waits for replication, elections and restarts.
const CONVERGE: Duration = Duration::from_secs(40);
/// Generous bound on the measured unavailability after a leader's store is killed.
const MAX_UNAVAILABLE: Duration = Duration::from_secs(20);
/// Bound on one request sent straight to a store.
const DIRECT_RPC: Duration = Duration::from_secs(10);

fn v(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

async fn three_replicated_stores(store_config: &str) -> Cluster {
    let cluster = ClusterBuilder::default()
        .stores(3)
        .store_config(store_config)
        .must_start()
        .await;
    cluster.must_settled(3, CONVERGE).await;
    cluster
}

/// Reads `keys` in chunks and returns what was found.
async fn read_all(client: &RawClient, keys: &[String]) -> HashMap<String, Vec<u8>> {
    let mut found = HashMap::new();
    for chunk in keys.chunks(500) {
        let pairs = must_within(CONVERGE, "batch_get", client.batch_get(chunk.to_vec()))
            .await
            .unwrap_or_else(|e| panic!("batch_get: {e:?}"));
        for pair in pairs {
            let (key, value): (tikv_client::Key, Vec<u8>) = pair.into();
            let key: Vec<u8> = key.into();
            found.insert(String::from_utf8_lossy(&key).into_owned(), value);
        }
    }
    found
}

/// A put through the client that must succeed within `CONVERGE`, retried while the cluster
/// settles (the client gives up on its own after ten region-error backoffs).
async fn must_put_eventually(client: &RawClient, key: &str, value: &str) {
    must_eventually(&format!("put {key} to succeed"), CONVERGE, || async {
        client
            .put(key.to_owned(), value.to_owned())
            .await
            .map_err(|e| format!("{e:?}"))
    })
    .await
}

/// A get through the client that must succeed within `CONVERGE`.
async fn must_get_eventually(client: &RawClient, key: &str) -> Option<Vec<u8>> {
    must_eventually(&format!("get {key} to succeed"), CONVERGE, || async {
        client
            .get(key.to_owned())
            .await
            .map_err(|e| format!("{e:?}"))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leaders_store_under_load_loses_no_acknowledged_write() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(150), async {
        let mut cluster = three_replicated_stores("").await;
        let client = must_raw_client(&cluster, Api::V1).await;
        let load = WriteLoad {
            writers: 2,
            max_ops_per_writer: 3000,
            max_duration: Duration::from_secs(40),
            op_timeout: Duration::from_secs(10),
            prefix: "load".to_owned(),
        }
        .start(client.clone());
        let warmup = load.wait_acked_since(load.started(), 200, CONVERGE).await;
        warmup.unwrap_or_else(|e| panic!("load never got going: {e}"));

        let region = cluster.must_region_led(b"load/", 0, CONVERGE).await;
        let leader = leader_store(&region).expect("led");
        let victim = cluster.must_store_index(leader).await;
        cluster
            .kill_store(victim)
            .await
            .expect("kill -9 the leader");
        let killed_at = Instant::now();
        let resumed = load.wait_acked_since(killed_at, 200, CONVERGE).await;
        let report = load.stop().await;
        resumed.unwrap_or_else(|e| panic!("writes did not resume after the kill: {e}"));

        let gap = longest_gap_after(&report.ack_times(), killed_at).expect("acks after kill");
        println!("UNAVAILABILITY_MS={}", gap.as_millis());
        println!(
            "load: {} acknowledged, {} failed attempts in {:?}; first failure: {:?}",
            report.acks.len(),
            report.errors.len(),
            report.elapsed,
            report.errors.first().map(|(_, e)| e)
        );
        assert!(gap < MAX_UNAVAILABLE, "unavailable for {gap:?}");

        cluster.restart_store(victim).await.expect("restart");
        cluster.must_ready(CONVERGE).await;
        cluster.must_replicated(3, CONVERGE).await;
        let fresh = must_raw_client(&cluster, Api::V1).await;
        let keys: Vec<String> = report.acks.iter().map(|a| a.key.clone()).collect();
        let found = read_all(&fresh, &keys).await;
        let lost: Vec<&str> = report
            .acks
            .iter()
            .filter(|a| found.get(&a.key).map(Vec::as_slice) != Some(a.value.as_bytes()))
            .map(|a| a.key.as_str())
            .collect();
        assert!(
            lost.is_empty(),
            "{} of {} acknowledged writes lost or wrong, e.g. {:?}",
            lost.len(),
            report.acks.len(),
            &lost[..lost.len().min(10)]
        );
    })
    .await
}

/// The kvproto context addressing `region`'s replica on `store_id`.
fn context_on(region: &RegionInfo, store_id: u64) -> Context {
    let peer = region
        .peers
        .iter()
        .find(|p| p.store_id == store_id)
        .unwrap_or_else(|| panic!("region {} has no replica on store {store_id}", region.id));
    Context {
        region_id: region.id,
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: region.epoch.conf_ver,
            version: region.epoch.version,
        }),
        peer: Some(metapb::Peer {
            id: peer.id,
            store_id,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn direct_client(addr: &str) -> TikvClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(DIRECT_RPC)
        .timeout(DIRECT_RPC)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    TikvClient::new(channel)
}

/// A RawPut of `key` that the isolated store must not apply.
fn refused_put(ctx: Context, key: &str) -> kvrpcpb::RawPutRequest {
    kvrpcpb::RawPutRequest {
        context: Some(ctx),
        key: key.as_bytes().to_vec(),
        value: b"must-not-exist".to_vec(),
        ..Default::default()
    }
}

/// Sends a RawPut of `key` straight to the store at `addr`, bounded by `DIRECT_RPC`.
async fn put_direct(addr: String, ctx: Context, key: &'static str) -> kvrpcpb::RawPutResponse {
    let mut kv = direct_client(&addr).await;
    let put = refused_put(ctx, key);
    must_within(DIRECT_RPC, "RawPut on the isolated store", kv.raw_put(put))
        .await
        .expect("RawPut rpc")
        .into_inner()
}

/// A RawPut of `key` sent to the leader right as it is cut off: it may come back as a region
/// error, or not at all within `DIRECT_RPC` (`None`), since the old leader may have appended it
/// before stepping down and then answers only once it learns the entry's fate (replaced by the
/// majority's leader, checked after the heal). It must never come back as a success.
async fn put_early(
    addr: String,
    ctx: Context,
    key: &'static str,
) -> Option<kvrpcpb::RawPutResponse> {
    let mut kv = direct_client(&addr).await;
    let put = refused_put(ctx, key);
    let answer = tokio::time::timeout(DIRECT_RPC + Duration::from_secs(1), kv.raw_put(put)).await;
    match answer {
        Ok(Ok(resp)) => Some(resp.into_inner()),
        Ok(Err(status)) if status.message().contains("Timeout expired") => None,
        Ok(Err(status)) => panic!("RawPut rpc: {status}"),
        Err(_) => None,
    }
}

/// Asks the isolated store for `read` and to put `refused`: both must come back, in bounded
/// time, as region errors, never as data or success.
async fn must_refuse(addr: &str, ctx: Context, read: &str, refused: &'static str) {
    let mut kv = direct_client(addr).await;
    let get = kvrpcpb::RawGetRequest {
        context: Some(ctx.clone()),
        key: read.as_bytes().to_vec(),
        ..Default::default()
    };
    let resp = must_within(DIRECT_RPC, "RawGet on the isolated store", kv.raw_get(get))
        .await
        .expect("RawGet rpc")
        .into_inner();
    assert!(
        resp.region_error.is_some(),
        "the isolated old leader served a read of {read}: {resp:?}"
    );
    let resp = put_direct(addr.to_owned(), ctx, refused).await;
    assert!(
        resp.region_error.is_some(),
        "the isolated old leader acknowledged a write: {resp:?}"
    );
    println!(
        "isolated store refused: {:?}",
        resp.region_error.map(|e| e.message)
    );
}

/// Partitions away one store so that store `needed` must be in the majority of the region
/// holding `key`: the current leader if that is another store, else another store. Returns the
/// index of the store cut off once the region is led again.
async fn must_partition_so_needed(cluster: &Cluster, key: &[u8], needed: usize) -> usize {
    let ids = cluster.must_store_ids().await;
    let region = cluster.must_region_led(key, 0, CONVERGE).await;
    let leader = cluster
        .must_store_index(leader_store(&region).expect("led"))
        .await;
    let cut = if leader != needed {
        leader
    } else {
        (0..ids.len()).find(|&i| i != needed).expect("three stores")
    };
    cluster.must_isolate(cut).await;
    cluster.must_region_led(key, ids[cut], CONVERGE).await;
    cut
}

/// After healing, with the old leader's store `needed` in every majority: what the majority
/// wrote during the partition is there, what the old leader was asked to write is not.
async fn must_agree_with_old_leader_needed(cluster: &Cluster, client: &RawClient, needed: usize) {
    let cut = must_partition_so_needed(cluster, b"part/", needed).await;
    must_put_eventually(client, "part/after-heal", "3").await;
    assert_eq!(must_get_eventually(client, "part/during").await, v("2"));
    assert_eq!(must_get_eventually(client, "part/before").await, v("1b"));
    for refused in ["part/refused", "part/refused-early"] {
        let got = must_get_eventually(client, refused).await;
        assert_eq!(
            got, None,
            "{refused}, refused by the isolated store, exists"
        );
    }
    let keys: Vec<String> = (0..20).map(|i| format!("part/during/{i:02}")).collect();
    assert_eq!(read_all(client, &keys).await.len(), 20);
    println!("with store index {cut} cut off, the old leader (index {needed}) was in the majority");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_partition_of_the_leader_keeps_the_majority_serving() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(150), async {
        let cluster = three_replicated_stores(FAULT_INJECTION_CONFIG).await;
        let client = must_raw_client(&cluster, Api::V1).await;
        must_put_eventually(&client, "part/before", "1").await;
        let region = cluster.must_region_led(b"part/", 0, CONVERGE).await;
        let old_leader = leader_store(&region).expect("led");
        let isolated = cluster.must_store_index(old_leader).await;

        // Right after the cut the old leader may still believe it leads: a write sent to it
        // then must not be acknowledged either (it cannot reach a quorum).
        let early_ctx = context_on(&region, old_leader);
        let addr = cluster.store_addr(isolated);
        cluster.must_isolate(isolated).await;
        let cut_at = Instant::now();
        let early = tokio::spawn(put_early(addr.clone(), early_ctx, "part/refused-early"));
        let region = cluster
            .must_region_led(b"part/", old_leader, CONVERGE)
            .await;
        println!(
            "NEW_LEADER_MS={} (store {} after {old_leader})",
            cut_at.elapsed().as_millis(),
            leader_store(&region).expect("led")
        );
        must_put_eventually(&client, "part/before", "1b").await;
        must_put_eventually(&client, "part/during", "2").await;
        println!("CLIENT_WRITES_AGAIN_MS={}", cut_at.elapsed().as_millis());
        for i in 0..20 {
            let key = format!("part/during/{i:02}");
            client.put(key.clone(), "x").await.expect("put on majority");
            assert_eq!(client.get(key).await.expect("get on majority"), v("x"));
        }
        let ctx = context_on(&region, old_leader);
        must_refuse(&addr, ctx, "part/before", "part/refused").await;
        let early = early.await.expect("early put task");
        assert!(
            early.as_ref().is_none_or(|r| r.region_error.is_some()),
            "the isolated old leader acknowledged a write right after the cut: {early:?}"
        );

        cluster.must_heal().await;
        cluster.must_settled(3, CONVERGE).await;
        must_agree_with_old_leader_needed(&cluster, &client, isolated).await;
        cluster.must_heal().await;
        cluster.must_replicated(3, CONVERGE).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_compacted_logs_catches_up_by_snapshot() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(150), async {
        // Past 100 entries a leader stops keeping the log for a lagging follower.
        let config = format!(
            "[raftstore]\nraft-log-gc-threshold = 16\nraft-log-gc-count-limit = 100\n{FAULT_INJECTION_CONFIG}"
        );
        let mut cluster = three_replicated_stores(&config).await;
        let client = must_raw_client(&cluster, Api::V1).await;
        must_put_eventually(&client, "snap/first", "1").await;
        let region = cluster.must_region_led(b"snap/", 0, CONVERGE).await;
        let leader = cluster
            .must_store_index(leader_store(&region).expect("led"))
            .await;
        let behind = (0..3).find(|&i| i != leader).expect("a follower");
        cluster.stop_store(behind).await.expect("SIGTERM follower");

        // One raft entry per put: far more than the 16 entries the others keep.
        let keys: Vec<String> = (0..300).map(|i| format!("snap/{i:04}")).collect();
        for key in &keys {
            let put = client.put(key.clone(), format!("value-of-{key}"));
            must_within(CONVERGE, "put", put)
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        }
        cluster.restart_store(behind).await.expect("restart");
        let restarted_at = Instant::now();
        cluster.must_ready(CONVERGE).await;
        let applied = r#"direction="applied""#;
        must_eventually(
            "the restarted store to apply a snapshot",
            CONVERGE,
            || async {
                let n = cluster
                    .store_metric(behind, "store_raft_snapshots_total", applied)
                    .await?;
                if n >= 1.0 {
                    Ok(())
                } else {
                    Err(format!("{n} snapshots applied"))
                }
            },
        )
        .await;
        cluster.must_settled(3, CONVERGE).await;
        println!(
            "SNAPSHOT_CATCH_UP_MS={}",
            restarted_at.elapsed().as_millis()
        );

        let cut = must_partition_so_needed(&cluster, b"snap/", behind).await;
        must_put_eventually(&client, "snap/while-needed", "2").await;
        let found = read_all(&client, &keys).await;
        for key in &keys {
            let want = format!("value-of-{key}");
            assert_eq!(found.get(key), Some(&want.into_bytes()), "{key}");
        }
        println!(
            "with store index {cut} cut off, all {} keys read back",
            keys.len()
        );
        cluster.must_heal().await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_engine_fails_exits_and_the_others_carry_on() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(150), async {
        let mut cluster = three_replicated_stores(FAULT_INJECTION_CONFIG).await;
        let client = must_raw_client(&cluster, Api::V1).await;
        must_put_eventually(&client, "fail/before", "1").await;
        let region = cluster.must_region_led(b"fail/", 0, CONVERGE).await;
        let failed = cluster
            .must_store_index(leader_store(&region).expect("led"))
            .await;
        cluster
            .fail_engine_writes(failed)
            .await
            .expect("fault injection");
        // The next write reaches the failing leader: it must stop, and the
        // others must elect a leader and take the write.
        must_put_eventually(&client, "fail/after", "2").await;
        wait::for_("the failed store to exit")
            .within(CONVERGE)
            .every(Duration::from_millis(100))
            .until(|| cluster.check_alive().is_err())
            .await;
        assert!(!cluster.store_running(failed), "another process exited");
        assert_eq!(must_get_eventually(&client, "fail/before").await, v("1"));
        assert_eq!(must_get_eventually(&client, "fail/after").await, v("2"));
    })
    .await
}

/// A leader answers reads from its lease without asking a quorum (`store/src/raftstore/lease.rs`).
/// Cut off from the other stores and paused while it holds the lease, it sleeps through its
/// replacement and a write the new leader makes. A read sent straight to it while it sleeps
/// must be refused when it wakes, never answered with the overwritten value: its lease ran out
/// on the monotonic clock while it slept (and the cut keeps any message of the new term from
/// ending its leadership first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_in_its_lease_serves_no_stale_read_when_it_wakes() {
    e2e::init_test_tracing();
    let test = "a_leader_paused_in_its_lease_serves_no_stale_read_when_it_wakes";
    if let Some(reason) = tokio::task::spawn_blocking(e2e::netns::skip_reason)
        .await
        .expect("skip check")
    {
        e2e::testing::skip(test, &reason);
        return;
    }
    let _serial = serial().await;
    with_deadline(Duration::from_secs(150), async {
        let cluster = ClusterBuilder::default()
            .stores(3)
            .own_network(true)
            .must_start()
            .await;
        cluster.must_settled(3, CONVERGE).await;
        let client = must_raw_client(&cluster, Api::V1).await;
        must_put_eventually(&client, "pause/k", "old").await;
        let region = cluster.must_region_led(b"pause/", 0, CONVERGE).await;
        let old_leader = leader_store(&region).expect("led");
        let paused = cluster.must_store_index(old_leader).await;
        let ctx = context_on(&region, old_leader);
        let addr = cluster.store_addr(paused);
        // A read right before the pause: the leader holds a fresh lease when it stops.
        let mut kv = direct_client(&addr).await;
        let get = kvrpcpb::RawGetRequest {
            context: Some(ctx.clone()),
            key: b"pause/k".to_vec(),
            ..Default::default()
        };
        let before = kv.raw_get(get.clone()).await.expect("RawGet").into_inner();
        assert_eq!((before.region_error, before.value), (None, b"old".to_vec()));
        let others: Vec<Role> = (0..3).filter(|&i| i != paused).map(Role::Store).collect();
        cluster
            .partition(&[vec![Role::Store(paused)], others])
            .await
            .expect("cut the leader's store off");
        cluster.pause(Role::Store(paused)).expect("SIGSTOP");
        let region = cluster
            .must_region_led(b"pause/", old_leader, CONVERGE)
            .await;
        println!("new leader: store {:?}", leader_store(&region));
        must_put_eventually(&client, "pause/k", "new").await;
        let read = tokio::spawn(async move { kv.raw_get(get).await });
        // The request reaches the sleeping store's socket before it wakes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.resume(Role::Store(paused)).expect("SIGCONT");
        let resp = must_within(DIRECT_RPC, "RawGet on the woken store", read)
            .await
            .expect("RawGet task")
            .expect("RawGet rpc")
            .into_inner();
        assert!(
            resp.region_error.is_some(),
            "the woken old leader served a read from its expired lease: {resp:?}"
        );
        println!(
            "woken store refused: {:?}",
            resp.region_error.map(|e| e.message)
        );
        cluster.heal_network().await.expect("heal");
        assert_eq!(must_get_eventually(&client, "pause/k").await, v("new"));
    })
    .await
}
