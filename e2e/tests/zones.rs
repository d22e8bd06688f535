//! Topology-aware placement on real processes: six stores in three zones (two hosts each),
//! placement with `location-labels = ["zone", "host"]`, judged through placement's PD HTTP API.
//!
//! - Every region ends with one replica per zone, and the fault-tolerance report says one zone
//!   can be lost.
//! - A whole zone stops: after `max-store-down-time` (3 s here) every region is repaired on the
//!   remaining stores with no two replicas on one host, and the report drops to no zone; when
//!   the zone returns, replicas move back so that each zone holds one again and the report
//!   recovers.
//! - A drained store reaches Tombstone with no replica left, and no region ever had fewer than
//!   three healthy voters meanwhile (five other stores could hold them).
//! - Evict-leader empties a store of leaders within a bound, and leaders are balanced within a
//!   stated bound once it is removed.
//! - A replica move inside a zone, held in its joint state (placement's `hold-joint` hook),
//!   survives the loss of that zone: the region keeps serving (each of its two voter sets keeps
//!   a majority), the report still says one zone may be lost, and once released the move
//!   finishes and the region is repaired. A move by "add a voter, then remove the old one"
//!   would have had four voters, two in the lost zone, and no quorum. Held joint, a region
//!   whose leader's store dies elects a leader with a majority of both voter sets, and that
//!   leader leaves the joint state once released.
//!
//! The tests hold [`e2e::testing::serial`]: one cluster of this size at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::pd_api::{PdHttp, RegionInfo};
use e2e::testing::serial;
use e2e::topology::{decode_hex, leader_store};
use e2e::{must_eventually, must_raw_client, with_deadline, Api, Cluster, ClusterBuilder};

/// Bound on every wait for placement to reach a layout.
const CONVERGE: Duration = Duration::from_secs(60);
/// Bound on evict-leader emptying a store.
const EVICT_BOUND: Duration = Duration::from_secs(30);

const PLACEMENT: &str = "location-labels = [\"zone\", \"host\"]\nmax-store-down-time = \"3s\"\n";
/// Small regions, so the data written makes a dozen or more regions to place.
const STORE: &str =
    "[raftstore]\nregion-max-size = 98304\nregion-max-keys = 1000000\nsplit-check-interval-ms = 500\n";

fn zone_of(i: usize) -> usize {
    i % 3 + 1
}

async fn six_stores_three_zones() -> Cluster {
    six_stores_three_zones_with(PLACEMENT).await
}

async fn six_stores_three_zones_with(placement: &str) -> Cluster {
    let mut b = ClusterBuilder::default()
        .stores(6)
        .placement_config(placement)
        .store_config(STORE);
    for i in 0..6 {
        b = b.store_labels(i, format!("zone=zone-{},host=host-{}", zone_of(i), i + 1));
    }
    b.must_start().await
}

/// Store id → (zone, host) from placement's view of the stores.
async fn locations(cluster: &Cluster) -> BTreeMap<u64, (String, String)> {
    let stores = PdHttp::default()
        .store_infos(&cluster.pd_endpoint())
        .await
        .expect("stores");
    stores
        .into_iter()
        .map(|s| {
            let get = |k: &str| {
                s.store
                    .labels
                    .iter()
                    .find(|l| l.key == k)
                    .map(|l| l.value.clone())
                    .unwrap_or_default()
            };
            (s.store.id, (get("zone"), get("host")))
        })
        .collect()
}

/// The stores holding the region's voters.
fn voter_stores(r: &RegionInfo) -> Vec<u64> {
    r.peers
        .iter()
        .filter(|p| p.role_name != "Learner")
        .map(|p| p.store_id)
        .collect()
}

/// The distinct domains (`pick` chooses zone or host) of `stores`.
fn domains<'a>(
    stores: &[u64],
    loc: &'a BTreeMap<u64, (String, String)>,
    pick: impl Fn(&'a (String, String)) -> &'a String,
) -> BTreeSet<&'a str> {
    stores
        .iter()
        .filter_map(|s| loc.get(s).map(|l| pick(l).as_str()))
        .collect()
}

/// `Ok` when every region has one voter per zone among `zones`.
fn one_per_zone(
    regions: &[RegionInfo],
    loc: &BTreeMap<u64, (String, String)>,
    zones: usize,
) -> Result<(), String> {
    for r in regions {
        let voters = voter_stores(r);
        let z = domains(&voters, loc, |l| &l.0);
        if voters.len() != 3 || z.len() != zones.min(3) {
            return Err(format!(
                "region {} voters {voters:?} span zones {z:?}",
                r.id
            ));
        }
    }
    Ok(())
}

/// `Ok` when every region has three voters on three distinct hosts among `live`.
fn distinct_hosts(
    regions: &[RegionInfo],
    loc: &BTreeMap<u64, (String, String)>,
    live: &BTreeSet<u64>,
) -> Result<(), String> {
    for r in regions {
        let voters = voter_stores(r);
        let hosts = domains(&voters, loc, |l| &l.1);
        if voters.len() != 3 || hosts.len() != 3 || !voters.iter().all(|s| live.contains(s)) {
            return Err(format!(
                "region {} voters {voters:?} on hosts {hosts:?}",
                r.id
            ));
        }
    }
    Ok(())
}

/// How many domains of `level` the fault-tolerance report says can be lost.
async fn tolerable(cluster: &Cluster, level: &str) -> Result<u64, String> {
    let body = PdHttp::default()
        .send(
            reqwest::Method::GET,
            &format!("http://{}/pd/api/v1/fault-tolerance", cluster.pd_endpoint()),
        )
        .await?;
    let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    v["levels"]
        .as_array()
        .and_then(|levels| levels.iter().find(|l| l["level"] == level))
        .and_then(|l| l["tolerable_failures"].as_u64())
        .ok_or_else(|| format!("no {level} level in {v}"))
}

/// Writes enough data for the small regions to split into a dozen or more.
async fn fill(cluster: &Cluster) {
    let client = must_raw_client(cluster, Api::V2).await;
    let value = vec![b'x'; 1024];
    for batch in 0..20 {
        let pairs: Vec<(String, Vec<u8>)> = (0..50)
            .map(|k| (format!("zones/{batch:03}/{k:03}"), value.clone()))
            .collect();
        client.batch_put(pairs).await.expect("batch put");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_zone_is_repaired_with_host_isolation_and_replicas_return_when_it_does() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(400), async {
        let mut cluster = six_stores_three_zones().await;
        fill(&cluster).await;
        let loc = locations(&cluster).await;
        let regions = must_eventually("one replica per zone", CONVERGE, || async {
            let regions = cluster
                .wait_replicated(3, Duration::from_secs(1))
                .await
                .map_err(|e| e.to_string())?;
            one_per_zone(&regions, &loc, 3)?;
            Ok(regions)
        })
        .await;
        println!("ZONES regions={} one replica per zone", regions.len());
        assert_eq!(tolerable(&cluster, "zone").await.unwrap(), 1);

        // Zone 3 (stores 2 and 5) stops.
        let lost_at = Instant::now();
        for i in [2, 5] {
            cluster.kill_store(i).await.unwrap();
        }
        let ids = cluster.must_store_ids().await;
        let live: BTreeSet<u64> = [0, 1, 3, 4].iter().map(|&i| ids[i]).collect();
        must_eventually(
            "repair on the remaining zones, one replica per host",
            CONVERGE,
            || async {
                let regions = cluster.regions().await?;
                distinct_hosts(&regions, &loc, &live)
            },
        )
        .await;
        println!("ZONE_REPAIR_MS={}", lost_at.elapsed().as_millis());
        let zone_ft = tolerable(&cluster, "zone").await.unwrap();
        assert_eq!(
            zone_ft, 0,
            "with two zones left some zone holds two replicas"
        );
        assert_eq!(tolerable(&cluster, "host").await.unwrap(), 1);

        // The zone returns: replicas move back until each zone holds one again.
        for i in [2, 5] {
            cluster.restart_store(i).await.unwrap();
        }
        let back = Instant::now();
        must_eventually("one replica per zone again", CONVERGE, || async {
            let regions = cluster.regions().await?;
            one_per_zone(&regions, &loc, 3)
        })
        .await;
        must_eventually("the report recovers", CONVERGE, || async {
            match tolerable(&cluster, "zone").await? {
                1 => Ok(()),
                n => Err(format!("zone tolerance {n}")),
            }
        })
        .await;
        println!("ZONE_RETURN_MS={}", back.elapsed().as_millis());
        cluster.stop_all().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_store_becomes_tombstone_without_under_replication() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(300), async {
        let mut cluster = six_stores_three_zones().await;
        fill(&cluster).await;
        let loc = locations(&cluster).await;
        must_eventually("one replica per zone", CONVERGE, || async {
            let regions = cluster.regions().await?;
            one_per_zone(&regions, &loc, 3)
        })
        .await;
        let ids = cluster.must_store_ids().await;
        let victim = ids[0];
        let http = PdHttp::default();
        http.send(
            reqwest::Method::DELETE,
            &format!("http://{}/pd/api/v1/store/{victim}", cluster.pd_endpoint()),
        )
        .await
        .expect("drain");
        let started = Instant::now();
        let mut checks = 0usize;
        loop {
            let regions = cluster.regions().await.expect("regions");
            for r in &regions {
                let voters = voter_stores(r).len();
                assert!(
                    voters >= 3,
                    "region {} under-replicated during the drain: {r:?}",
                    r.id
                );
            }
            checks += 1;
            let stores = http
                .all_store_infos(&cluster.pd_endpoint())
                .await
                .expect("stores");
            let state = stores
                .iter()
                .find(|s| s.store.id == victim)
                .map(|s| s.store.state_name.clone())
                .unwrap_or_default();
            if state == "Tombstone" {
                assert!(
                    regions
                        .iter()
                        .all(|r| r.peers.iter().all(|p| p.store_id != victim)),
                    "a tombstone still holds replicas"
                );
                break;
            }
            assert!(
                started.elapsed() < CONVERGE,
                "store {victim} still {state} after {CONVERGE:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!(
            "DRAIN_MS={} checks={checks} (never under-replicated)",
            started.elapsed().as_millis()
        );
        // Zones still hold one replica each: store 0's zone has store 3 left.
        must_eventually("one replica per zone after the drain", CONVERGE, || async {
            let regions = cluster.regions().await?;
            one_per_zone(&regions, &loc, 3)
        })
        .await;
        cluster.stop_all().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evict_leader_empties_a_store_and_leaders_balance_after() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(300), async {
        let mut cluster = six_stores_three_zones().await;
        fill(&cluster).await;
        let regions = cluster.must_replicated(3, CONVERGE).await;
        let ids = cluster.must_store_ids().await;
        let http = PdHttp::default();
        // The store leading the most regions.
        let count =
            |rs: &[RegionInfo], s: u64| rs.iter().filter(|r| leader_store(r) == Some(s)).count();
        let victim = *ids.iter().max_by_key(|&&s| count(&regions, s)).unwrap();
        let body = serde_json::json!({"name": "evict-leader-scheduler", "store_id": victim});
        let resp = reqwest::Client::new()
            .post(format!(
                "http://{}/pd/api/v1/schedulers",
                cluster.pd_endpoint()
            ))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        let started = Instant::now();
        must_eventually("the store leads nothing", EVICT_BOUND, || async {
            let regions = cluster.regions().await?;
            match count(&regions, victim) {
                0 => Ok(()),
                n => Err(format!("store {victim} still leads {n}")),
            }
        })
        .await;
        println!("EVICT_LEADER_MS={}", started.elapsed().as_millis());
        // Removing the scheduler lets leaders spread again: with R regions over 6 stores, no
        // store leads more than ceil(R/6) + 1 and every store leads at least one when R >= 6.
        http.send(
            reqwest::Method::DELETE,
            &format!(
                "http://{}/pd/api/v1/schedulers/evict-leader-scheduler-{victim}",
                cluster.pd_endpoint()
            ),
        )
        .await
        .expect("remove scheduler");
        let counts = must_eventually("leaders balanced within the bound", CONVERGE, || async {
            let regions = cluster.regions().await?;
            let n = regions.len();
            let bound = n.div_ceil(6) + 1;
            let counts: BTreeMap<u64, usize> =
                ids.iter().map(|&s| (s, count(&regions, s))).collect();
            let max = counts.values().copied().max().unwrap_or(0);
            let min = counts.values().copied().min().unwrap_or(0);
            if max <= bound && (n < 6 || min >= 1) {
                Ok((n, counts))
            } else {
                Err(format!(
                    "{n} regions, leaders per store {counts:?}, bound {bound}"
                ))
            }
        })
        .await;
        println!(
            "LEADER_BALANCE regions={} per store {:?}",
            counts.0, counts.1
        );
        cluster.stop_all().await.unwrap();
    })
    .await
}

/// The API V2 raw key prefix (keyspace 0) the fill keys are stored under.
const V2_RAW: &[u8] = b"r\0\0\0";

/// Role names of the region's peers by store.
fn roles(r: &RegionInfo) -> BTreeMap<u64, String> {
    r.peers
        .iter()
        .map(|p| (p.store_id, p.role_name.clone()))
        .collect()
}

async fn pd_post(cluster: &Cluster, path: &str, body: serde_json::Value) -> Result<String, String> {
    let url = format!("http://{}{path}", cluster.pd_endpoint());
    PdHttp::default().post_json(&url, &body).await
}

/// A move held in its joint state: the region whose range starts inside the fill keys.
struct HeldMove {
    region_id: u64,
    /// A key inside the region (its start key).
    key: Vec<u8>,
    /// The stores of the demoting and the incoming voter.
    from: u64,
    to: u64,
}

/// Six stores in three zones, placement holding joint states; the zone-3 replica of a region
/// holding fill keys is moved to the other zone-3 store by `transfer-peer` and held joint.
async fn a_held_move() -> (Cluster, BTreeMap<u64, (String, String)>, HeldMove) {
    let placement = format!("{PLACEMENT}\n[debug]\nfault-injection = true\n");
    let cluster = six_stores_three_zones_with(&placement).await;
    fill(&cluster).await;
    let loc = locations(&cluster).await;
    let ids = cluster.must_store_ids().await;
    // Zone 3 is stores 2 and 5 (harness indexes).
    let zone3 = [ids[2], ids[5]];
    must_eventually("one replica per zone", CONVERGE, || async {
        let regions = cluster
            .wait_replicated(3, Duration::from_secs(1))
            .await
            .map_err(|e| e.to_string())?;
        one_per_zone(&regions, &loc, 3)
    })
    .await;

    // A region holding fill keys; its zone-3 replica moves to the other zone-3 store.
    pd_post(&cluster, "/debug/hold-joint", serde_json::json!({}))
        .await
        .expect("hold joint states");
    let (region_id, key, from, to) = must_eventually("a move started", CONVERGE, || async {
        let regions = cluster.regions().await?;
        one_per_zone(&regions, &loc, 3)?;
        let r = regions
            .iter()
            .find(|r| decode_hex(&r.start_key).is_ok_and(|k| k.starts_with(V2_RAW) && k.len() > 4))
            .ok_or("no region starts inside the fill keys")?;
        let key = decode_hex(&r.start_key)?[V2_RAW.len()..].to_vec();
        let from = *voter_stores(r)
            .iter()
            .find(|s| zone3.contains(s))
            .ok_or("no zone-3 voter")?;
        let to = if from == zone3[0] { zone3[1] } else { zone3[0] };
        let body = serde_json::json!({
            "name": "transfer-peer",
            "region_id": r.id,
            "from_store_id": from,
            "to_store_id": to,
        });
        pd_post(&cluster, "/pd/api/v1/operators", body).await?;
        Ok((r.id, key, from, to))
    })
    .await;
    println!("JOINT region={region_id} moves store {from} -> {to} inside zone 3");
    must_eventually("the region held in its joint state", CONVERGE, || async {
        let regions = cluster.regions().await?;
        let r = regions
            .iter()
            .find(|r| r.id == region_id)
            .ok_or("region gone")?;
        let roles = roles(r);
        match (roles.get(&to), roles.get(&from)) {
            (Some(a), Some(b)) if a == "IncomingVoter" && b == "DemotingVoter" => Ok(()),
            _ => Err(format!("roles {roles:?}")),
        }
    })
    .await;
    assert_eq!(
        tolerable(&cluster, "zone").await.unwrap(),
        1,
        "each voter set of the joint region spans the three zones"
    );

    (
        cluster,
        loc,
        HeldMove {
            region_id,
            key,
            from,
            to,
        },
    )
}

/// Placement sends joint leave commands again.
async fn release_joint_states(cluster: &Cluster) {
    let release = format!("http://{}/debug/hold-joint", cluster.pd_endpoint());
    PdHttp::default()
        .send(reqwest::Method::DELETE, &release)
        .await
        .expect("release joint states");
}

/// `Ok` when `region_id` has three voters, none joint, none learner, none off `live`.
fn settled_on(regions: &[RegionInfo], region_id: u64, live: &BTreeSet<u64>) -> Result<(), String> {
    let r = regions
        .iter()
        .find(|r| r.id == region_id)
        .ok_or("region gone")?;
    let all_voters = r.peers.iter().all(|p| p.role_name == "Voter");
    let on_live = r.peers.iter().all(|p| live.contains(&p.store_id));
    if r.peers.len() == 3 && all_voters && on_live {
        Ok(())
    } else {
        Err(format!("region {region_id} roles {:?}", roles(r)))
    }
}

/// Who leads `region_id`: placement's view and the live stores' own (their `/status`).
async fn who_leads(cluster: &Cluster, region_id: u64) -> String {
    let placement = match cluster.regions().await {
        Ok(regions) => format!(
            "{:?}",
            regions
                .iter()
                .find(|r| r.id == region_id)
                .map(|r| (leader_store(r), roles(r)))
        ),
        Err(e) => e,
    };
    let mut stores = Vec::new();
    for i in 0..cluster.store_count() {
        if let Ok(status) = cluster.store_status(i).await {
            if status.leader_regions.contains(&region_id) {
                stores.push(status.store_id);
            }
        }
    }
    format!("placement says (leader, roles) {placement}; stores leading it: {stores:?}")
}

/// Writes `value` at `key` and reads it back, through a raw client.
async fn put_and_get(
    client: &tikv_client::RawClient,
    key: &[u8],
    value: &[u8],
) -> Result<(), String> {
    client
        .put(key.to_vec(), value.to_vec())
        .await
        .map_err(|e| format!("put: {e:?}"))?;
    match client
        .get(key.to_vec())
        .await
        .map_err(|e| format!("get: {e:?}"))?
    {
        Some(v) if v == value => Ok(()),
        other => Err(format!("read back {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_inside_a_zone_held_in_its_joint_state_survives_losing_the_zone() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(400), async {
        let (mut cluster, loc, held) = a_held_move().await;
        let HeldMove {
            region_id,
            ref key,
            to,
            ..
        } = held;
        let ids = cluster.must_store_ids().await;
        // Zone 3 stops with both the old and the new replica of the region.
        let lost_at = Instant::now();
        for i in [2, 5] {
            cluster.kill_store(i).await.unwrap();
        }
        let client = must_raw_client(&cluster, Api::V2).await;
        must_eventually(
            "the joint region serves a write and a read",
            CONVERGE,
            || put_and_get(&client, key, b"after-the-zone"),
        )
        .await;
        println!("JOINT_SERVING_MS={}", lost_at.elapsed().as_millis());
        let regions = cluster.regions().await.unwrap();
        let r = regions.iter().find(|r| r.id == region_id).expect("region");
        assert_eq!(
            roles(r).get(&to).map(String::as_str),
            Some("IncomingVoter"),
            "still joint"
        );

        // Released, the move finishes and every region is repaired on the live stores.
        release_joint_states(&cluster).await;
        let live: BTreeSet<u64> = [0, 1, 3, 4].iter().map(|&i| ids[i]).collect();
        must_eventually(
            "repair on the remaining zones, one replica per host, no joint state",
            CONVERGE,
            || async {
                let regions = cluster.regions().await?;
                distinct_hosts(&regions, &loc, &live)?;
                match regions
                    .iter()
                    .find(|r| r.peers.iter().any(|p| p.role_name != "Voter"))
                {
                    Some(r) => Err(format!("region {} roles {:?}", r.id, roles(r))),
                    None => Ok(()),
                }
            },
        )
        .await;
        println!("JOINT_REPAIR_MS={}", lost_at.elapsed().as_millis());
        settled_on(&cluster.regions().await.unwrap(), region_id, &live).unwrap();
        match client.get(key.clone()).await {
            Ok(Some(v)) => assert_eq!(v, b"after-the-zone"),
            other => panic!("the write made while joint is gone: {other:?}"),
        }
        cluster.stop_all().await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joint_state_whose_leader_dies_is_left_by_the_next_leader() {
    e2e::init_test_tracing();
    let _serial = serial().await;
    with_deadline(Duration::from_secs(400), async {
        let (mut cluster, _, held) = a_held_move().await;
        let HeldMove {
            region_id,
            ref key,
            from,
            to,
        } = held;
        let ids = cluster.must_store_ids().await;
        let regions = cluster.regions().await.unwrap();
        let r = regions.iter().find(|r| r.id == region_id).expect("region");
        let leader = leader_store(r).expect("a leader");
        assert!(
            leader != from && leader != to,
            "the move took the leadership off the zone"
        );
        // The leader's store dies while the region is joint: the others (one old voter, the
        // demoting and the incoming one) elect a leader with a majority of both sets.
        let killed_at = Instant::now();
        let dead = cluster.must_store_index(leader).await;
        cluster.kill_store(dead).await.unwrap();
        // A fresh client per attempt: tikv-client 0.4 caches the leader placement named when it
        // first asked, and when connecting to that (dead) store fails it returns the error
        // without dropping the cached leader, so one client would keep dialing the dead store.
        must_eventually(
            "the joint region serves under a new leader",
            CONVERGE,
            || async {
                let client = must_raw_client(&cluster, Api::V2).await;
                match put_and_get(&client, key, b"new-leader").await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(format!("{e}; {}", who_leads(&cluster, region_id).await)),
                }
            },
        )
        .await;
        println!("JOINT_NEW_LEADER_MS={}", killed_at.elapsed().as_millis());
        // Released, the new leader leaves the joint state, the demoted learner goes and the
        // dead store's voter is replaced.
        release_joint_states(&cluster).await;
        let live: BTreeSet<u64> = ids.iter().copied().filter(|s| *s != leader).collect();
        must_eventually(
            "the move finished and the region repaired",
            CONVERGE,
            || async {
                let regions = cluster.regions().await?;
                settled_on(&regions, region_id, &live)?;
                let r = regions
                    .iter()
                    .find(|r| r.id == region_id)
                    .ok_or("region gone")?;
                match roles(r).contains_key(&from) {
                    true => Err(format!("the demoted peer on store {from} is still there")),
                    false => Ok(()),
                }
            },
        )
        .await;
        println!("JOINT_LEFT_MS={}", killed_at.elapsed().as_millis());
        let client = must_raw_client(&cluster, Api::V2).await;
        match client.get(key.clone()).await {
            Ok(Some(v)) => assert_eq!(v, b"new-leader"),
            other => panic!("the write made under the new leader is gone: {other:?}"),
        }
        cluster.stop_all().await.unwrap();
    })
    .await
}
