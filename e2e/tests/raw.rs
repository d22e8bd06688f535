//! RawKV through the official `tikv-client` 0.4 `RawClient`, under API V1 and V2.
//!
//! Each scenario starts its own one-store cluster and runs as `<name>::api_v1` and
//! `<name>::api_v2`. Expected behaviour is TiKV's: empty keys and values are stored (tikv#13635),
//! a missing key reads as `None`, CAS returns the previous value, TTL is honoured under V2 (a V1
//! TiKV without `enable-ttl` refuses it), and under V2 a raw request naming a column family is
//! refused (`CfDeprecated`). Scans keep their keys below `r` so that they stay in the region below
//! the keyspace boundaries: the 0.4 client's `RawClient::scan` relies on the region holding the
//! start key ending at or after the scan's end (see the note in `scan_forward`).

use std::time::Duration;

use e2e::testing::{error_text, key_strings, kv_strings, pairs, strings};
use e2e::{api_tests, must_eventually, must_raw_client, must_single_store_cluster, must_within};
use e2e::{must_txn_client, Api, ClusterBuilder, Role, FAULT_INJECTION_CONFIG};
use tikv_client::{ColumnFamily, Error, RawClient};

/// Bound on each scan call: a scan that never returns names itself instead of tripping the
/// test deadline.
const SCAN_LIMIT: Duration = Duration::from_secs(20);

fn s(text: &str) -> String {
    text.to_owned()
}

fn v(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

async fn must_batch_put(c: &RawClient, list: &[(&str, &str)]) {
    let kvs: Vec<(String, String)> = pairs(list);
    c.batch_put(kvs).await.expect("batch_put");
}

async fn sorted_batch_get(c: &RawClient, keys: &[&str]) -> Vec<(String, String)> {
    let mut got = kv_strings(c.batch_get(strings(keys)).await.expect("batch_get"));
    got.sort();
    got
}

api_tests!(90; put_get_delete, empty_key_and_empty_value, batch_operations, scan_forward,
    scan_key_only, scan_reverse, batch_scan, delete_range, ttl_expiry, compare_and_swap,
    column_families);

async fn put_get_delete(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    assert_eq!(c.get(s("missing")).await.expect("get missing"), None);
    c.put(s("k1"), s("v1")).await.expect("put k1");
    assert_eq!(c.get(s("k1")).await.expect("get k1"), v("v1"));
    c.put(s("k1"), s("v2")).await.expect("overwrite k1");
    assert_eq!(c.get(s("k1")).await.expect("get k1"), v("v2"));
    c.delete(s("k1")).await.expect("delete k1");
    assert_eq!(c.get(s("k1")).await.expect("get deleted k1"), None);
    c.delete(s("never-written"))
        .await
        .expect("deleting a missing key succeeds");
    let big = vec![7u8; 64 * 1024];
    c.put(s("big"), big.clone())
        .await
        .expect("put a 64 KiB value");
    assert_eq!(c.get(s("big")).await.expect("get big"), Some(big));
}

async fn empty_key_and_empty_value(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    // TiKV stores empty values and tells them apart from missing keys (`not_found`).
    c.put(s("empty-value"), Vec::<u8>::new())
        .await
        .expect("put empty value");
    assert_eq!(
        c.get(s("empty-value")).await.expect("get"),
        Some(Vec::new())
    );
    assert_eq!(
        sorted_batch_get(&c, &["empty-value", "absent"]).await,
        pairs(&[("empty-value", "")])
    );
    // ... and the empty key is a key like any other.
    c.put(Vec::<u8>::new(), s("value-of-empty-key"))
        .await
        .expect("put empty key");
    assert_eq!(
        c.get(Vec::<u8>::new()).await.expect("get empty key"),
        v("value-of-empty-key")
    );
    c.delete(Vec::<u8>::new()).await.expect("delete empty key");
    assert_eq!(
        c.get(Vec::<u8>::new())
            .await
            .expect("get deleted empty key"),
        None
    );
}

async fn batch_operations(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    must_batch_put(
        &c,
        &[
            ("b3", "3"),
            ("b1", "1"),
            ("b5", "5"),
            ("b2", "2"),
            ("b4", "4"),
        ],
    )
    .await;
    assert_eq!(
        sorted_batch_get(&c, &["b1", "b2", "b9", "b4"]).await,
        pairs(&[("b1", "1"), ("b2", "2"), ("b4", "4")]),
        "batch_get returns the present keys only"
    );
    c.batch_delete(strings(&["b2", "b4", "b9"]))
        .await
        .expect("batch_delete");
    assert_eq!(
        sorted_batch_get(&c, &["b1", "b2", "b3", "b4", "b5"]).await,
        pairs(&[("b1", "1"), ("b3", "3"), ("b5", "5")])
    );
    assert!(c
        .batch_get(Vec::<String>::new())
        .await
        .expect("empty batch_get")
        .is_empty());
}

async fn scan_forward(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    must_batch_put(
        &c,
        &[
            ("k1", "1"),
            ("k2", "2"),
            ("k3", "3"),
            ("k4", "4"),
            ("k5", "5"),
        ],
    )
    .await;
    // Limit reached inside the range.
    let got = must_within(
        SCAN_LIMIT,
        "scan k1..k9 limit 2",
        c.scan(s("k1")..s("k9"), 2),
    )
    .await;
    assert_eq!(
        kv_strings(got.expect("scan")),
        pairs(&[("k1", "1"), ("k2", "2")])
    );
    // End bound reached before the limit. The 0.4 client then moves on to the end of the region
    // holding `k2` and stops only if that is at or past `k5`; with a last region ending at ""
    // it starts over from "" (duplicates, or no return when nothing matches). PD's regions end
    // at the keyspace boundaries (`r...`), which is what this relies on.
    let got = must_within(
        SCAN_LIMIT,
        "scan k2..k5 limit 10",
        c.scan(s("k2")..s("k5"), 10),
    )
    .await;
    assert_eq!(
        kv_strings(got.expect("scan")),
        pairs(&[("k2", "2"), ("k3", "3"), ("k4", "4")]),
        "end bound is exclusive"
    );
    let got = must_within(SCAN_LIMIT, "scan k2..=k5", c.scan(s("k2")..=s("k5"), 10)).await;
    assert_eq!(
        kv_strings(got.expect("scan")),
        pairs(&[("k2", "2"), ("k3", "3"), ("k4", "4"), ("k5", "5")]),
        "inclusive end bound"
    );
    let got = must_within(
        SCAN_LIMIT,
        "scan k6..k9 (empty)",
        c.scan(s("k6")..s("k9"), 10),
    )
    .await;
    assert!(got.expect("empty scan").is_empty());
    if api == Api::V2 {
        // Unbounded end: the client maps it to the end of the keyspace.
        let got = must_within(SCAN_LIMIT, "scan k3.. (V2)", c.scan(s("k3").., 10)).await;
        assert_eq!(
            kv_strings(got.expect("scan")),
            pairs(&[("k3", "3"), ("k4", "4"), ("k5", "5")])
        );
    }
    let too_big = c.scan(s("k1")..s("k9"), 10241).await;
    assert!(
        matches!(too_big, Err(Error::MaxScanLimitExceeded { .. })),
        "{too_big:?}"
    );
}

async fn scan_key_only(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    must_batch_put(&c, &[("k1", "1"), ("k2", "2"), ("k3", "3"), ("k4", "4")]).await;
    let keys = must_within(SCAN_LIMIT, "scan_keys", c.scan_keys(s("k1")..s("k4"), 10)).await;
    assert_eq!(
        key_strings(keys.expect("scan_keys")),
        strings(&["k1", "k2", "k3"])
    );
    let keys = must_within(
        SCAN_LIMIT,
        "scan_keys limit",
        c.scan_keys(s("k1")..=s("k4"), 4),
    )
    .await;
    assert_eq!(
        key_strings(keys.expect("scan_keys")),
        strings(&["k1", "k2", "k3", "k4"])
    );
}

async fn scan_reverse(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    must_batch_put(
        &c,
        &[
            ("k1", "1"),
            ("k2", "2"),
            ("k3", "3"),
            ("k4", "4"),
            ("k5", "5"),
        ],
    )
    .await;
    // The range is [lower, upper); results come from the top down.
    let got = must_within(
        SCAN_LIMIT,
        "scan_reverse k2..k5",
        c.scan_reverse(s("k2")..s("k5"), 10),
    )
    .await;
    assert_eq!(
        kv_strings(got.expect("scan_reverse")),
        pairs(&[("k4", "4"), ("k3", "3"), ("k2", "2")])
    );
    let got = must_within(
        SCAN_LIMIT,
        "scan_reverse k2..=k5",
        c.scan_reverse(s("k2")..=s("k5"), 2),
    )
    .await;
    assert_eq!(
        kv_strings(got.expect("scan_reverse")),
        pairs(&[("k5", "5"), ("k4", "4")])
    );
    let keys = must_within(
        SCAN_LIMIT,
        "scan_keys_reverse k1..k4",
        c.scan_keys_reverse(s("k1")..s("k4"), 3),
    )
    .await;
    assert_eq!(
        key_strings(keys.expect("scan_keys_reverse")),
        strings(&["k3", "k2", "k1"])
    );
}

async fn batch_scan(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    must_batch_put(
        &c,
        &[
            ("a1", "1"),
            ("a2", "2"),
            ("a3", "3"),
            ("c1", "4"),
            ("c2", "5"),
        ],
    )
    .await;
    let ranges = vec![s("a1")..s("a9"), s("c0")..s("c9")];
    let got = must_within(SCAN_LIMIT, "batch_scan", c.batch_scan(ranges.clone(), 10)).await;
    assert_eq!(
        kv_strings(got.expect("batch_scan")),
        pairs(&[
            ("a1", "1"),
            ("a2", "2"),
            ("a3", "3"),
            ("c1", "4"),
            ("c2", "5")
        ])
    );
    let got = must_within(
        SCAN_LIMIT,
        "batch_scan each_limit 1",
        c.batch_scan(ranges, 1),
    )
    .await;
    assert_eq!(
        kv_strings(got.expect("batch_scan")),
        pairs(&[("a1", "1"), ("c1", "4")]),
        "each_limit applies per range"
    );
    let ranges = vec![s("a2")..s("a3"), s("b")..s("c")];
    let keys = must_within(SCAN_LIMIT, "batch_scan_keys", c.batch_scan_keys(ranges, 10)).await;
    assert_eq!(
        key_strings(keys.expect("batch_scan_keys")),
        strings(&["a2"])
    );
}

async fn delete_range(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    must_batch_put(
        &c,
        &[
            ("d1", "1"),
            ("d2", "2"),
            ("d3", "3"),
            ("d4", "4"),
            ("e1", "5"),
        ],
    )
    .await;
    c.delete_range(s("d2")..s("d4"))
        .await
        .expect("delete_range d2..d4");
    assert_eq!(
        sorted_batch_get(&c, &["d1", "d2", "d3", "d4", "e1"]).await,
        pairs(&[("d1", "1"), ("d4", "4"), ("e1", "5")]),
        "delete_range removes [start, end) only"
    );
    c.delete_range(s("d")..=s("d4"))
        .await
        .expect("delete_range d..=d4");
    assert_eq!(
        sorted_batch_get(&c, &["d1", "d4", "e1"]).await,
        pairs(&[("e1", "5")])
    );
    let atomic = c.with_atomic_for_cas();
    let refused = atomic.delete_range(s("a")..s("z")).await;
    assert!(
        matches!(refused, Err(Error::UnsupportedMode)),
        "{refused:?}"
    );
}

async fn ttl_expiry(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    let put = c.put_with_ttl(s("ttl"), s("short-lived"), 2).await;
    if let (Api::V1, Err(err)) = (api, &put) {
        // A V1 TiKV without `storage.enable-ttl` refuses TTLs (TtlNotEnabled): then it must say
        // so and write nothing.
        assert!(
            error_text(err).contains("ttl"),
            "unclear TTL refusal: {err:?}"
        );
        assert_eq!(
            c.get(s("ttl")).await.expect("get"),
            None,
            "refused put wrote data"
        );
        return;
    }
    put.expect("put_with_ttl");
    assert_eq!(
        c.get(s("ttl")).await.expect("get before expiry"),
        v("short-lived")
    );
    let left = c
        .get_key_ttl_secs(s("ttl"))
        .await
        .expect("get_key_ttl_secs");
    assert!(
        matches!(left, Some(t) if t <= 2),
        "remaining TTL {left:?}, expected 0..=2"
    );
    c.put(s("forever"), s("x")).await.expect("put without TTL");
    assert_eq!(
        c.get_key_ttl_secs(s("forever"))
            .await
            .expect("ttl of plain key"),
        Some(0)
    );
    assert_eq!(
        c.get_key_ttl_secs(s("absent"))
            .await
            .expect("ttl of missing key"),
        None
    );
    must_eventually("key `ttl` to expire", Duration::from_secs(20), || async {
        match c.get(s("ttl")).await {
            Ok(None) => Ok(()),
            other => Err(format!("get(ttl) = {other:?}")),
        }
    })
    .await;
    assert_eq!(
        c.get_key_ttl_secs(s("ttl"))
            .await
            .expect("ttl of expired key"),
        None
    );
    let kvs = pairs(&[("t1", "1"), ("t2", "2")]);
    c.batch_put_with_ttl(kvs, vec![1, 0])
        .await
        .expect("batch_put_with_ttl");
    must_eventually("key `t1` to expire", Duration::from_secs(20), || async {
        match c.get(s("t1")).await {
            Ok(None) => Ok(()),
            other => Err(format!("get(t1) = {other:?}")),
        }
    })
    .await;
    assert_eq!(
        c.get(s("t2")).await.expect("get t2"),
        v("2"),
        "TTL 0 means no expiry"
    );
}

async fn compare_and_swap(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await.with_atomic_for_cas();
    let cas = |prev: Option<&str>, new: &str| {
        let prev = prev.map(|p| p.as_bytes().to_vec());
        c.compare_and_swap(s("cas"), prev, s(new))
    };
    assert_eq!(
        cas(None, "v1").await.expect("cas on absent key"),
        (None, true)
    );
    assert_eq!(
        cas(Some("wrong"), "v2").await.expect("cas mismatch"),
        (v("v1"), false)
    );
    assert_eq!(
        c.get(s("cas")).await.expect("get"),
        v("v1"),
        "failed CAS wrote"
    );
    assert_eq!(
        cas(Some("v1"), "v2").await.expect("cas match"),
        (v("v1"), true)
    );
    assert_eq!(c.get(s("cas")).await.expect("get"), v("v2"));
    assert_eq!(
        cas(None, "v3").await.expect("cas expecting absent"),
        (v("v2"), false)
    );
    assert_eq!(c.get(s("cas")).await.expect("get"), v("v2"));
    c.delete(s("cas")).await.expect("atomic delete");
    assert_eq!(
        cas(None, "v4").await.expect("cas after delete"),
        (None, true)
    );
    let plain = must_raw_client(&cluster, api).await;
    let refused = plain.compare_and_swap(s("cas"), None, s("x")).await;
    assert!(
        matches!(refused, Err(Error::UnsupportedMode)),
        "{refused:?}"
    );
}

async fn column_families(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_raw_client(&cluster, api).await;
    let write_cf = c.with_cf(ColumnFamily::Write);
    let put = write_cf.put(s("cf-key"), s("in-write")).await;
    if api == Api::V2 {
        // API V2 does not let raw requests name a column family (TiKV: CfDeprecated).
        assert!(put.is_err(), "V2 raw put with cf=write was accepted");
        assert_eq!(
            c.get(s("cf-key")).await.expect("get"),
            None,
            "refused put wrote data"
        );
        return;
    }
    put.expect("put in write cf");
    assert_eq!(
        write_cf.get(s("cf-key")).await.expect("get write cf"),
        v("in-write")
    );
    assert_eq!(c.get(s("cf-key")).await.expect("get default cf"), None);
    let lock_cf = c.with_cf(ColumnFamily::Lock);
    assert_eq!(lock_cf.get(s("cf-key")).await.expect("get lock cf"), None);
    c.put(s("cf-key"), s("in-default"))
        .await
        .expect("put default cf");
    assert_eq!(
        write_cf.get(s("cf-key")).await.expect("get write cf"),
        v("in-write")
    );
    assert_eq!(
        c.get(s("cf-key")).await.expect("get default cf"),
        v("in-default")
    );
    write_cf
        .delete(s("cf-key"))
        .await
        .expect("delete in write cf");
    assert_eq!(
        c.get(s("cf-key")).await.expect("get default cf"),
        v("in-default")
    );
}

/// One cluster serves V1 and V2 clients at once and keeps their data apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v1_and_v2_data_are_kept_apart() {
    e2e::init_test_tracing();
    e2e::with_deadline(Duration::from_secs(90), async {
        let cluster = must_single_store_cluster().await;
        let v1 = must_raw_client(&cluster, Api::V1).await;
        let v2 = must_raw_client(&cluster, Api::V2).await;
        v1.put(s("shared"), s("from-v1")).await.expect("v1 put");
        assert_eq!(
            v2.get(s("shared")).await.expect("v2 get"),
            None,
            "V2 sees V1 data"
        );
        v2.put(s("shared"), s("from-v2")).await.expect("v2 put");
        assert_eq!(v1.get(s("shared")).await.expect("v1 get"), v("from-v1"));
        assert_eq!(v2.get(s("shared")).await.expect("v2 get"), v("from-v2"));
        v2.delete(s("shared")).await.expect("v2 delete");
        assert_eq!(
            v1.get(s("shared")).await.expect("v1 get"),
            v("from-v1"),
            "V2 delete hit V1"
        );
        let got = must_within(SCAN_LIMIT, "v2 scan", v2.scan(s("sh")..s("si"), 10)).await;
        assert!(got.expect("v2 scan").is_empty(), "V2 scan sees V1 keys");

        let t1 = must_txn_client(&cluster, Api::V1).await;
        let t2 = must_txn_client(&cluster, Api::V2).await;
        let mut w = t1.begin_optimistic().await.expect("v1 begin");
        w.put(s("txn-shared"), s("from-v1"))
            .await
            .expect("v1 txn put");
        w.commit().await.expect("v1 commit");
        let mut r = t2.begin_optimistic().await.expect("v2 begin");
        assert_eq!(
            r.get(s("txn-shared")).await.expect("v2 txn get"),
            None,
            "V2 sees V1 txn data"
        );
        r.put(s("txn-shared"), s("from-v2"))
            .await
            .expect("v2 txn put");
        r.commit().await.expect("v2 commit");
        let mut check = t1.begin_optimistic().await.expect("v1 begin");
        assert_eq!(
            check.get(s("txn-shared")).await.expect("v1 txn get"),
            v("from-v1")
        );
        check.rollback().await.expect("rollback read-only txn");
        assert_eq!(
            v1.get(s("txn-shared")).await.expect("v1 raw get"),
            None,
            "raw sees txn data"
        );
    })
    .await
}

/// A store's wall clock is what its raw TTLs read, written and judged: stepped ahead past a
/// key's TTL the key reads as expired, and a TTL written meanwhile counts from the stepped
/// clock. Nothing else follows it: the store keeps serving reads and writes (raft ticks and
/// leases run on the monotonic clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_clock_step_moves_ttl_expiry_and_nothing_else() {
    e2e::init_test_tracing();
    e2e::with_deadline(Duration::from_secs(90), async {
        let cluster = ClusterBuilder::default()
            .stores(1)
            .store_config(FAULT_INJECTION_CONFIG)
            .must_start()
            .await;
        let c = must_raw_client(&cluster, Api::V2).await;
        let store = Role::Store(0);
        c.put_with_ttl(s("ttl-60"), s("a minute"), 60)
            .await
            .expect("put_with_ttl");
        c.put(s("plain"), s("kept")).await.expect("put");

        cluster
            .set_clock_offset(store, 90_000)
            .await
            .expect("step the store's clock 90 s ahead");
        assert_eq!(
            c.get(s("ttl-60")).await.expect("get after the step"),
            None,
            "a 60 s TTL read on a clock 90 s ahead has expired"
        );
        assert_eq!(c.get(s("plain")).await.expect("get plain"), v("kept"));
        c.put_with_ttl(s("ttl-written-ahead"), s("x"), 60)
            .await
            .expect("a write with the clock ahead");

        cluster
            .set_clock_offset(store, 0)
            .await
            .expect("step the clock back");
        let left = c
            .get_key_ttl_secs(s("ttl-written-ahead"))
            .await
            .expect("get_key_ttl_secs");
        assert!(
            matches!(left, Some(t) if (120..=150).contains(&t)),
            "a 60 s TTL written on a clock 90 s ahead has about 150 s left on the true clock, \
             not {left:?}"
        );
        c.put(s("plain"), s("still-writable"))
            .await
            .expect("put after the steps");
        assert_eq!(
            c.get(s("plain")).await.expect("get plain"),
            v("still-writable")
        );
    })
    .await;
}
