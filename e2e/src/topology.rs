//! Where the data lives: which stores hold each region's replicas and leader, as placement's
//! PD HTTP API reports them, and waiting until that placement is what a test expects.
//!
//! The rules are pure functions over [`RegionInfo`] lists, unit-tested below:
//! [`check_replicated`] (every region has exactly N healthy voters on distinct live stores and a
//! live leader), [`check_tiling`] (the regions cover the key space with no gap or overlap, which
//! the clients need to find a region for every key), [`region_for_key`] (the region whose range
//! holds a key in region key space) and [`leader_stores`]. The `impl Cluster` block turns them
//! into waits on a running cluster ([`Cluster::must_replicated`]; [`Cluster::must_settled`] also
//! waits for placement to run no operator, so leaders stay put) and maps store ids, which
//! placement allocates, to harness store indexes ([`Cluster::store_ids`]).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::error::Result;
use crate::pd_api::RegionInfo;
use crate::wait::wait_for;

/// Decodes PD's upper-case hex keys; `""` is the empty key.
pub fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("odd-length hex key {text:?}"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| format!("bad hex {text:?}: {e}"))
        })
        .collect()
}

/// Whether `key` (region key space) lies in `region`'s `[start, end)`; an empty end is +inf.
pub fn region_contains(region: &RegionInfo, key: &[u8]) -> Result<bool, String> {
    let start = decode_hex(&region.start_key)?;
    let end = decode_hex(&region.end_key)?;
    Ok(start.as_slice() <= key && (end.is_empty() || key < end.as_slice()))
}

/// The region holding `key` (region key space: raw bytes for V1 raw keys, memcomparable-encoded
/// for transactional and V2 keys).
pub fn region_for_key<'a>(regions: &'a [RegionInfo], key: &[u8]) -> Result<&'a RegionInfo, String> {
    for region in regions {
        if region_contains(region, key)? {
            return Ok(region);
        }
    }
    Err(format!("no region holds key {key:?}"))
}

/// The store id of the region's leader, if placement knows one.
pub fn leader_store(region: &RegionInfo) -> Option<u64> {
    region
        .leader
        .as_ref()
        .map(|l| l.store_id)
        .filter(|&id| id != 0)
}

/// The distinct stores that lead at least one region.
pub fn leader_stores(regions: &[RegionInfo]) -> BTreeSet<u64> {
    regions.iter().filter_map(leader_store).collect()
}

/// The tiling rule: sorted by start key, the regions start at `""`, each ends where the next
/// starts, and the last ends at `""` (+inf). `Err` names the first gap or overlap.
pub fn check_tiling(regions: &[RegionInfo]) -> Result<(), String> {
    let mut ranges = Vec::with_capacity(regions.len());
    for r in regions {
        ranges.push((decode_hex(&r.start_key)?, decode_hex(&r.end_key)?, r.id));
    }
    ranges.sort();
    let mut expect_start: Vec<u8> = Vec::new();
    for (i, (start, end, id)) in ranges.iter().enumerate() {
        if *start != expect_start {
            let what = if *start > expect_start {
                "gap"
            } else {
                "overlap"
            };
            return Err(format!(
                "{what} before region {id}: previous region ends at {expect_start:?}, \
                 region {id} covers [{start:?}, {end:?})"
            ));
        }
        if end.is_empty() {
            if i + 1 != ranges.len() {
                return Err(format!(
                    "region {id} ends at +inf but is not the last region"
                ));
            }
            return Ok(());
        }
        expect_start.clone_from(end);
    }
    Err(format!(
        "no region reaches +inf; the last ends at {expect_start:?}"
    ))
}

/// What is wrong with one region against the replication rule, if anything.
fn region_problem(region: &RegionInfo, live: &[u64], replicas: usize) -> Option<String> {
    let id = region.id;
    let stores: BTreeSet<u64> = region.peers.iter().map(|p| p.store_id).collect();
    if region.peers.len() != replicas || stores.len() != replicas {
        let on: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
        return Some(format!(
            "region {id} has {} peers on stores {on:?}, want {replicas} on distinct stores",
            region.peers.len()
        ));
    }
    if let Some(p) = region.peers.iter().find(|p| p.role_name != "Voter") {
        return Some(format!(
            "region {id}: peer {} on store {} is a {}",
            p.id, p.store_id, p.role_name
        ));
    }
    if let Some(s) = stores.iter().find(|s| !live.contains(s)) {
        return Some(format!("region {id} has a peer on store {s}, not live"));
    }
    match leader_store(region) {
        None => return Some(format!("region {id} has no leader")),
        Some(s) if !live.contains(&s) => {
            return Some(format!("region {id} is led from store {s}, not live"))
        }
        Some(_) => {}
    }
    if !region.pending_peers.is_empty() || !region.down_peers.is_empty() {
        return Some(format!(
            "region {id} has pending peers {:?} / down peers {:?}",
            region.pending_peers, region.down_peers
        ));
    }
    None
}

/// The replication rule: there are regions, and every one has exactly `replicas` voters (no
/// learners) on distinct stores among `live`, a leader on a live store, and no pending or down
/// peers. `Err` says what the first region breaking it looks like.
pub fn check_replicated(
    regions: &[RegionInfo],
    live: &[u64],
    replicas: usize,
) -> Result<(), String> {
    if regions.is_empty() {
        return Err("no regions yet".to_owned());
    }
    match regions
        .iter()
        .find_map(|r| region_problem(r, live, replicas))
    {
        Some(problem) => Err(format!("{problem} ({} regions)", regions.len())),
        None => Ok(()),
    }
}

impl Cluster {
    /// Placement's regions now.
    pub async fn regions(&self) -> Result<Vec<RegionInfo>, String> {
        self.http.regions(&self.pd_endpoint()).await
    }

    /// The id placement gave each store, by harness index. Works for stopped stores too (it
    /// matches placement's store addresses), once every store has registered.
    pub async fn store_ids(&self) -> Result<Vec<u64>, String> {
        let stores = self.http.stores(&self.pd_endpoint()).await?;
        (0..self.store_count())
            .map(|i| {
                let addr = self.store_addr(i);
                stores
                    .iter()
                    .find(|s| s.address == addr)
                    .map(|s| s.id)
                    .ok_or_else(|| format!("store {addr} not registered"))
            })
            .collect()
    }

    /// The ids of the stores whose processes run.
    pub async fn live_store_ids(&self) -> Result<Vec<u64>, String> {
        let ids = self.store_ids().await?;
        Ok((0..ids.len())
            .filter(|&i| self.store_running(i))
            .map(|i| ids[i])
            .collect())
    }

    /// [`store_ids`](Self::store_ids), panicking on failure.
    pub async fn must_store_ids(&self) -> Vec<u64> {
        match self.store_ids().await {
            Ok(ids) => ids,
            Err(e) => panic!("store ids: {e}"),
        }
    }

    /// The harness index of the store placement calls `store_id`.
    pub async fn must_store_index(&self, store_id: u64) -> usize {
        let ids = self.must_store_ids().await;
        match ids.iter().position(|&id| id == store_id) {
            Some(i) => i,
            None => panic!("no store of this cluster has id {store_id} (ids {ids:?})"),
        }
    }

    /// Waits until [`check_replicated`] holds with the running stores as the live ones, and
    /// returns the regions it saw.
    pub async fn wait_replicated(
        &self,
        replicas: usize,
        timeout: Duration,
    ) -> Result<Vec<RegionInfo>> {
        let probe = || async move {
            let live = self.live_store_ids().await?;
            let regions = self.regions().await?;
            check_replicated(&regions, &live, replicas)?;
            Ok(regions)
        };
        let what = format!("every region to have {replicas} healthy voters on running stores");
        wait_for(&what, timeout, probe, || self.log_tails()).await
    }

    /// [`wait_replicated`](Self::wait_replicated), panicking with the logs on timeout.
    pub async fn must_replicated(&self, replicas: usize, timeout: Duration) -> Vec<RegionInfo> {
        match self.wait_replicated(replicas, timeout).await {
            Ok(regions) => regions,
            Err(e) => panic!("{e}"),
        }
    }

    /// Waits until every region is replicated as [`wait_replicated`](Self::wait_replicated)
    /// requires and placement runs no operator, so that leaders stay where placement says they
    /// are (nothing is being moved) when a test picks a store to break.
    pub async fn must_settled(&self, replicas: usize, timeout: Duration) -> Vec<RegionInfo> {
        let probe = || async move {
            let live = self.live_store_ids().await?;
            let regions = self.regions().await?;
            check_replicated(&regions, &live, replicas)?;
            let ops = self.http.operators(&self.pd_endpoint()).await?;
            match ops.first() {
                None => Ok(regions),
                Some(op) => Err(format!(
                    "{} operators running, e.g. {} on region {}: {}",
                    ops.len(),
                    op.desc,
                    op.region_id,
                    op.brief
                )),
            }
        };
        let what = format!("{replicas} healthy voters per region and no running operator");
        match wait_for(&what, timeout, probe, || self.log_tails()).await {
            Ok(regions) => regions,
            Err(e) => panic!("{e}"),
        }
    }

    /// Waits until placement names a leader for the region holding `key` that is not on
    /// `not_on` (a store id; 0 for any), and returns that region.
    pub async fn must_region_led(&self, key: &[u8], not_on: u64, timeout: Duration) -> RegionInfo {
        let probe = || async move {
            let regions = self.regions().await?;
            let region = region_for_key(&regions, key)?;
            match leader_store(region) {
                Some(s) if s != not_on => Ok(region.clone()),
                other => Err(format!("region {} led from {other:?}", region.id)),
            }
        };
        let what = format!("the region of {key:?} to be led from a store other than {not_on}");
        match wait_for(&what, timeout, probe, || self.log_tails()).await {
            Ok(region) => region,
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pd_api::RegionsInfo;

    const REGIONS: &str = r#"{"count":2,"regions":[
        {"id":2,"start_key":"","end_key":"6B","epoch":{"conf_ver":5,"version":2},
         "peers":[{"id":3,"store_id":1,"role_name":"Voter"},{"id":7,"store_id":4,"role_name":"Voter"},
                  {"id":9,"store_id":5,"role_name":"Voter"}],
         "leader":{"id":3,"store_id":1,"role_name":"Voter"},"down_peers":[],"pending_peers":[]},
        {"id":8,"start_key":"6B","end_key":"","epoch":{"conf_ver":3,"version":2},
         "peers":[{"id":10,"store_id":1,"role_name":"Voter"},{"id":11,"store_id":4,"role_name":"Learner"}],
         "leader":{"id":10,"store_id":1,"role_name":"Voter"},
         "down_peers":[{"peer":{"id":11,"store_id":4},"down_seconds":12}],"pending_peers":[]}]}"#;

    fn regions() -> Vec<RegionInfo> {
        let info: RegionsInfo = serde_json::from_str(REGIONS).unwrap();
        info.regions.unwrap()
    }

    #[test]
    fn hex_keys_decode_and_locate_regions() {
        assert_eq!(decode_hex("").unwrap(), b"");
        assert_eq!(decode_hex("6B00FF").unwrap(), vec![0x6B, 0, 0xFF]);
        assert!(decode_hex("6").is_err());
        let regions = regions();
        assert_eq!(region_for_key(&regions, b"a").unwrap().id, 2);
        assert_eq!(region_for_key(&regions, b"k").unwrap().id, 8);
        assert_eq!(region_for_key(&regions, b"zzz").unwrap().id, 8);
        assert_eq!(regions[0].epoch.conf_ver, 5);
    }

    #[test]
    fn replicated_needs_n_live_voters_and_no_down_peers() {
        let regions = regions();
        check_replicated(&regions[..1], &[1, 4, 5], 3).unwrap();
        let err = check_replicated(&regions[..1], &[1, 4], 3).unwrap_err();
        assert!(err.contains("store 5, not live"), "{err}");
        let err = check_replicated(&regions[..1], &[1, 4, 5], 2).unwrap_err();
        assert!(err.contains("want 2"), "{err}");
        let err = check_replicated(&regions[1..], &[1, 4], 2).unwrap_err();
        assert!(err.contains("Learner"), "{err}");
        assert!(check_replicated(&[], &[1], 1)
            .unwrap_err()
            .contains("no regions"));
    }

    #[test]
    fn tiling_finds_gaps_and_overlaps() {
        let mut regions = regions();
        check_tiling(&regions).unwrap();
        regions[1].start_key = "6C".to_owned();
        assert!(check_tiling(&regions).unwrap_err().contains("gap"));
        regions[1].start_key = "6A".to_owned();
        assert!(check_tiling(&regions).unwrap_err().contains("overlap"));
        regions[1].start_key = "6B".to_owned();
        regions[1].end_key = "70".to_owned();
        assert!(check_tiling(&regions).unwrap_err().contains("+inf"));
        assert!(check_tiling(&[]).is_err());
    }

    #[test]
    fn leaders_are_counted_per_store() {
        let mut regions = regions();
        assert_eq!(leader_stores(&regions), BTreeSet::from([1]));
        regions[1].leader = None;
        assert_eq!(leader_stores(&regions), BTreeSet::from([1]));
        let err = check_replicated(&regions[1..], &[1, 4], 2).unwrap_err();
        assert!(err.contains("Learner"), "{err}");
    }
}
