//! Bad input gets a clear error, writes nothing and harms nothing.
//!
//! TiKV's limits: keys over `storage.max-key-size` (8 KiB) fail with `KeyTooLarge`, checked for
//! every key of a batch before anything is written; a value that makes a raft entry larger than
//! `raftstore.raft-entry-max-size` (8 MiB) fails with the region error `RaftEntryTooLarge`, which
//! the client returns without retrying. Empty keys are valid in TiKV (tikv#13635; see `raw.rs`).
//! After every rejected request the store process must still be running and serving.

use e2e::testing::{error_text, kv_strings, strings};
use e2e::{api_tests, must_raw_client, must_single_store_cluster, must_txn_client, Api, Cluster};
use tikv_client::{TimestampExt, TransactionOptions};

const MAX_KEY_SIZE: usize = 8 * 1024;
const RAFT_ENTRY_MAX_SIZE: usize = 8 * 1024 * 1024;

fn s(text: &str) -> String {
    text.to_owned()
}

fn oversized_key() -> Vec<u8> {
    let mut key = b"huge/".to_vec();
    key.resize(MAX_KEY_SIZE + 64, b'k');
    key
}

/// The cluster survived: every process runs and a raw write and read round-trip.
async fn must_still_serve(cluster: &mut Cluster, api: Api) {
    if let Err(err) = cluster.check_alive() {
        panic!("a process died after bad input: {err}");
    }
    let c = must_raw_client(cluster, api).await;
    c.put(s("alive"), s("yes"))
        .await
        .expect("put after bad input");
    assert_eq!(c.get(s("alive")).await.expect("get"), Some(b"yes".to_vec()));
}

api_tests!(120; key_over_max_key_size_is_rejected, value_over_raft_entry_limit_is_rejected);

async fn key_over_max_key_size_is_rejected(api: Api) {
    let mut cluster = must_single_store_cluster().await;
    let raw = must_raw_client(&cluster, api).await;
    let fine = vec![b'k'; MAX_KEY_SIZE / 2];
    raw.put(fine.clone(), s("ok"))
        .await
        .expect("a 4 KiB key is fine");

    let err = raw
        .put(oversized_key(), s("v"))
        .await
        .expect_err("oversized raw key accepted");
    eprintln!("raw put of a {} byte key: {err:?}", oversized_key().len());
    let with_big: Vec<(Vec<u8>, String)> = vec![
        (b"batch/a".to_vec(), s("1")),
        (oversized_key(), s("big")),
        (b"batch/z".to_vec(), s("2")),
    ];
    let err = raw
        .batch_put(with_big)
        .await
        .expect_err("batch with an oversized key accepted");
    eprintln!("raw batch_put with an oversized key: {err:?}");
    let got = raw
        .batch_get(strings(&["batch/a", "batch/z"]))
        .await
        .expect("batch_get");
    assert!(
        got.is_empty(),
        "a rejected batch wrote part of itself: {:?}",
        kv_strings(got)
    );

    let txn = must_txn_client(&cluster, api).await;
    let mut t = txn.begin_optimistic().await.expect("begin");
    t.put(s("txn/small"), s("1")).await.expect("put");
    t.put(oversized_key(), s("big"))
        .await
        .expect("buffered put");
    let err = t
        .commit()
        .await
        .expect_err("txn with an oversized key committed");
    eprintln!("txn commit with an oversized key: {err:?}");
    // TiKV size-checks prewrite and pessimistic-lock keys only, so the rollback succeeds; it is
    // asserted last so that the checks below run either way.
    let rollback = t.rollback().await;
    let ts = txn.current_timestamp().await.expect("ts");
    let mut snap = txn.snapshot(ts.clone(), TransactionOptions::new_optimistic());
    assert_eq!(
        snap.get(s("txn/small")).await.expect("get"),
        None,
        "partial txn visible"
    );
    let locks = txn
        .scan_locks(&ts, s("huge")..s("txo"), 10)
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "rejected txn left locks: {locks:?}");
    must_still_serve(&mut cluster, api).await;
    rollback.expect("rollback after the rejected commit");
}

async fn value_over_raft_entry_limit_is_rejected(api: Api) {
    let mut cluster = must_single_store_cluster().await;
    let raw = must_raw_client(&cluster, api).await;
    let huge = vec![b'v'; RAFT_ENTRY_MAX_SIZE + 1024 * 1024];
    let err = raw
        .put(s("huge-value"), huge.clone())
        .await
        .expect_err("9 MiB raw value accepted");
    let text = error_text(&err);
    assert!(
        text.contains("raft_entry_too_large") || text.contains("raftentrytoolarge"),
        "expected RaftEntryTooLarge, got {}",
        &text[..text.len().min(2000)]
    );
    assert_eq!(
        raw.get(s("huge-value")).await.expect("get"),
        None,
        "oversized value written"
    );

    let txn = must_txn_client(&cluster, api).await;
    let mut t = txn.begin_optimistic().await.expect("begin");
    t.put(s("txn/huge"), huge).await.expect("buffered put");
    t.put(s("txn/small"), s("1")).await.expect("put");
    let err = t
        .commit()
        .await
        .expect_err("txn with a 9 MiB value committed");
    let text = error_text(&err);
    eprintln!(
        "txn commit with a 9 MiB value: {}",
        &text[..text.len().min(2000)]
    );
    t.rollback().await.expect("rollback");
    let ts = txn.current_timestamp().await.expect("ts");
    let mut snap = txn.snapshot(ts.clone(), TransactionOptions::new_optimistic());
    assert_eq!(
        snap.get(s("txn/small")).await.expect("get"),
        None,
        "partial txn visible"
    );
    assert_eq!(
        snap.get(s("txn/huge")).await.expect("get"),
        None,
        "oversized value visible"
    );
    let locks = txn
        .scan_locks(&ts, s("txn")..s("txo"), 10)
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "rejected txn left locks: {locks:?}");
    assert!(ts.version() > 0);
    must_still_serve(&mut cluster, api).await;
}
