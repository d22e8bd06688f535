//! Transactions through the official `tikv-client` 0.4 `TransactionClient`, under API V1 and V2.
//!
//! Each scenario starts its own one-store cluster and runs as `<name>::api_v1` and
//! `<name>::api_v2`. The expectations are TiKV's Percolator semantics: snapshot isolation,
//! first-committer-wins on write-write conflicts, pessimistic locks that block writers (not
//! readers) until released or expired, resolution of locks left by a client that died, async
//! commit and 1PC returning a usable commit timestamp, `Insert` failing on a live key, and GC
//! that resolves old locks and never moves the safe point backwards.

use std::time::Duration;

use e2e::testing::{error_text, key_strings, kv_strings, pairs, strings};
use e2e::{api_tests, must_eventually, must_single_store_cluster, must_txn_client, Api};
use tikv_client::transaction::{HeartbeatOption, ResolveLocksOptions};
use tikv_client::{CheckLevel, Timestamp, TimestampExt, TransactionClient, TransactionOptions};

fn s(text: &str) -> String {
    text.to_owned()
}

fn v(text: &str) -> Option<Vec<u8>> {
    Some(text.as_bytes().to_vec())
}

/// Commits `list` in one optimistic transaction and returns the commit timestamp.
async fn must_commit(c: &TransactionClient, list: &[(&str, &str)]) -> Timestamp {
    let mut t = c.begin_optimistic().await.expect("begin");
    for (k, val) in list {
        t.put(s(k), s(val)).await.expect("put");
    }
    t.commit()
        .await
        .expect("commit")
        .expect("a txn with writes has a commit ts")
}

/// Reads `key` in a fresh snapshot at the current timestamp.
async fn read_latest(c: &TransactionClient, key: &str) -> Option<Vec<u8>> {
    let ts = c.current_timestamp().await.expect("timestamp");
    let mut snap = c.snapshot(ts, TransactionOptions::new_optimistic());
    snap.get(s(key)).await.expect("snapshot get")
}

/// Options of a transaction that is abandoned: no heartbeat, no complaint when dropped.
fn abandoned(options: TransactionOptions) -> TransactionOptions {
    options
        .heartbeat_option(HeartbeatOption::NoHeartbeat)
        .drop_check(CheckLevel::None)
}

api_tests!(120; commit_and_read_back, rollback_leaves_nothing, read_your_own_writes,
    snapshot_isolation, write_conflict_exactly_one_commits, pessimistic_lock_blocks_then_proceeds,
    abandoned_async_commit_is_resolved, async_commit, one_pc, scan_both_directions, batch_get,
    insert_existing_key_fails, key_exists, gc_resolves_locks_and_keeps_safe_point_monotonic);

api_tests!(150; abandoned_pessimistic_lock_is_resolved);

async fn commit_and_read_back(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    let start = t.start_timestamp().version();
    for (k, val) in [("a", "1"), ("b", "2"), ("c", "3")] {
        t.put(s(k), s(val)).await.expect("put");
    }
    let commit = t.commit().await.expect("commit").expect("commit ts");
    assert!(
        commit.version() > start,
        "commit ts {} <= start ts {start}",
        commit.version()
    );
    let mut r = c.begin_optimistic().await.expect("begin reader");
    assert_eq!(r.get(s("b")).await.expect("get"), v("2"));
    assert_eq!(r.get(s("zz")).await.expect("get missing"), None);
    assert_eq!(
        r.commit().await.expect("read-only commit"),
        None,
        "read-only txn has no ts"
    );
    let mut t = c.begin_optimistic().await.expect("begin");
    t.delete(s("b")).await.expect("delete");
    t.commit().await.expect("commit delete");
    assert_eq!(read_latest(&c, "b").await, None);
    assert_eq!(read_latest(&c, "a").await, v("1"));
    let mut p = c.begin_pessimistic().await.expect("begin pessimistic");
    p.put(s("d"), s("4")).await.expect("pessimistic put");
    p.commit().await.expect("pessimistic commit");
    assert_eq!(read_latest(&c, "d").await, v("4"));
}

async fn rollback_leaves_nothing(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    t.put(s("x"), s("never")).await.expect("put");
    t.rollback().await.expect("rollback");
    assert_eq!(read_latest(&c, "x").await, None);
    let mut p = c.begin_pessimistic().await.expect("begin pessimistic");
    p.put(s("y"), s("never"))
        .await
        .expect("pessimistic put (locks y)");
    p.rollback().await.expect("pessimistic rollback");
    assert_eq!(read_latest(&c, "y").await, None);
    // The pessimistic lock is gone: another locker gets it at once.
    let mut q = c.begin_pessimistic().await.expect("begin");
    e2e::must_within(
        Duration::from_secs(5),
        "locking y after rollback",
        q.put(s("y"), s("1")),
    )
    .await
    .expect("lock y after the rollback");
    q.commit().await.expect("commit");
    assert_eq!(read_latest(&c, "y").await, v("1"));
    let ts = c.current_timestamp().await.expect("ts");
    let locks = c
        .scan_locks(&ts, s("x")..=s("y"), 10)
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "locks left after rollback: {locks:?}");
}

async fn read_your_own_writes(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("old", "committed")]).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    t.put(s("new"), s("mine")).await.expect("put");
    t.put(s("old"), s("overwritten")).await.expect("put");
    assert_eq!(t.get(s("new")).await.expect("get own write"), v("mine"));
    assert_eq!(
        t.get(s("old")).await.expect("get own overwrite"),
        v("overwritten")
    );
    assert_eq!(
        read_latest(&c, "new").await,
        None,
        "uncommitted write visible outside"
    );
    t.delete(s("old")).await.expect("delete");
    assert_eq!(t.get(s("old")).await.expect("get own delete"), None);
    let got: Vec<_> = t.scan(s("a")..s("z"), 10).await.expect("scan").collect();
    assert_eq!(kv_strings(got), pairs(&[("new", "mine")]));
    t.commit().await.expect("commit");
    assert_eq!(read_latest(&c, "new").await, v("mine"));
    assert_eq!(read_latest(&c, "old").await, None);
}

async fn snapshot_isolation(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("k", "v1")]).await;
    let mut early = c.begin_optimistic().await.expect("begin");
    let before = c.current_timestamp().await.expect("ts");
    let commit = must_commit(&c, &[("k", "v2"), ("n", "new")]).await;
    assert!(commit.version() > before.version());
    assert_eq!(
        early.get(s("k")).await.expect("get"),
        v("v1"),
        "saw a later commit"
    );
    assert_eq!(
        early.get(s("n")).await.expect("get"),
        None,
        "saw a later insert"
    );
    let seen: Vec<_> = early
        .scan(s("a")..s("z"), 10)
        .await
        .expect("scan")
        .collect();
    assert_eq!(kv_strings(seen), pairs(&[("k", "v1")]));
    early.rollback().await.expect("rollback");
    let mut snap = c.snapshot(before, TransactionOptions::new_optimistic());
    assert_eq!(snap.get(s("k")).await.expect("snapshot get"), v("v1"));
    let mut at_commit = c.snapshot(commit, TransactionOptions::new_optimistic());
    assert_eq!(
        at_commit.get(s("k")).await.expect("get at commit ts"),
        v("v2")
    );
    assert_eq!(read_latest(&c, "k").await, v("v2"));
}

async fn write_conflict_exactly_one_commits(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    // Concurrent commits of overlapping writes: exactly one wins.
    let mut t1 = c.begin_optimistic().await.expect("begin t1");
    let mut t2 = c.begin_optimistic().await.expect("begin t2");
    t1.put(s("w"), s("t1")).await.expect("put");
    t2.put(s("w"), s("t2")).await.expect("put");
    let (r1, r2) = tokio::join!(t1.commit(), t2.commit());
    let (winner, loser_err, loser) = match (&r1, &r2) {
        (Ok(_), Err(e)) => ("t1", e, &mut t2),
        (Err(e), Ok(_)) => ("t2", e, &mut t1),
        _ => panic!("expected exactly one commit to succeed: t1 {r1:?}, t2 {r2:?}"),
    };
    let text = error_text(loser_err);
    assert!(
        text.contains("conflict") || text.contains("locked"),
        "loser failed for another reason: {loser_err:?}"
    );
    loser.rollback().await.expect("rollback the loser");
    assert_eq!(read_latest(&c, "w").await, v(winner));
    // Sequential: a txn that started before a conflicting commit cannot commit.
    let mut slow = c.begin_optimistic().await.expect("begin slow");
    must_commit(&c, &[("w", "fast")]).await;
    slow.put(s("w"), s("slow")).await.expect("put");
    let err = slow
        .commit()
        .await
        .expect_err("commit over a newer write must fail");
    assert!(
        error_text(&err).contains("conflict"),
        "expected WriteConflict, got {err:?}"
    );
    slow.rollback().await.expect("rollback");
    assert_eq!(read_latest(&c, "w").await, v("fast"));
}

async fn pessimistic_lock_blocks_then_proceeds(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("p", "0")]).await;
    let mut a = c.begin_pessimistic().await.expect("begin a");
    assert_eq!(a.get_for_update(s("p")).await.expect("a locks p"), v("0"));
    a.put(s("p"), s("a")).await.expect("a put");
    let c2 = must_txn_client(&cluster, api).await;
    let mut b = tokio::spawn(async move {
        let mut failures = Vec::new();
        for _ in 0..30 {
            let mut t = c2.begin_pessimistic().await.expect("begin b");
            match t.get_for_update(s("p")).await {
                Ok(seen) => {
                    t.put(s("p"), s("b")).await.expect("b put");
                    t.commit().await.expect("b commit");
                    return (seen, failures);
                }
                Err(err) => {
                    failures.push(format!("{err:?}"));
                    t.rollback().await.expect("rollback failed attempt");
                }
            }
        }
        panic!("b never got the lock: {failures:?}");
    });
    // Asserting that something does not happen needs a window: b must still be waiting.
    let early = tokio::time::timeout(Duration::from_secs(2), &mut b).await;
    assert!(early.is_err(), "b got p while a held its lock: {early:?}");
    let a_commit = a.commit().await.expect("a commit").expect("a commit ts");
    let (seen, _failures) = tokio::time::timeout(Duration::from_secs(60), b)
        .await
        .expect("b did not proceed after a committed")
        .expect("b task");
    assert_eq!(
        seen,
        v("a"),
        "b must read a's committed value under its lock"
    );
    assert_eq!(read_latest(&c, "p").await, v("b"));
    assert!(a_commit.version() > 0);
}

async fn abandoned_pessimistic_lock_is_resolved(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("dead", "before")]).await;
    let mut dying = c
        .begin_with_options(abandoned(TransactionOptions::new_pessimistic()))
        .await
        .expect("begin");
    dying.put(s("dead"), s("never")).await.expect("lock `dead`");
    drop(dying); // the client "dies": its pessimistic lock (TTL 20 s) stays, no heartbeat
    let ts = c.current_timestamp().await.expect("ts");
    let locks = c
        .scan_locks(&ts, s("dead")..=s("dead"), 10)
        .await
        .expect("scan_locks");
    assert_eq!(locks.len(), 1, "expected the abandoned lock: {locks:?}");
    // A pessimistic lock does not block readers.
    let read = e2e::must_within(
        Duration::from_secs(5),
        "read past a pessimistic lock",
        async { read_latest(&c, "dead").await },
    )
    .await;
    assert_eq!(read, v("before"));
    // A writer gets the key once the lock's TTL has passed, and it then commits.
    must_eventually(
        "a writer to take over the abandoned lock",
        Duration::from_secs(90),
        || async {
            let mut t = c.begin_pessimistic().await.map_err(|e| format!("{e:?}"))?;
            match t.put(s("dead"), s("after")).await {
                Ok(()) => t
                    .commit()
                    .await
                    .map(drop)
                    .map_err(|e| format!("commit: {e:?}")),
                Err(err) => {
                    t.rollback().await.map_err(|e| format!("rollback: {e:?}"))?;
                    Err(format!("lock still held: {err:?}"))
                }
            }
        },
    )
    .await;
    assert_eq!(read_latest(&c, "dead").await, v("after"));
    let ts = c.current_timestamp().await.expect("ts");
    let left = c
        .scan_locks(&ts, s("dead")..=s("dead"), 10)
        .await
        .expect("scan_locks");
    assert!(left.is_empty(), "lock not cleaned up: {left:?}");
}

/// Commits an async-commit transaction on a runtime that is dropped right after `commit`
/// returns, so the background commit of the keys never runs: the client dies with the primary
/// and secondaries locked. Returns the commit timestamp the client reported.
fn commit_then_die(pd: Vec<String>, api: Api, list: &[(&str, &str)]) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let commit_ts = rt.block_on(async {
        let c = TransactionClient::new_with_config(pd, api.config())
            .await
            .expect("connect");
        let options = abandoned(TransactionOptions::new_optimistic().use_async_commit());
        let mut t = c.begin_with_options(options).await.expect("begin");
        for (k, val) in list {
            t.put(s(k), s(val)).await.expect("put");
        }
        // No await after this: block_on returns before the spawned commit task is polled.
        t.commit()
            .await
            .expect("async commit")
            .expect("commit ts")
            .version()
    });
    drop(rt);
    commit_ts
}

async fn abandoned_async_commit_is_resolved(api: Api) {
    let cluster = must_single_store_cluster().await;
    let pd = cluster.pd_endpoints();
    let list = [("ac1", "1"), ("ac2", "2"), ("ac3", "3")];
    let commit_ts = tokio::task::spawn_blocking(move || commit_then_die(pd, api, &list))
        .await
        .expect("dying client");
    let c = must_txn_client(&cluster, api).await;
    let ts = c.current_timestamp().await.expect("ts");
    let locks = c
        .scan_locks(&ts, s("ac")..s("ad"), 10)
        .await
        .expect("scan_locks");
    assert_eq!(
        locks.len(),
        3,
        "expected the dead txn's three locks: {locks:?}"
    );
    assert!(
        locks.iter().all(|l| l.use_async_commit),
        "not async-commit locks: {locks:?}"
    );
    // The client was told "committed", so resolving must commit, at the reported timestamp.
    let result = c
        .cleanup_locks(s("ac")..s("ad"), &ts, ResolveLocksOptions::default())
        .await
        .expect("cleanup_locks");
    assert!(
        result.key_error.is_none() && result.region_error.is_none(),
        "{:?}",
        result.key_error
    );
    let left = c
        .scan_locks(&ts, s("ac")..s("ad"), 10)
        .await
        .expect("scan_locks");
    assert!(left.is_empty(), "locks left after resolution: {left:?}");
    let mut at = c.snapshot(
        Timestamp::from_version(commit_ts),
        TransactionOptions::new_optimistic(),
    );
    let got = at
        .batch_get(strings(&["ac1", "ac2", "ac3"]))
        .await
        .expect("batch_get");
    let mut got = kv_strings(got);
    got.sort();
    assert_eq!(
        got,
        pairs(&list),
        "not visible at the reported commit ts {commit_ts}"
    );
    let mut before = c.snapshot(
        Timestamp::from_version(commit_ts - 1),
        TransactionOptions::new_optimistic(),
    );
    assert_eq!(
        before.get(s("ac1")).await.expect("get"),
        None,
        "visible before its commit ts"
    );
}

async fn async_commit(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    for options in [
        TransactionOptions::new_optimistic(),
        TransactionOptions::new_pessimistic(),
    ] {
        let mut t = c
            .begin_with_options(options.use_async_commit())
            .await
            .expect("begin");
        let start = t.start_timestamp().version();
        for (k, val) in [("x1", "1"), ("x2", "2"), ("x3", "3")] {
            t.put(s(k), s(val)).await.expect("put");
        }
        let commit = t.commit().await.expect("async commit").expect("commit ts");
        assert!(
            commit.version() > start,
            "commit ts {commit:?} <= start {start}"
        );
        let mut snap = c.snapshot(commit.clone(), TransactionOptions::new_optimistic());
        let mut got = kv_strings(
            snap.batch_get(strings(&["x1", "x2", "x3"]))
                .await
                .expect("get"),
        );
        got.sort();
        assert_eq!(got, pairs(&[("x1", "1"), ("x2", "2"), ("x3", "3")]));
        let mut t = c.begin_optimistic().await.expect("begin");
        t.delete(s("x1")).await.expect("delete");
        t.commit().await.expect("commit");
    }
}

async fn one_pc(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    let mut t = c
        .begin_with_options(TransactionOptions::new_optimistic().try_one_pc())
        .await
        .expect("begin");
    let start = t.start_timestamp().version();
    t.put(s("o1"), s("1")).await.expect("put");
    t.put(s("o2"), s("2")).await.expect("put");
    let commit = t
        .commit()
        .await
        .expect("1PC commit")
        .expect("one_pc_commit_ts");
    assert!(commit.version() > start);
    let ts = c.current_timestamp().await.expect("ts");
    let locks = c
        .scan_locks(&ts, s("o")..s("p"), 10)
        .await
        .expect("scan_locks");
    assert!(locks.is_empty(), "1PC left locks: {locks:?}");
    let mut snap = c.snapshot(commit, TransactionOptions::new_optimistic());
    assert_eq!(snap.get(s("o2")).await.expect("get"), v("2"));
}

async fn scan_both_directions(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(
        &c,
        &[
            ("a1", "1"),
            ("a2", "2"),
            ("a3", "3"),
            ("a4", "4"),
            ("a5", "5"),
        ],
    )
    .await;
    must_commit(&c, &[("b1", "x")]).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    let got: Vec<_> = t.scan(s("a1")..s("a4"), 10).await.expect("scan").collect();
    assert_eq!(
        kv_strings(got),
        pairs(&[("a1", "1"), ("a2", "2"), ("a3", "3")])
    );
    let got: Vec<_> = t.scan(s("a1")..=s("a5"), 2).await.expect("scan").collect();
    assert_eq!(kv_strings(got), pairs(&[("a1", "1"), ("a2", "2")]));
    let got: Vec<_> = t
        .scan_reverse(s("a1")..s("a5"), 10)
        .await
        .expect("rev")
        .collect();
    assert_eq!(
        kv_strings(got),
        pairs(&[("a4", "4"), ("a3", "3"), ("a2", "2"), ("a1", "1")])
    );
    let got: Vec<_> = t
        .scan_reverse(s("a1")..=s("a5"), 2)
        .await
        .expect("rev")
        .collect();
    assert_eq!(kv_strings(got), pairs(&[("a5", "5"), ("a4", "4")]));
    let keys: Vec<_> = t
        .scan_keys(s("a")..s("c"), 10)
        .await
        .expect("keys")
        .collect();
    assert_eq!(
        key_strings(keys),
        strings(&["a1", "a2", "a3", "a4", "a5", "b1"])
    );
    // Buffered writes merge into scans.
    t.put(s("a6"), s("6")).await.expect("put");
    t.delete(s("a2")).await.expect("delete");
    let keys: Vec<_> = t
        .scan_keys(s("a")..s("b"), 10)
        .await
        .expect("keys")
        .collect();
    assert_eq!(key_strings(keys), strings(&["a1", "a3", "a4", "a5", "a6"]));
    let keys: Vec<_> = t
        .scan_keys_reverse(s("a")..s("b"), 3)
        .await
        .expect("keys")
        .collect();
    assert_eq!(key_strings(keys), strings(&["a6", "a5", "a4"]));
    t.rollback().await.expect("rollback");
}

async fn batch_get(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("g1", "1"), ("g2", "2"), ("g3", "3")]).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    t.put(s("g4"), s("4")).await.expect("put");
    let mut got = kv_strings(
        t.batch_get(strings(&["g1", "g3", "g4", "g9"]))
            .await
            .expect("batch_get"),
    );
    got.sort();
    assert_eq!(got, pairs(&[("g1", "1"), ("g3", "3"), ("g4", "4")]));
    t.rollback().await.expect("rollback");
    let ts = c.current_timestamp().await.expect("ts");
    let mut snap = c.snapshot(ts, TransactionOptions::new_optimistic());
    let mut got = kv_strings(
        snap.batch_get(strings(&["g2", "g4"]))
            .await
            .expect("batch_get"),
    );
    got.sort();
    assert_eq!(got, pairs(&[("g2", "2")]));
}

async fn insert_existing_key_fails(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("dup", "original")]).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    t.insert(s("dup"), s("again"))
        .await
        .expect("buffered insert");
    let err = t
        .commit()
        .await
        .expect_err("insert of a live key must fail");
    assert!(
        error_text(&err).contains("already_exist"),
        "expected AlreadyExist, got {err:?}"
    );
    t.rollback().await.expect("rollback");
    let mut p = c.begin_pessimistic().await.expect("begin pessimistic");
    let err = p
        .insert(s("dup"), s("again"))
        .await
        .expect_err("pessimistic insert must fail");
    assert!(
        error_text(&err).contains("already_exist"),
        "expected AlreadyExist, got {err:?}"
    );
    p.rollback().await.expect("rollback");
    assert_eq!(read_latest(&c, "dup").await, v("original"));
    let mut t = c.begin_optimistic().await.expect("begin");
    t.insert(s("fresh"), s("1")).await.expect("insert");
    t.commit().await.expect("insert of a new key commits");
    assert_eq!(read_latest(&c, "fresh").await, v("1"));
}

async fn key_exists(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("here", "1"), ("gone", "2")]).await;
    let mut t = c.begin_optimistic().await.expect("begin");
    t.delete(s("gone")).await.expect("delete");
    t.commit().await.expect("commit");
    let mut t = c.begin_optimistic().await.expect("begin");
    assert!(t.key_exists(s("here")).await.expect("exists"));
    assert!(!t.key_exists(s("gone")).await.expect("deleted"));
    assert!(!t.key_exists(s("never")).await.expect("missing"));
    t.put(s("never"), s("now")).await.expect("put");
    t.delete(s("here")).await.expect("delete");
    assert!(t.key_exists(s("never")).await.expect("buffered put"));
    assert!(!t.key_exists(s("here")).await.expect("buffered delete"));
    t.rollback().await.expect("rollback");
}

async fn gc_resolves_locks_and_keeps_safe_point_monotonic(api: Api) {
    let cluster = must_single_store_cluster().await;
    let c = must_txn_client(&cluster, api).await;
    must_commit(&c, &[("gc", "v1")]).await;
    must_commit(&c, &[("gc", "v2")]).await;
    let mut dying = c
        .begin_with_options(abandoned(TransactionOptions::new_pessimistic()))
        .await
        .expect("begin");
    dying.put(s("gc-locked"), s("never")).await.expect("lock");
    drop(dying);
    let older = c.current_timestamp().await.expect("ts");
    let safe_point = c.current_timestamp().await.expect("ts");
    assert!(
        c.gc(safe_point.clone()).await.expect("gc"),
        "placement refused the safe point"
    );
    let ts = c.current_timestamp().await.expect("ts");
    let locks = c
        .scan_locks(&ts, s("gc")..s("gd"), 10)
        .await
        .expect("scan_locks");
    assert!(
        locks.is_empty(),
        "gc left locks older than the safe point: {locks:?}"
    );
    // The abandoned lock was rolled back by gc: no 20 s wait for its TTL.
    let mut t = c.begin_pessimistic().await.expect("begin");
    e2e::must_within(
        Duration::from_secs(5),
        "locking gc-locked after gc",
        t.put(s("gc-locked"), s("1")),
    )
    .await
    .expect("lock after gc");
    t.commit().await.expect("commit");
    assert_eq!(read_latest(&c, "gc").await, v("v2"));
    assert!(
        !c.gc(older).await.expect("gc with an older safe point"),
        "the safe point moved backwards"
    );
}
