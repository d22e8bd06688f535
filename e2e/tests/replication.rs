//! Replica placement on real processes, judged through placement's PD HTTP API and the
//! official client: a fresh 3-store cluster converges to 3 voters per region, leaders spread
//! over the stores, and a store that dies is replaced (its replicas re-created elsewhere) and,
//! once back, leaves every region with exactly 3 voters again.
//!
//! Each test starts its own cluster and holds [`e2e::testing::serial`], so the binary runs one
//! cluster at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::testing::serial;
use e2e::topology::{leader_store, leader_stores};
use e2e::{must_eventually, must_raw_client, must_serve, with_deadline, Api, ClusterBuilder};
use tikv_client::RawClient;

/// Bound on waits for placement to reach a replica layout.
const CONVERGE: Duration = Duration::from_secs(40);

async fn must_put_and_get(client: &RawClient, key: &str, value: &str) {
    client
        .put(key.to_owned(), value.to_owned())
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    let got = client
        .get(key.to_owned())
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
    assert_eq!(got, Some(value.as_bytes().to_vec()), "read back {key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_stores_converge_to_three_voters_per_region() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(120), async {
        let started = Instant::now();
        let cluster = ClusterBuilder::default().stores(3).must_start().await;
        let regions = cluster.must_replicated(3, CONVERGE).await;
        let ids: BTreeSet<u64> = cluster.must_store_ids().await.into_iter().collect();
        for r in &regions {
            let on: BTreeSet<u64> = r.peers.iter().map(|p| p.store_id).collect();
            assert_eq!(on, ids, "region {} is not on every store: {r:?}", r.id);
        }
        println!(
            "CONVERGED_MS={} regions={}",
            started.elapsed().as_millis(),
            regions.len()
        );
        must_serve(&cluster, CONVERGE).await;
        for api in Api::ALL {
            let client = must_raw_client(&cluster, api).await;
            must_put_and_get(&client, "converged", &format!("{api:?}")).await;
        }
    })
    .await
}

/// Leader counts per store id, from each store's own `/status`, when they agree with placement.
async fn agreed_leader_counts(cluster: &e2e::Cluster) -> Result<BTreeMap<u64, u64>, String> {
    let regions = cluster.regions().await?;
    let mut counts = BTreeMap::new();
    for i in 0..cluster.store_count() {
        let status = cluster.store_status(i).await?;
        let by_placement = regions
            .iter()
            .filter(|r| leader_store(r) == Some(status.store_id))
            .count() as u64;
        if by_placement != status.leader_count {
            return Err(format!(
                "store {} leads {} regions, placement says {by_placement}",
                status.store_id, status.leader_count
            ));
        }
        counts.insert(status.store_id, status.leader_count);
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaders_are_balanced_over_the_stores_by_transfers() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(120), async {
        let cluster = ClusterBuilder::default().stores(3).must_start().await;
        // Right after bootstrap every region has one replica, on the bootstrap store.
        let initial = leader_stores(&cluster.regions().await.expect("regions"));
        let regions = cluster.must_replicated(3, CONVERGE).await;
        assert!(
            regions.len() >= 3,
            "leader balance needs a region per store; placement has {}",
            regions.len()
        );
        // No store fails here, so leaders reach other stores only by transfers.
        let counts = must_eventually(
            "every store to lead a region, leader counts within 1 of each other",
            CONVERGE,
            || async {
                let counts = agreed_leader_counts(&cluster).await?;
                let (min, max) = (counts.values().min(), counts.values().max());
                match (min, max) {
                    (Some(&min), Some(&max)) if min >= 1 && max - min <= 1 => Ok(counts),
                    _ => Err(format!("leaders per store: {counts:?}")),
                }
            },
        )
        .await;
        println!("leaders first on stores {initial:?}, balanced to {counts:?}");
        // Moved leaders serve: a write and a read in the regions of both API versions.
        for api in Api::ALL {
            let client = must_raw_client(&cluster, api).await;
            must_put_and_get(&client, "after-balance", "ok").await;
        }
    })
    .await
}

/// Placement config for repair tests: a store silent for 3 s is down and its replicas are
/// re-created elsewhere.
const FAST_DOWN: &str = "max-store-down-time = \"3s\"\n";

/// Waits until store `i` holds exactly the replicas placement lists on it: replicas removed
/// while it was away are gone from the store itself too.
async fn must_hold_only_listed_replicas(cluster: &e2e::Cluster, i: usize) {
    must_eventually(
        "the restarted store to hold only the replicas placement lists for it",
        CONVERGE,
        || async {
            let status = cluster.store_status(i).await?;
            let regions = cluster.regions().await?;
            let listed = regions
                .iter()
                .filter(|r| r.peers.iter().any(|p| p.store_id == status.store_id))
                .count() as u64;
            if listed == status.region_count {
                return Ok(());
            }
            let ops = e2e::pd_api::PdHttp::default()
                .operators(&cluster.pd_endpoint())
                .await?;
            let ops: Vec<String> = ops
                .iter()
                .map(|op| format!("region {} {}: {}", op.region_id, op.desc, op.brief))
                .collect();
            Err(format!(
                "store {} holds {} replicas, placement lists {listed}; running operators: {ops:?}",
                status.store_id, status.region_count
            ))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_dead_store_are_recreated_and_extras_removed_on_return() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(150), async {
        let mut cluster = ClusterBuilder::default()
            .stores(4)
            .placement_config(FAST_DOWN)
            .must_start()
            .await;
        let regions = cluster.must_replicated(3, CONVERGE).await;
        let clients = [
            must_raw_client(&cluster, Api::V1).await,
            must_raw_client(&cluster, Api::V2).await,
        ];
        for (n, c) in clients.iter().enumerate() {
            for k in 0..20 {
                must_put_and_get(c, &format!("repair/{k:02}"), &format!("{n}-{k}")).await;
            }
        }
        // The store holding the most replicas dies.
        let ids = cluster.must_store_ids().await;
        let victim = (0..ids.len())
            .max_by_key(|&i| {
                regions
                    .iter()
                    .filter(|r| r.peers.iter().any(|p| p.store_id == ids[i]))
                    .count()
            })
            .expect("stores");
        cluster.kill_store(victim).await.expect("kill -9");
        let killed_at = Instant::now();
        let repaired = cluster.must_replicated(3, CONVERGE).await;
        println!(
            "REPAIR_MS={} (store {} down, {} regions re-replicated on the others)",
            killed_at.elapsed().as_millis(),
            ids[victim],
            repaired.len()
        );
        for (n, c) in clients.iter().enumerate() {
            for k in 0..20 {
                let key = format!("repair/{k:02}");
                let got = c.get(key.clone()).await.expect("get after repair");
                assert_eq!(got, Some(format!("{n}-{k}").into_bytes()), "{key}");
            }
        }
        cluster.restart_store(victim).await.expect("restart");
        cluster.must_ready(CONVERGE).await;
        cluster.must_replicated(3, CONVERGE).await;
        must_hold_only_listed_replicas(&cluster, victim).await;
        cluster.must_replicated(3, CONVERGE).await;
        for c in &clients {
            must_put_and_get(c, "repair/after-return", "ok").await;
        }
    })
    .await
}
