//! Pessimistic lock waiting and deadlock detection through the official `tikv-client` 0.4.
//!
//! A pessimistic lock request that meets another transaction's lock waits on the store (up
//! to `pessimistic-txn.wait-for-lock-timeout-ms`) and proceeds as soon as the holder rolls
//! back, or meets the holder's newer commit as a write conflict, instead of giving up after
//! the client's own lock backoff (about 1.5 s). Two transactions locking two keys in
//! opposite order deadlock: the one whose wait closes the cycle gets `KeyError.deadlock`
//! (surfaced by the client as `PessimisticLockError { inner: MultipleKeyErrors([KeyError]) }`)
//! naming the wait chain, and the other commits once the victim rolls back. On a 3-store
//! cluster the keys lie in regions led by different stores, so the wait-for edges reach the
//! detector (the leader of the first region) over the `deadlock.Deadlock/Detect` stream,
//! and detection keeps working after that leadership moves to another store.

use std::time::{Duration, Instant};

use e2e::testing::serial;
use e2e::topology::{leader_store, region_for_key};
use e2e::{api_tests, must_eventually, with_deadline, Api, Cluster, ClusterBuilder};
use futures::future::{select, Either};
use proto::deadlock::deadlock_client::DeadlockClient;
use proto::deadlock::WaitForEntriesRequest;
use tikv_client::{Error, TimestampExt, Transaction, TransactionClient, TransactionOptions};

/// A wait that only a wake-up can cut short: requests wait up to 15 s on the store.
const LONG_WAIT: &str = "[pessimistic-txn]\nwait-for-lock-timeout-ms = 15000\n";
/// Longer than the store's longest wait, so the client never cuts a wait short.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Longer than the client's whole lock backoff (about 1.5 s): a request still unanswered
/// after this waited on the store.
const STILL_BLOCKED: Duration = Duration::from_secs(3);
/// Well under the 15 s wait: answering within it after a release means the store woke it.
const WOKEN_WITHIN: Duration = Duration::from_secs(8);
const SETTLE: Duration = Duration::from_secs(90);

fn s(text: &str) -> String {
    text.to_owned()
}

async fn client(cluster: &Cluster, api: Api) -> TransactionClient {
    let cfg = api.config().with_timeout(CLIENT_TIMEOUT);
    match TransactionClient::new_with_config(cluster.pd_endpoints(), cfg).await {
        Ok(c) => c,
        Err(e) => panic!("client ({api:?}): {e:?}\n{}", cluster.log_tails()),
    }
}

async fn must_commit_value(c: &TransactionClient, key: &str, value: &str) {
    let mut t = c.begin_optimistic().await.expect("begin");
    t.put(s(key), s(value)).await.expect("put");
    t.commit().await.expect("commit");
}

async fn read_latest(c: &TransactionClient, key: Vec<u8>) -> Option<Vec<u8>> {
    let ts = c.current_timestamp().await.expect("timestamp");
    let mut snap = c.snapshot(ts, TransactionOptions::new_optimistic());
    snap.get(key).await.expect("snapshot get")
}

/// What a deadlock error told the client.
#[derive(Debug)]
struct SeenDeadlock {
    lock_ts: u64,
    lock_key: Vec<u8>,
    /// (txn, wait_for_txn) of each wait-chain entry.
    chain: Vec<(u64, u64)>,
}

/// The `KeyError.deadlock` inside whatever the client wrapped it in.
fn deadlock_of(err: &Error) -> Option<SeenDeadlock> {
    match err {
        Error::PessimisticLockError { inner, .. } => deadlock_of(inner),
        Error::MultipleKeyErrors(errs) | Error::ExtractedErrors(errs) => {
            errs.iter().find_map(deadlock_of)
        }
        Error::KeyError(ke) => ke.deadlock.as_ref().map(|d| SeenDeadlock {
            lock_ts: d.lock_ts,
            lock_key: d.lock_key.clone(),
            chain: d
                .wait_chain
                .iter()
                .map(|e| (e.txn, e.wait_for_txn))
                .collect(),
        }),
        _ => None,
    }
}

/// Whether the client surfaced a write conflict.
fn is_write_conflict(err: &Error) -> bool {
    match err {
        Error::PessimisticLockError { inner, .. } => is_write_conflict(inner),
        Error::MultipleKeyErrors(errs) | Error::ExtractedErrors(errs) => {
            errs.iter().any(is_write_conflict)
        }
        Error::KeyError(ke) => ke.conflict.is_some(),
        _ => false,
    }
}

api_tests!(120; blocked_lock_proceeds_when_the_holder_rolls_back,
    blocked_lock_meets_the_holders_commit_as_a_conflict_then_reads_it,
    opposite_lock_order_deadlocks_one_txn_and_the_other_commits);

async fn long_wait_cluster() -> Cluster {
    ClusterBuilder::default()
        .stores(1)
        .store_config(LONG_WAIT)
        .must_start()
        .await
}

type Answer = (Transaction, tikv_client::Result<Option<Vec<u8>>>, Instant);

/// `get_for_update(key)` in a new pessimistic txn, in the background.
async fn spawn_get_for_update(c: &TransactionClient, key: &str) -> tokio::task::JoinHandle<Answer> {
    let mut t = c.begin_pessimistic().await.expect("begin waiter");
    let key = s(key);
    tokio::spawn(async move {
        let r = t.get_for_update(key).await;
        (t, r, Instant::now())
    })
}

async fn must_still_wait(task: &mut tokio::task::JoinHandle<Answer>) {
    let early = tokio::time::timeout(STILL_BLOCKED, &mut *task).await;
    if let Ok(answer) = early {
        let (_txn, r, _) = answer.expect("waiter task");
        panic!("the waiter answered while the lock was held: {r:?}");
    }
}

async fn must_be_woken(task: tokio::task::JoinHandle<Answer>, released: Instant) -> Answer {
    let answer = e2e::must_within(WOKEN_WITHIN, "the waiter after the release", task)
        .await
        .expect("waiter task");
    assert!(answer.2 >= released, "answered before the release");
    answer
}

async fn blocked_lock_proceeds_when_the_holder_rolls_back(api: Api) {
    let cluster = long_wait_cluster().await;
    let c = client(&cluster, api).await;
    must_commit_value(&c, "p", "0").await;
    let mut holder = c.begin_pessimistic().await.expect("begin holder");
    assert_eq!(
        holder.get_for_update(s("p")).await.expect("holder locks p"),
        Some(b"0".to_vec())
    );
    let mut waiter = spawn_get_for_update(&c, "p").await;
    must_still_wait(&mut waiter).await;
    let released = Instant::now();
    holder.rollback().await.expect("holder rolls back");
    let (mut t, got, _) = must_be_woken(waiter, released).await;
    assert_eq!(got.expect("the waiter gets the lock"), Some(b"0".to_vec()));
    t.put(s("p"), s("waiter")).await.expect("put");
    t.commit().await.expect("waiter commits");
    assert_eq!(
        read_latest(&c, b"p".to_vec()).await,
        Some(b"waiter".to_vec())
    );
}

async fn blocked_lock_meets_the_holders_commit_as_a_conflict_then_reads_it(api: Api) {
    let cluster = long_wait_cluster().await;
    let c = client(&cluster, api).await;
    must_commit_value(&c, "p", "0").await;
    let mut holder = c.begin_pessimistic().await.expect("begin holder");
    holder
        .put(s("p"), s("holder"))
        .await
        .expect("holder locks p");
    let mut waiter = spawn_get_for_update(&c, "p").await;
    must_still_wait(&mut waiter).await;
    let released = Instant::now();
    holder.commit().await.expect("holder commits");
    let (mut t, got, _) = must_be_woken(waiter, released).await;
    // The commit is newer than the waiter's for_update_ts: TiKV's answer is a conflict...
    let err = got.expect_err("a conflict with the newer commit");
    assert!(
        is_write_conflict(&err),
        "expected a write conflict: {err:?}"
    );
    // ...and the statement's retry (a fresh for_update_ts) locks and reads the commit.
    let again = t.get_for_update(s("p")).await.expect("retry locks p");
    assert_eq!(again, Some(b"holder".to_vec()));
    t.put(s("p"), s("waiter")).await.expect("put");
    t.commit().await.expect("waiter commits");
    assert_eq!(
        read_latest(&c, b"p".to_vec()).await,
        Some(b"waiter".to_vec())
    );
}

async fn opposite_lock_order_deadlocks_one_txn_and_the_other_commits(api: Api) {
    let cluster = ClusterBuilder::default().stores(1).must_start().await;
    let c = client(&cluster, api).await;
    must_deadlock_one_and_commit_the_other(&cluster, &c, "k1", "k2").await;
}

/// Asks every store for its waiters until txn `txn` waits for `holder`.
async fn must_wait_for(cluster: &Cluster, txn: u64, holder: u64) {
    let what = format!("txn {txn} to wait for txn {holder} on some store");
    must_eventually(&what, Duration::from_secs(30), || async move {
        let mut seen = Vec::new();
        for i in 0..cluster.store_count() {
            let addr = format!("http://{}", cluster.store_addr(i));
            let mut c = DeadlockClient::connect(addr)
                .await
                .map_err(|e| e.to_string())?;
            let entries = c
                .get_wait_for_entries(WaitForEntriesRequest {})
                .await
                .map_err(|e| e.to_string())?
                .into_inner()
                .entries;
            if entries
                .iter()
                .any(|e| e.txn == txn && e.wait_for_txn == holder)
            {
                return Ok(());
            }
            seen.extend(entries.iter().map(|e| (e.txn, e.wait_for_txn)));
        }
        Err(format!("waiters seen: {seen:?}"))
    })
    .await
}

type LockAnswer = (Transaction, tikv_client::Result<()>);

fn spawn_lock(mut t: Transaction, key: &str) -> tokio::task::JoinHandle<LockAnswer> {
    let key = s(key);
    tokio::spawn(async move {
        let r = t.lock_keys(vec![key]).await;
        (t, r)
    })
}

/// T1 locks `k1`, T2 locks `k2`, then T1 asks for `k2` and T2 for `k1`: exactly one of them
/// gets a deadlock error naming the cycle; once it rolls back, the other gets its lock and
/// commits.
async fn must_deadlock_one_and_commit_the_other(
    cluster: &Cluster,
    c: &TransactionClient,
    k1: &str,
    k2: &str,
) {
    let mut t1 = c.begin_pessimistic().await.expect("begin t1");
    let mut t2 = c.begin_pessimistic().await.expect("begin t2");
    let (ts1, ts2) = (
        t1.start_timestamp().version(),
        t2.start_timestamp().version(),
    );
    t1.lock_keys(vec![s(k1)]).await.expect("t1 locks k1");
    t2.lock_keys(vec![s(k2)]).await.expect("t2 locks k2");
    let first = spawn_lock(t1, k2);
    must_wait_for(cluster, ts1, ts2).await;
    let second = spawn_lock(t2, k1);
    // Neither can finish before the cycle is broken: the first answer is the victim's.
    let (victim_answer, survivor) = match e2e::must_within(
        Duration::from_secs(30),
        "a deadlock answer",
        select(first, second),
    )
    .await
    {
        Either::Left((a, other)) => (a.expect("t1 task"), other),
        Either::Right((b, other)) => (b.expect("t2 task"), other),
    };
    let (mut victim, result) = victim_answer;
    let err = result.expect_err("the first answer must be a deadlock error");
    let seen = deadlock_of(&err).unwrap_or_else(|| panic!("not a deadlock error: {err:?}"));
    let v = victim.start_timestamp().version();
    let other = if v == ts1 { ts2 } else { ts1 };
    let (waited_key, held_key) = if v == ts1 { (k2, k1) } else { (k1, k2) };
    assert_eq!(seen.lock_ts, other, "{seen:?}");
    assert!(seen.lock_key.ends_with(waited_key.as_bytes()), "{seen:?}");
    assert_eq!(seen.chain, vec![(other, v), (v, other)], "the wait chain");
    victim.rollback().await.expect("the victim rolls back");
    let (mut winner, result) = e2e::must_within(Duration::from_secs(30), "the survivor", survivor)
        .await
        .expect("survivor task");
    result.expect("the survivor gets its second lock");
    winner.put(s(k1), s("winner")).await.expect("put k1");
    winner.put(s(k2), s("winner")).await.expect("put k2");
    winner.commit().await.expect("the survivor commits");
    for key in [held_key, waited_key] {
        assert_eq!(
            read_latest(c, key.as_bytes().to_vec()).await,
            Some(b"winner".to_vec())
        );
    }
}

/// V1 transactional keys, one per region of a fresh cluster (the first region, the raw and
/// the transactional keyspace ranges of the DEFAULT keyspace, and the ranges between).
const CANDIDATES: [&str; 5] = ["a", "r\0\0\0k", "s", "x\0\0\0k", "z"];

/// Two candidate keys whose regions different stores lead, neither being `avoid` if that is
/// possible; returns them with the detector's store (the leader of the first region).
async fn must_keys_on_two_stores(cluster: &Cluster) -> (String, String, u64) {
    must_eventually("two keys led by different stores", SETTLE, || async {
        let regions = cluster.regions().await?;
        let leader = |key: &[u8]| -> Result<u64, String> {
            let r = region_for_key(&regions, key)?;
            leader_store(r).ok_or_else(|| format!("region {} has no leader", r.id))
        };
        let detector = leader(b"")?;
        let led: Vec<(&str, u64)> = CANDIDATES
            .iter()
            .map(|k| Ok((*k, leader(&proto::codec::encode_bytes(k.as_bytes()))?)))
            .collect::<Result<_, String>>()?;
        let pairs = led.iter().flat_map(|a| led.iter().map(move |b| (a, b)));
        let off = |s: u64| s != detector;
        let best = pairs
            .clone()
            .find(|(a, b)| a.1 != b.1 && off(a.1) && off(b.1))
            .or_else(|| pairs.clone().find(|(a, b)| a.1 != b.1));
        match best {
            Some((a, b)) => Ok((s(a.0), s(b.0), detector)),
            None => Err(format!("leaders {led:?}, detector on {detector}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_across_stores_is_detected_and_follows_the_detector_when_it_moves() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(300), async {
        let mut cluster = ClusterBuilder::default().stores(3).must_start().await;
        cluster.must_settled(3, SETTLE).await;
        let c = client(&cluster, Api::V1).await;
        let (k1, k2, detector) = must_keys_on_two_stores(&cluster).await;
        println!("keys {k1:?} and {k2:?}; detector on store {detector}");
        must_deadlock_one_and_commit_the_other(&cluster, &c, &k1, &k2).await;
        // Move every leader, the first region's included, off the detector's store.
        let body = serde_json::json!({"name": "evict-leader-scheduler", "store_id": detector});
        let resp = reqwest::Client::new()
            .post(format!(
                "http://{}/pd/api/v1/schedulers",
                cluster.pd_endpoint()
            ))
            .json(&body)
            .send()
            .await
            .expect("add evict-leader");
        assert!(resp.status().is_success(), "{:?}", resp.text().await);
        must_eventually("the first region led elsewhere", SETTLE, || async {
            let regions = cluster.regions().await?;
            match leader_store(region_for_key(&regions, b"")?) {
                Some(s) if s != detector => Ok(()),
                other => Err(format!("first region led by {other:?}")),
            }
        })
        .await;
        let (k1, k2, moved) = must_keys_on_two_stores(&cluster).await;
        println!("keys {k1:?} and {k2:?}; detector now on store {moved}");
        must_deadlock_one_and_commit_the_other(&cluster, &c, &k1, &k2).await;
        cluster.stop_all().await.expect("stop");
    })
    .await
}
