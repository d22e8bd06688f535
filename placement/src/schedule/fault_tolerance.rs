//! The fault tolerance report behind `GET /pd/api/v1/fault-tolerance`: for each location level
//! (each of `location-labels`, outermost first, then `store`), how many failure domains of
//! that level the cluster can lose at once without any region losing the majority of its
//! voters, computed from where the replicas actually are.
//!
//! A region with `n` voters survives losing at most `(n - 1) / 2` of them. At one level its
//! voters group into domains; the worst loss of `k` domains takes the `k` holding the most of
//! its voters, so the region tolerates the largest `k` whose top-`k` domain counts sum to at
//! most `(n - 1) / 2`. The cluster tolerates the minimum over regions; the regions reaching
//! that minimum are the limiting ones. A store without a label counts in the domain `""`
//! (conservatively, all unlabeled stores fail together). A region in a joint state counts by
//! its worse configuration (incoming or outgoing voters). Pure: [`report`].

use std::collections::BTreeMap;

use proto::metapb::PeerRole;
use serde::Serialize;

use crate::cluster::ClusterView;

/// At most this many limiting region ids are listed per level.
pub const MAX_LISTED: usize = 20;

/// One level of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LevelReport {
    /// The label key, or `"store"`.
    pub level: String,
    /// Distinct domains of this level among the stores that are not tombstones.
    pub domains: usize,
    /// How many domains can be lost at once with every region keeping a voter majority
    /// (`domains` when there are no regions).
    pub tolerable_failures: usize,
    /// How many regions tolerate no more than `tolerable_failures`.
    pub limiting_region_count: usize,
    /// The first [`MAX_LISTED`] of them, by region id.
    pub limiting_regions: Vec<u64>,
}

/// How many of its domains a region with these voters-per-domain counts can lose.
pub fn region_tolerance(mut counts: Vec<usize>) -> usize {
    let n: usize = counts.iter().sum();
    let can_lose = n.saturating_sub(1) / 2;
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut lost = 0;
    counts
        .iter()
        .take_while(|c| {
            lost += **c;
            lost <= can_lose
        })
        .count()
}

/// The report for every level of `labels` plus `store`.
pub fn report(view: &ClusterView, labels: &[String]) -> Vec<LevelReport> {
    let mut levels: Vec<Option<&str>> = labels.iter().map(|l| Some(l.as_str())).collect();
    levels.push(None);
    levels
        .into_iter()
        .map(|level| level_report(view, level))
        .collect()
}

fn level_report(view: &ClusterView, level: Option<&str>) -> LevelReport {
    let domain_of: BTreeMap<u64, String> = view
        .stores()
        .filter(|s| !s.is_tombstone())
        .map(|s| {
            let d = match level {
                Some(key) => super::context::label(s, key).to_ascii_lowercase(),
                None => s.meta.id.to_string(),
            };
            (s.meta.id, d)
        })
        .collect();
    let mut domains: Vec<&String> = domain_of.values().collect();
    domains.sort();
    domains.dedup();
    let mut per_region: Vec<(u64, usize)> = view
        .regions()
        .iter()
        .map(|r| {
            let tolerance = |in_config: fn(PeerRole) -> bool| {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for p in r.meta.peers.iter().filter(|p| in_config(p.role())) {
                    // A voter on a forgotten store is already lost: its own domain.
                    let d = domain_of.get(&p.store_id).map_or("?", |d| d.as_str());
                    *counts.entry(d).or_default() += 1;
                }
                region_tolerance(counts.into_values().collect())
            };
            // A region in a joint state needs a majority of both voter sets: it tolerates what
            // its worse configuration does (outside a joint state both are the voters).
            let incoming = tolerance(|r| matches!(r, PeerRole::Voter | PeerRole::IncomingVoter));
            let outgoing = tolerance(|r| matches!(r, PeerRole::Voter | PeerRole::DemotingVoter));
            (r.id(), incoming.min(outgoing))
        })
        .collect();
    per_region.sort_unstable();
    let tolerable = per_region
        .iter()
        .map(|(_, k)| *k)
        .min()
        .unwrap_or(domains.len());
    let limiting: Vec<u64> = per_region
        .iter()
        .filter(|(_, k)| *k == tolerable)
        .map(|(id, _)| *id)
        .collect();
    LevelReport {
        level: level.unwrap_or("store").to_owned(),
        domains: domains.len(),
        tolerable_failures: tolerable,
        limiting_region_count: limiting.len(),
        limiting_regions: limiting.into_iter().take(MAX_LISTED).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{store_meta, voter, Fixture};
    use super::*;
    use crate::cluster::RegionInfo;
    use proto::metapb;

    #[test]
    fn region_tolerance_table() {
        // (voters per domain, tolerable domain losses)
        let rows: Vec<(Vec<usize>, usize)> = vec![
            (vec![1, 1, 1], 1),
            (vec![2, 1], 0),
            (vec![1, 1, 1, 1, 1], 2),
            (vec![2, 2, 1], 1),
            (vec![3], 0),
            (vec![1], 0),
            (vec![1, 1], 0),
            (vec![], 0),
        ];
        for (counts, want) in rows {
            assert_eq!(region_tolerance(counts.clone()), want, "{counts:?}");
        }
    }

    fn put_region(f: &mut Fixture, id: u64, stores: &[u64]) {
        let peers: Vec<metapb::Peer> = stores.iter().map(|s| voter(id * 10 + s, *s)).collect();
        put_peers(f, id, peers);
    }

    fn put_peers(f: &mut Fixture, id: u64, peers: Vec<metapb::Peer>) {
        let meta = metapb::Region {
            id,
            start_key: format!("r{id:03}").into_bytes(),
            end_key: format!("r{id:03}~").into_bytes(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 5,
                version: 5,
            }),
            peers: peers.clone(),
            ..Default::default()
        };
        f.report(&RegionInfo::from_meta(meta, peers.first().copied()));
    }

    #[test]
    fn cluster_report() {
        // 6 stores: zone-1 {1,2}, zone-2 {3,4}, zone-3 {5,6}, one host each.
        let stores: Vec<metapb::Store> = (1..=6)
            .map(|id| {
                let zone = format!("z{}", (id - 1) / 2 + 1);
                store_meta(id, &[("zone", &zone), ("host", &format!("h{id}"))])
            })
            .collect();
        let mut f = Fixture::with_stores(&stores);
        put_region(&mut f, 1, &[1, 3, 5]); // replaces the bootstrap region's single voter
        put_region(&mut f, 2, &[2, 4, 6]);
        put_region(&mut f, 3, &[1, 2, 3]); // two voters in zone z1
        let got = report(&f.view, &f.settings.location_labels);
        let summary: Vec<(&str, usize, usize, Vec<u64>)> = got
            .iter()
            .map(|l| {
                let ids = l.limiting_regions.clone();
                (l.level.as_str(), l.domains, l.tolerable_failures, ids)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("zone", 3, 0, vec![3]),
                ("host", 6, 1, vec![1, 2, 3]),
                ("store", 6, 1, vec![1, 2, 3]),
            ]
        );
    }

    fn zoned_fixture() -> Fixture {
        // 6 stores: zone-1 {1,2}, zone-2 {3,4}, zone-3 {5,6}, one host each.
        let stores: Vec<metapb::Store> = (1..=6)
            .map(|id| {
                let zone = format!("z{}", (id - 1) / 2 + 1);
                store_meta(id, &[("zone", &zone), ("host", &format!("h{id}"))])
            })
            .collect();
        Fixture::with_stores(&stores)
    }

    fn zone_tolerance(f: &Fixture) -> (usize, Vec<u64>) {
        let got = report(&f.view, &f.settings.location_labels);
        (got[0].tolerable_failures, got[0].limiting_regions.clone())
    }

    #[test]
    fn a_joint_region_counts_by_its_worse_configuration() {
        let role = |id: u64, store: u64, role: metapb::PeerRole| metapb::Peer {
            role: role as i32,
            ..voter(id, store)
        };
        let mut f = zoned_fixture();
        put_region(&mut f, 1, &[1, 3, 5]);
        // Moving zone 3's replica from store 5 to store 6: old {1,3,5}, new {1,3,6}. Each set
        // spans the three zones, so losing zone 3 leaves both a majority; four plain voters
        // with two in zone 3 would tolerate nothing.
        let joint = vec![
            voter(21, 1),
            voter(23, 3),
            role(25, 5, metapb::PeerRole::DemotingVoter),
            role(26, 6, metapb::PeerRole::IncomingVoter),
        ];
        put_peers(&mut f, 2, joint);
        assert_eq!(zone_tolerance(&f), (1, vec![1, 2]));
        let four = vec![voter(21, 1), voter(23, 3), voter(25, 5), voter(26, 6)];
        put_peers(&mut f, 2, four);
        assert_eq!(zone_tolerance(&f), (0, vec![2]));
        // Incoming {1,2,3} has two voters in zone 1: the outgoing set alone would hide it.
        let bad_incoming = vec![
            voter(31, 1),
            voter(33, 3),
            role(35, 5, metapb::PeerRole::DemotingVoter),
            role(32, 2, metapb::PeerRole::IncomingVoter),
        ];
        put_peers(&mut f, 2, vec![voter(21, 1), voter(23, 3), voter(25, 5)]);
        put_peers(&mut f, 3, bad_incoming);
        assert_eq!(zone_tolerance(&f), (0, vec![3]));
    }
}
