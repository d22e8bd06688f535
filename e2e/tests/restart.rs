//! Process restarts: acknowledged data survives `kill -9` and a clean stop of a store, and
//! placement's timestamps stay strictly increasing across its restart (TSO persisted ahead).
//!
//! Data is written through both API versions, raw and transactional, so every storage path is
//! covered by each restart.

use std::time::Duration;

use e2e::{
    must_eventually, must_raw_client, must_serve, must_single_store_cluster, must_txn_client,
    with_deadline, Api, Cluster, ClusterBuilder,
};
use tikv_client::{TimestampExt, TransactionClient, TransactionOptions};

const READY: Duration = Duration::from_secs(60);
const KEYS: usize = 20;

fn key(api: Api, kind: &str, i: usize) -> String {
    format!("{kind}/{api:?}/{i:03}")
}

/// Writes `KEYS` raw and `KEYS` transactional keys under each API version.
async fn must_write_data(cluster: &Cluster, tag: &str) {
    for api in Api::ALL {
        let raw = must_raw_client(cluster, api).await;
        let kvs: Vec<(String, String)> = (0..KEYS)
            .map(|i| (key(api, "raw", i), format!("{tag}-{i}")))
            .collect();
        raw.batch_put(kvs).await.expect("raw batch_put");
        let txn = must_txn_client(cluster, api).await;
        let mut t = txn.begin_optimistic().await.expect("begin");
        for i in 0..KEYS {
            t.put(key(api, "txn", i), format!("{tag}-{i}"))
                .await
                .expect("put");
        }
        t.commit().await.expect("commit");
    }
}

/// Reads everything [`must_write_data`] wrote with fresh clients and compares.
async fn must_read_data(cluster: &Cluster, tag: &str) {
    for api in Api::ALL {
        let raw = must_raw_client(cluster, api).await;
        let keys: Vec<String> = (0..KEYS).map(|i| key(api, "raw", i)).collect();
        let got = raw.batch_get(keys).await.expect("raw batch_get");
        assert_eq!(got.len(), KEYS, "{api:?} raw keys lost: got {got:?}");
        for i in [0, KEYS - 1] {
            let value = raw.get(key(api, "raw", i)).await.expect("raw get");
            assert_eq!(
                value,
                Some(format!("{tag}-{i}").into_bytes()),
                "{api:?} raw key {i}"
            );
        }
        let txn = must_txn_client(cluster, api).await;
        let ts = txn.current_timestamp().await.expect("ts");
        let mut snap = txn.snapshot(ts, TransactionOptions::new_optimistic());
        let keys: Vec<String> = (0..KEYS).map(|i| key(api, "txn", i)).collect();
        let got: Vec<_> = snap.batch_get(keys).await.expect("txn batch_get").collect();
        assert_eq!(got.len(), KEYS, "{api:?} txn keys lost: got {got:?}");
        let value = snap.get(key(api, "txn", 3)).await.expect("txn get");
        assert_eq!(
            value,
            Some(format!("{tag}-3").into_bytes()),
            "{api:?} txn key 3"
        );
    }
}

/// Highest of `n` fresh timestamps from `client`.
async fn max_timestamp(client: &TransactionClient, n: usize) -> u64 {
    let mut max = 0;
    for _ in 0..n {
        let ts = client.current_timestamp().await.expect("ts").version();
        assert!(ts > max, "timestamps not increasing: {ts} after {max}");
        max = ts;
    }
    max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_kill_9_keeps_acknowledged_data() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(180), async {
        let mut cluster = must_single_store_cluster().await;
        must_write_data(&cluster, "before-kill").await;
        cluster.kill_store(0).await.expect("kill -9 store");
        assert!(!cluster.store_running(0));
        cluster.restart_store(0).await.expect("restart store");
        cluster.must_ready(READY).await;
        must_serve(&cluster, READY).await;
        must_read_data(&cluster, "before-kill").await;
        must_write_data(&cluster, "after-restart").await;
        must_read_data(&cluster, "after-restart").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_clean_stop_exits_zero_and_keeps_data() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(180), async {
        let mut cluster = must_single_store_cluster().await;
        must_write_data(&cluster, "before-stop").await;
        let status = cluster.stop_store(0).await.expect("SIGTERM store");
        assert!(
            status.is_some_and(|s| s.success()),
            "store did not exit cleanly on SIGTERM: {status:?}\n{}",
            cluster.log_tails()
        );
        cluster.restart_store(0).await.expect("restart store");
        cluster.must_ready(READY).await;
        must_serve(&cluster, READY).await;
        must_read_data(&cluster, "before-stop").await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_restart_keeps_data_and_timestamps_increase() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(180), async {
        let mut cluster = must_single_store_cluster().await;
        must_write_data(&cluster, "v").await;
        let old = must_txn_client(&cluster, Api::V1).await;
        let mut seen = max_timestamp(&old, 50).await;
        for (how, kill) in [("kill -9", true), ("SIGTERM", false)] {
            if kill {
                cluster.kill_placement().await.expect("kill placement");
            } else {
                let status = cluster.stop_placement().await.expect("stop placement");
                assert!(
                    status.is_some_and(|s| s.success()),
                    "placement exit on SIGTERM: {status:?}"
                );
            }
            cluster
                .restart_placement()
                .await
                .expect("restart placement");
            cluster.must_ready(READY).await;
            must_serve(&cluster, READY).await;
            let fresh = must_txn_client(&cluster, Api::V1).await;
            let first = fresh.current_timestamp().await.expect("ts").version();
            assert!(
                first > seen,
                "after {how}: timestamp {first} <= {seen} seen before restart"
            );
            seen = max_timestamp(&fresh, 20).await.max(first);
            // The client connected before the restart reconnects on its own.
            let reconnected = must_eventually(
                "the old client to get timestamps again",
                Duration::from_secs(60),
                || async { old.current_timestamp().await.map_err(|e| format!("{e:?}")) },
            )
            .await;
            assert!(
                reconnected.version() > seen,
                "old client got a stale timestamp after {how}"
            );
            seen = reconnected.version();
            must_read_data(&cluster, "v").await;
        }
        let mut t = old.begin_optimistic().await.expect("begin");
        t.put("after-placement-restarts".to_owned(), "ok".to_owned())
            .await
            .expect("put");
        let commit = t.commit().await.expect("commit").expect("commit ts");
        assert!(commit.version() > seen);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_each_restarted_in_turn() {
    e2e::init_test_tracing();
    with_deadline(Duration::from_secs(300), async {
        let mut cluster = ClusterBuilder::default().stores(3).must_start().await;
        must_serve(&cluster, READY).await;
        must_write_data(&cluster, "three").await;
        for i in 0..cluster.store_count() {
            cluster.kill_store(i).await.expect("kill -9 store");
            cluster.restart_store(i).await.expect("restart store");
            cluster.must_ready(READY).await;
            must_serve(&cluster, READY).await;
            must_read_data(&cluster, "three").await;
        }
    })
    .await
}
