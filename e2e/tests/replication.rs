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
