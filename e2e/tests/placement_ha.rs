//! Placement high availability with real processes: three placement members (a raft group)
//! and three stores, driven by the official client given every member's endpoint.
//!
//! SIGKILL of the placement leader while clients take timestamps and write: another member
//! leads within seconds (`PLACEMENT_FAILOVER_MS=<n>`), every timestamp the client got across
//! the failover is strictly larger than the one before, the writes go on (the longest pause is
//! printed as `PLACEMENT_PAUSE_MS=<n>`), and every acknowledged write reads back. The killed
//! member restarts, rejoins as a follower and is reported healthy.

use std::time::{Duration, Instant};

use e2e::testing::serial;
use e2e::{
    longest_gap_after, must_eventually, must_raw_client, must_txn_client, with_deadline, Api,
    ClusterBuilder, WriteLoad,
};
use tikv_client::TimestampExt;

/// Bound on the election of a new placement leader.
const ELECTION: Duration = Duration::from_secs(15);
/// Bound on the pause clients see.
const MAX_PAUSE: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_placement_leader_under_load() {
    with_deadline(Duration::from_secs(300), kill_leader_under_load()).await;
}

async fn kill_leader_under_load() {
    let _serial = serial().await;
    e2e::init_test_tracing();
    let mut cluster = ClusterBuilder::default()
        .placements(3)
        .stores(3)
        .must_start()
        .await;
    let txn = must_txn_client(&cluster, Api::V2).await;
    let raw = must_raw_client(&cluster, Api::V2).await;

    // Timestamps taken without pause, in one task, across the failover.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ts_task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut got: Vec<(Instant, u64)> = Vec::new();
            let mut errors = 0usize;
            let deadline = Instant::now() + Duration::from_secs(90);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                match tokio::time::timeout(Duration::from_secs(30), txn.current_timestamp()).await {
                    Ok(Ok(ts)) => got.push((Instant::now(), ts.version())),
                    _ => {
                        errors += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (got, errors)
        })
    };
    let load = WriteLoad {
        writers: 2,
        max_duration: Duration::from_secs(80),
        prefix: "pdha".into(),
        ..WriteLoad::default()
    }
    .start(raw);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let leader = cluster
        .placement_leader()
        .await
        .expect("a placement leader");
    let killed_at = Instant::now();
    cluster.kill_placement_member(leader).await.unwrap();
    let new_leader = must_eventually("another placement member leads", ELECTION, || async {
        match cluster.placement_leader().await {
            Ok(l) if l != leader => Ok(l),
            Ok(l) => Err(format!("members still name {l}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let failover = killed_at.elapsed();
    println!("PLACEMENT_FAILOVER_MS={}", failover.as_millis());
    assert_ne!(new_leader, leader);

    load.wait_acked_since(Instant::now(), 20, MAX_PAUSE)
        .await
        .unwrap_or_else(|e| panic!("writes did not resume: {e}\n{}", cluster.log_tails()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = load.stop().await;
    let (stamps, ts_errors) = ts_task.await.unwrap();

    // Timestamps strictly increase over everything the client got, across the failover.
    for w in stamps.windows(2) {
        assert!(
            w[1].1 > w[0].1,
            "TSO went backwards: {} then {} ({} timestamps, {ts_errors} errors)",
            w[0].1,
            w[1].1,
            stamps.len()
        );
    }
    let after = stamps.iter().filter(|(t, _)| *t > killed_at).count();
    assert!(
        after > 0,
        "no timestamp after the failover ({ts_errors} errors)"
    );

    let times = report.ack_times();
    let pause = longest_gap_after(&times, killed_at).expect("writes after the failover");
    println!("PLACEMENT_PAUSE_MS={}", pause.as_millis());
    assert!(pause < MAX_PAUSE, "clients paused {pause:?}");

    // Every acknowledged write reads back.
    let check = must_raw_client(&cluster, Api::V2).await;
    for ack in &report.acks {
        let got = check.get(ack.key.clone()).await.unwrap();
        assert_eq!(got.as_deref(), Some(ack.value.as_bytes()), "{}", ack.key);
    }

    // The killed member comes back as a follower and is healthy again.
    cluster.restart_placement_member(leader).await.unwrap();
    let pd = cluster.pd_endpoint();
    let http = reqwest::Client::new();
    must_eventually("all three members healthy", ELECTION, || async {
        let health: serde_json::Value = http
            .get(format!("http://{pd}/pd/api/v1/health"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let healthy = health
            .as_array()
            .map(|a| a.iter().filter(|m| m["health"] == true).count())
            .unwrap_or(0);
        if healthy == 3 {
            Ok(())
        } else {
            Err(format!("{health}"))
        }
    })
    .await;
    assert_eq!(
        cluster.placement_leader().await.unwrap(),
        new_leader,
        "the returning member does not take over"
    );
    cluster.stop_all().await.unwrap();
}
