//! Table tests of the cluster view as a whole: bootstrap, stores, region heartbeats, split
//! reports and the load/apply round trip.

use super::*;

fn store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        ..Default::default()
    }
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        ..Default::default()
    }
}

fn region(id: u64, start: &[u8], end: &[u8], version: u64, peers: &[(u64, u64)]) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: peers.iter().map(|&(p, s)| peer(p, s)).collect(),
        ..Default::default()
    }
}

fn apply_all(view: &mut ClusterView, writes: &[MetaWrite]) {
    for w in writes {
        view.apply(w);
    }
}

fn bootstrapped() -> ClusterView {
    let mut view = ClusterView::new(42);
    let writes = view
        .plan_bootstrap(&store(1), &region(2, b"", b"", 1, &[(3, 1)]), 3)
        .unwrap();
    apply_all(&mut view, &writes);
    view
}

#[test]
fn bootstrap_validation() {
    let view = ClusterView::new(42);
    let good = region(2, b"", b"", 1, &[(3, 1)]);
    let mut no_epoch = good.clone();
    no_epoch.region_epoch = None;
    let cases: Vec<(metapb::Store, metapb::Region, &str)> = vec![
        (store(0), good.clone(), "store id"),
        (store(1), region(0, b"", b"", 1, &[(3, 1)]), "needs an id"),
        (
            store(1),
            region(2, b"", b"", 1, &[]),
            "needs an id and peers",
        ),
        (
            store(1),
            region(2, b"a", b"", 1, &[(3, 1)]),
            "cover all keys",
        ),
        (
            store(1),
            region(2, b"", b"", 1, &[(3, 9)]),
            "must be on store",
        ),
        (store(1), no_epoch, "no epoch"),
    ];
    for (s, r, want) in cases {
        let err = view.plan_bootstrap(&s, &r, 3).unwrap_err().to_string();
        assert!(err.contains(want), "{err} should contain {want}");
    }
}

#[test]
fn bootstrap_once() {
    let view = bootstrapped();
    assert!(view.is_bootstrapped());
    assert_eq!(view.meta().unwrap().max_peer_count, 3);
    assert_eq!(view.store(1).unwrap().meta.state, 0);
    let r = view.regions().by_key(b"anything").unwrap();
    assert_eq!(r.id(), 2);
    assert_eq!(r.leader.unwrap().id, 3, "single peer is the leader");
    let again = view.plan_bootstrap(&store(1), &region(2, b"", b"", 1, &[(3, 1)]), 3);
    assert!(matches!(again, Err(Error::AlreadyBootstrapped)));
}

#[test]
fn not_bootstrapped_rejects_lookups_and_updates() {
    let mut view = ClusterView::new(1);
    assert!(matches!(view.store(1), Err(Error::NotBootstrapped)));
    assert!(matches!(
        view.plan_put_store(&store(1)),
        Err(Error::NotBootstrapped)
    ));
    let info = RegionInfo::from_meta(region(2, b"", b"", 1, &[(3, 1)]), None);
    assert!(matches!(
        view.region_heartbeat(info),
        Err(Error::NotBootstrapped)
    ));
    assert!(matches!(
        view.store_heartbeat(pdpb::StoreStats::default(), 0),
        Err(Error::NotBootstrapped)
    ));
}

#[test]
fn region_heartbeat_validation() {
    let mut view = bootstrapped();
    let mut bad_leader = RegionInfo::from_meta(region(2, b"", b"", 1, &[(3, 1)]), None);
    bad_leader.leader = Some(peer(99, 1));
    let cases = vec![
        (
            RegionInfo::from_meta(region(0, b"", b"", 1, &[(3, 1)]), None),
            "id must not be 0",
        ),
        (
            RegionInfo::from_meta(region(2, b"", b"", 1, &[]), None),
            "no peers",
        ),
        (
            RegionInfo::from_meta(region(2, b"b", b"a", 1, &[(3, 1)]), None),
            "start key",
        ),
        (bad_leader, "not a peer"),
    ];
    for (info, want) in cases {
        let err = view.region_heartbeat(info).unwrap_err().to_string();
        assert!(err.contains(want), "{err} should contain {want}");
    }
}

#[test]
fn heartbeat_persists_only_changes() {
    let mut view = bootstrapped();
    let mut info = RegionInfo::from_meta(region(2, b"", b"", 1, &[(3, 1)]), Some(peer(3, 1)));
    info.approximate_size = 1 << 20;
    assert!(view.region_heartbeat(info.clone()).unwrap().is_empty());
    assert_eq!(view.regions().get(2).unwrap().approximate_size, 1 << 20);
    // Conf change: new peer, bumped conf_ver.
    let mut meta = region(2, b"", b"", 1, &[(3, 1), (4, 2)]);
    meta.region_epoch.as_mut().unwrap().conf_ver = 2;
    let writes = view
        .region_heartbeat(RegionInfo::from_meta(meta, Some(peer(3, 1))))
        .unwrap();
    assert_eq!(writes.len(), 1);
    assert!(
        matches!(&writes[0], MetaWrite::Region(r) if r.region.as_ref().unwrap().peers.len() == 2)
    );
}

#[test]
fn split_report_routes_both_halves() {
    let mut view = bootstrapped();
    let left = region(2, b"", b"m", 2, &[(3, 1)]);
    let right = region(10, b"m", b"", 2, &[(11, 1)]);
    let writes = view.report_split(&[right.clone(), left.clone()]).unwrap();
    assert!(writes.contains(&MetaWrite::DeleteRegion(2)), "{writes:?}");
    let r = view.regions().by_key(b"x").unwrap();
    assert_eq!(r.id(), 10);
    assert_eq!(
        r.leader.unwrap().id,
        11,
        "leader guessed on parent leader's store"
    );
    assert_eq!(view.regions().by_key(b"a").unwrap().id(), 2);
    // A late heartbeat from before the split changes nothing.
    let stale = RegionInfo::from_meta(region(2, b"", b"", 1, &[(3, 1)]), Some(peer(3, 1)));
    assert!(matches!(
        view.region_heartbeat(stale),
        Err(Error::StaleRegion { .. })
    ));
    // Re-reporting the same split is harmless.
    view.report_split(&[left, right]).unwrap();
    assert_eq!(view.regions().len(), 2);
}

#[test]
fn load_round_trip() {
    let mut view = bootstrapped();
    // The writer keeps one record per region id: start from bootstrap's, then apply the split.
    let mut on_disk: BTreeMap<u64, RegionRecord> = BTreeMap::new();
    on_disk.insert(
        2,
        RegionRecord {
            region: Some(region(2, b"", b"", 1, &[(3, 1)])),
            leader: Some(peer(3, 1)),
        },
    );
    let halves = [
        region(2, b"", b"m", 2, &[(3, 1)]),
        region(10, b"m", b"", 2, &[(11, 1)]),
    ];
    for w in view.report_split(&halves).unwrap() {
        match w {
            MetaWrite::Region(r) => {
                on_disk.insert(r.region.as_ref().unwrap().id, r);
            }
            MetaWrite::DeleteRegion(id) => {
                on_disk.remove(&id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let stored = StoredMeta {
        cluster: Some(view.meta().unwrap()),
        stores: view.stores().map(|s| s.meta.clone()).collect(),
        regions: on_disk.into_values().collect(),
        gc_safe_point: 7,
        ..Default::default()
    };
    let loaded = ClusterView::load(42, &stored);
    assert!(loaded.is_bootstrapped());
    assert_eq!(loaded.safe_points().gc(), 7);
    assert_eq!(loaded.store(1).unwrap().meta.address, store(1).address);
    let ids: Vec<u64> = loaded.regions().iter().map(|r| r.id()).collect();
    assert_eq!(ids, vec![2, 10]);
    assert_eq!(loaded.regions().get(10).unwrap().leader, Some(peer(11, 1)));
}

#[test]
fn load_ignores_stale_region_records_in_any_order() {
    // An out-of-date record left on disk must not shadow the newer halves.
    let records = [
        region(10, b"m", b"", 2, &[(11, 1)]),
        region(2, b"", b"", 1, &[(3, 1)]),
        region(2, b"", b"m", 2, &[(3, 1)]),
    ];
    for order in [[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0]] {
        let mut view = bootstrapped();
        for i in order {
            view.apply(&MetaWrite::Region(RegionRecord {
                region: Some(records[i].clone()),
                leader: None,
            }));
        }
        let ids: Vec<u64> = view.regions().iter().map(|r| r.id()).collect();
        assert_eq!(ids, vec![2, 10], "order {order:?}");
    }
}

#[test]
fn keyspace_create_applies() {
    let mut view = ClusterView::new(1);
    let (meta, writes) = view.plan_create_keyspace("tenant", 100).unwrap();
    apply_all(&mut view, &writes);
    assert_eq!(view.keyspaces().by_name("tenant").unwrap().id, meta.id);
    assert!(view.plan_create_keyspace("tenant", 100).is_err());
}

#[test]
fn cluster_config_update() {
    let mut view = bootstrapped();
    let writes = view
        .plan_put_cluster(&metapb::Cluster {
            id: 42,
            max_peer_count: 5,
        })
        .unwrap();
    apply_all(&mut view, &writes);
    assert_eq!(view.meta().unwrap().max_peer_count, 5);
    assert!(view
        .plan_put_cluster(&metapb::Cluster {
            id: 7,
            max_peer_count: 5
        })
        .is_err());
}
