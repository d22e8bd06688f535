//! The lock manager's shell: registration, wake-ups, timeouts, deadlocks,
//! with the detector on this store or behind a mock link.

use std::time::Duration;

use proto::deadlock::DeadlockRequest;
use proto::metapb;

use super::*;
use crate::raftstore::RegionMeta;

const FAR: Duration = Duration::from_secs(30);

fn meta(leads_first_region: bool) -> Arc<RwLock<StoreMeta>> {
    let region = RegionMeta {
        region: metapb::Region {
            id: 1,
            peers: vec![metapb::Peer {
                id: 11,
                store_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        },
        leader_id: 11,
        is_leader: leads_first_region,
        term: 1,
        pending_peers: vec![],
        down_peers: vec![],
        written: Default::default(),
        lease: Default::default(),
        progress: Default::default(),
    };
    let mut m = StoreMeta {
        store_id: 1,
        ..Default::default()
    };
    m.regions.insert(1, region);
    Arc::new(RwLock::new(m))
}

fn manager(wait_ms: u64, delay_ms: u64, leads: bool) -> LockManager {
    let cfg = PessimisticTxnConfig {
        wait_for_lock_timeout_ms: wait_ms,
        wake_up_delay_duration_ms: delay_ms,
    };
    LockManager::new(cfg, meta(leads))
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + FAR
}

fn released(keys: &[&[u8]]) -> ReleasedLocks {
    let modifies: Vec<Modify> = keys
        .iter()
        .map(|k| Modify::Delete {
            cf: CF_LOCK,
            key: lock_key(k),
        })
        .collect();
    ReleasedLocks::of(&modifies)
}

fn chain(d: &kvrpcpb::Deadlock) -> Vec<(u64, u64, Vec<u8>)> {
    d.wait_chain
        .iter()
        .map(|e| (e.txn, e.wait_for_txn, e.key.clone()))
        .collect()
}

#[test]
fn wait_timeout_follows_tikv_negative_zero_positive_and_the_cap() {
    let lm = manager(1000, 20, true);
    assert_eq!(lm.wait_timeout(-1), None);
    assert_eq!(lm.wait_timeout(0), Some(Duration::from_millis(1000)));
    assert_eq!(lm.wait_timeout(300), Some(Duration::from_millis(300)));
    assert_eq!(lm.wait_timeout(5000), Some(Duration::from_millis(1000)));
}

#[test]
fn only_lock_deletions_are_releases() {
    let modifies = vec![
        Modify::Put {
            cf: CF_LOCK,
            key: lock_key(b"a"),
            value: vec![1],
        },
        Modify::Delete {
            cf: crate::engine::CF_WRITE,
            key: b"w".to_vec(),
        },
    ];
    assert!(ReleasedLocks::of(&modifies).is_empty());
    assert!(!released(&[b"a"]).is_empty());
}

#[tokio::test]
async fn release_wakes_the_oldest_at_once_and_the_others_after_the_delay() {
    let lm = manager(30_000, 200, true);
    let young = lm.register(30, 1, b"k", true, far());
    let old = lm.register(5, 1, b"k", true, far());
    let other = lm.register(7, 2, b"o", true, far());
    let released_at = tokio::time::Instant::now();
    lm.on_released(&released(&[b"k"]));
    assert_eq!(old.wait().await, Wake::Released);
    assert_eq!(lm.waiter_count(), 2, "the younger waits for the delay");
    assert_eq!(young.wait().await, Wake::Released);
    assert!(released_at.elapsed() >= Duration::from_millis(200));
    assert_eq!(lm.waiter_count(), 1);
    drop(other);
    assert_eq!(lm.waiter_count(), 0, "a dropped wait leaves no waiter");
}

#[tokio::test]
async fn range_release_wakes_waiters_inside_the_range() {
    let lm = manager(30_000, 0, true);
    let inside = lm.register(5, 1, b"b", true, far());
    let _outside = lm.register(6, 1, b"z", true, far());
    lm.on_released(&ReleasedLocks::of(&[Modify::DeleteRange {
        cf: CF_LOCK,
        start: lock_key(b"a"),
        end: lock_key(b"c"),
    }]));
    assert_eq!(inside.wait().await, Wake::Released);
    assert_eq!(lm.waiter_count(), 1);
}

#[tokio::test]
async fn a_wait_ends_at_its_deadline_and_leaves_no_waiter() {
    let lm = manager(30_000, 20, true);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
    let w = lm.register(5, 1, b"k", true, deadline);
    assert_eq!(w.wait().await, Wake::TimedOut);
    assert!(tokio::time::Instant::now() >= deadline);
    assert_eq!(lm.waiter_count(), 0);
    // Its edge went too: the opposite wait is no deadlock.
    let w = lm.register(1, 5, b"j", true, far());
    assert_eq!(lm.waiter_count(), 1);
    drop(w);
}

#[tokio::test]
async fn opposite_waits_deadlock_and_the_error_names_the_chain() {
    let lm = manager(30_000, 20, true);
    let first = lm.register(1, 2, b"k2", true, far());
    let closing = lm.register(2, 1, b"k1", true, far());
    let Wake::Deadlock(d) = closing.wait().await else {
        panic!("expected a deadlock");
    };
    assert_eq!((d.lock_ts, d.lock_key.as_slice()), (1, b"k1".as_slice()));
    assert_eq!(d.deadlock_key_hash, key_hash(b"k2"));
    assert_eq!(
        chain(&d),
        vec![(1, 2, b"k2".to_vec()), (2, 1, b"k1".to_vec())]
    );
    assert_eq!(lm.waiter_count(), 1, "the first waiter still waits");
    // A txn's first lock request skips detection (it holds nothing yet).
    let unchecked = lm.register(2, 1, b"k1", false, far());
    assert_eq!(lm.waiter_count(), 2);
    drop(unchecked);
    drop(first);
}

/// Records what would go to the leader (a mock link, for unit tests).
#[derive(Default)]
struct MockLink(parking_lot::Mutex<Vec<DeadlockRequest>>);

impl LeaderLink for MockLink {
    fn send(&self, req: DeadlockRequest) {
        self.0.lock().push(req);
    }
}

#[tokio::test]
async fn on_a_follower_edges_go_to_the_leader_and_its_answer_wakes_the_waiter() {
    let lm = manager(30_000, 0, false);
    let link = Arc::new(MockLink::default());
    lm.detector().set_link(link.clone());
    let w = lm.register(2, 1, b"k1", true, far());
    let sent = link.0.lock().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].tp, DeadlockRequestType::Detect as i32);
    let entry = sent[0].entry.clone().expect("entry");
    assert_eq!((entry.txn, entry.wait_for_txn), (2, 1));
    lm.on_deadlock(DeadlockResponse {
        entry: Some(entry),
        deadlock_key_hash: key_hash(b"k2"),
        wait_chain: vec![WaitForEntry {
            txn: 1,
            wait_for_txn: 2,
            key: b"k2".to_vec(),
            ..Default::default()
        }],
        deadlock_key: b"k2".to_vec(),
    });
    let Wake::Deadlock(d) = w.wait().await else {
        panic!("expected a deadlock");
    };
    assert_eq!(
        chain(&d),
        vec![(1, 2, b"k2".to_vec()), (2, 1, b"k1".to_vec())]
    );
    // A released waiter withdraws its edge at the leader.
    let w = lm.register(3, 1, b"k1", true, far());
    lm.on_released(&released(&[b"k1"]));
    assert_eq!(w.wait().await, Wake::Released);
    let sent = link.0.lock().clone();
    let last = sent.last().expect("clean-up sent");
    assert_eq!(last.tp, DeadlockRequestType::CleanUpWaitFor as i32);
    assert_eq!(last.entry.as_ref().map(|e| e.txn), Some(3));
}
