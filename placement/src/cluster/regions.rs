//! The region table: [`RegionMap`] holds every known [`RegionInfo`] by id and, for routing, by
//! start key in a `BTreeMap`.
//!
//! Updates follow PD's rules. A report whose epoch is older than what is known for the same
//! region (lower `version` or `conf_ver`, or a lower raft term) is stale and ignored, and so is
//! one that overlaps a region with a newer `version`. A newer report removes every region it
//! overlaps: after a split the left half keeps the id and shrinks, the right halves arrive with
//! new ids, and merges make the target grow over the source's range.
//!
//! Each region also remembers since when each of its peers has been reported pending without
//! a break ([`RegionInfo::pending_since`]), so that schedulers can tell a peer catching up
//! from one stuck for good.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use proto::{metapb, pdpb};

use crate::error::{Error, Result};

/// What placement knows about one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegionInfo {
    pub meta: metapb::Region,
    pub leader: Option<metapb::Peer>,
    /// Bytes, as reported by the leader.
    pub approximate_size: u64,
    pub approximate_keys: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub keys_written: u64,
    pub keys_read: u64,
    pub term: u64,
    pub down_peers: Vec<pdpb::PeerStats>,
    pub pending_peers: Vec<metapb::Peer>,
    /// For each peer in `pending_peers`: Unix milliseconds of the first report in the run
    /// of reports that all named it pending. A peer missing here counts as pending since now.
    pub pending_since: BTreeMap<u64, u64>,
}

impl RegionInfo {
    /// A region known only from metadata (bootstrap, split report, disk).
    pub fn from_meta(meta: metapb::Region, leader: Option<metapb::Peer>) -> Self {
        RegionInfo {
            meta,
            leader,
            ..RegionInfo::default()
        }
    }

    /// Builds the info carried by a region heartbeat received at `now_ms` (Unix ms).
    pub fn from_heartbeat(hb: &pdpb::RegionHeartbeatRequest, now_ms: u64) -> Option<Self> {
        Some(RegionInfo {
            meta: hb.region.clone()?,
            leader: hb.leader,
            approximate_size: hb.approximate_size,
            approximate_keys: hb.approximate_keys,
            bytes_written: hb.bytes_written,
            bytes_read: hb.bytes_read,
            keys_written: hb.keys_written,
            keys_read: hb.keys_read,
            term: hb.term,
            down_peers: hb.down_peers.clone(),
            pending_peers: hb.pending_peers.clone(),
            pending_since: hb.pending_peers.iter().map(|p| (p.id, now_ms)).collect(),
        })
    }

    /// Keeps, for the peers still pending, the earlier start of their pending run that
    /// `previous` (the last report) knew of; forgets peers no longer pending.
    fn carry_pending_since(&mut self, previous: &RegionInfo) {
        let pending = &self.pending_peers;
        self.pending_since
            .retain(|id, _| pending.iter().any(|p| p.id == *id));
        for p in pending {
            if let Some(&before) = previous.pending_since.get(&p.id) {
                let since = self.pending_since.entry(p.id).or_insert(before);
                *since = (*since).min(before);
            }
        }
    }

    /// Since when `peer_id` has been reported pending, if it is.
    pub fn pending_since(&self, peer_id: u64) -> Option<u64> {
        self.pending_peers
            .iter()
            .any(|p| p.id == peer_id)
            .then(|| self.pending_since.get(&peer_id).copied())
            .flatten()
    }

    pub fn id(&self) -> u64 {
        self.meta.id
    }

    pub fn epoch(&self) -> metapb::RegionEpoch {
        self.meta.region_epoch.unwrap_or_default()
    }

    /// Whether `key` lies in `[start_key, end_key)`.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.meta.start_key.as_slice()
            && (self.meta.end_key.is_empty() || key < self.meta.end_key.as_slice())
    }

    /// The region's size as schedulers weigh it: whole MiB of `approximate_size`, at least 1
    /// (PD's empty-region size), so that a cluster whose regions have not reported a size
    /// yet balances by count.
    pub fn size_mib(&self) -> u64 {
        (self.approximate_size >> 20).max(1)
    }
}

/// How an accepted update changed the table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionUpdate {
    /// Region metadata (range, epoch, peers) or leader differ from before: persist it.
    pub changed: bool,
    /// Regions removed because the update covers their range.
    pub removed: Vec<u64>,
}

/// Regions led by and peers held by one store, kept current on every update so that
/// schedulers read them without scanning the table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCount {
    pub leaders: u64,
    pub peers: u64,
    /// Sum of [`RegionInfo::size_mib`] over the regions with a peer on the store.
    pub region_size: u64,
}

/// Every known region, by id and by start key.
#[derive(Debug, Clone, Default)]
pub struct RegionMap {
    by_id: HashMap<u64, RegionInfo>,
    by_start: BTreeMap<Vec<u8>, u64>,
    by_store: HashMap<u64, StoreCount>,
}

fn epoch_str(e: &metapb::RegionEpoch) -> String {
    format!("{{conf_ver: {}, version: {}}}", e.conf_ver, e.version)
}

impl RegionMap {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: u64) -> Option<&RegionInfo> {
        self.by_id.get(&id)
    }

    /// The region whose range holds `key`.
    pub fn by_key(&self, key: &[u8]) -> Option<&RegionInfo> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        self.by_id.get(id).filter(|r| r.contains(key))
    }

    /// The region that ends where the region holding `key` starts.
    pub fn prev_of(&self, key: &[u8]) -> Option<&RegionInfo> {
        let current = self.by_key(key)?;
        if current.meta.start_key.is_empty() {
            return None;
        }
        let start = current.meta.start_key.as_slice();
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()?;
        self.by_id.get(id).filter(|r| r.meta.end_key == start)
    }

    /// Regions in key order overlapping `[start, end)` (`end` empty = +inf), beginning with the
    /// one holding `start`; at most `limit` of them when `limit > 0`.
    pub fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<&RegionInfo> {
        let first = self.by_key(start).map(|r| r.meta.start_key.clone());
        let from = first.unwrap_or_else(|| start.to_vec());
        let mut out = Vec::new();
        for (key, id) in self.by_start.range(from..) {
            if !end.is_empty() && key.as_slice() >= end {
                break;
            }
            if limit > 0 && out.len() >= limit {
                break;
            }
            if let Some(r) = self.by_id.get(id) {
                out.push(r);
            }
        }
        out
    }

    /// Regions overlapping any of `ranges` (sorted, non-overlapping `(start, end)` pairs, end
    /// empty = +inf), de-duplicated in key order, at most `limit` in total (0 = no limit).
    /// With `contain_all`, a hole in the scanned ranges is an error.
    pub fn batch_scan(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        limit: usize,
        contain_all: bool,
    ) -> Result<Vec<&RegionInfo>> {
        for (i, (start, end)) in ranges.iter().enumerate() {
            if !end.is_empty() && start >= end {
                return Err(Error::invalid(format!(
                    "key range {i} is empty or inverted"
                )));
            }
            if let Some((next_start, _)) = ranges.get(i + 1) {
                if end.is_empty() || end > next_start {
                    return Err(Error::invalid("key ranges must be sorted and not overlap"));
                }
            }
        }
        let mut out: Vec<&RegionInfo> = Vec::new();
        for (start, end) in ranges {
            let found = self.scan(start, end, 0);
            if contain_all {
                check_coverage(&found, start, end)?;
            }
            for r in found {
                if out.last().is_some_and(|last| last.id() == r.id()) {
                    continue;
                }
                if limit > 0 && out.len() >= limit {
                    return Ok(out);
                }
                out.push(r);
            }
        }
        Ok(out)
    }

    /// All regions in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RegionInfo> {
        self.by_start.values().filter_map(|id| self.by_id.get(id))
    }

    /// Ids of other regions whose range intersects `region`'s.
    fn overlaps(&self, region: &metapb::Region) -> Vec<u64> {
        let start = region.start_key.as_slice();
        let end = region.end_key.as_slice();
        let mut out = Vec::new();
        // A region starting before `start` may still reach into it.
        if let Some(r) = self.by_key(start) {
            out.push(r.id());
        }
        for (key, id) in self
            .by_start
            .range::<[u8], _>((Bound::Excluded(start), Bound::Unbounded))
        {
            if !end.is_empty() && key.as_slice() >= end {
                break;
            }
            out.push(*id);
        }
        out.retain(|id| *id != region.id);
        out.dedup();
        out
    }

    /// Checks `info` against what is known without changing anything.
    pub fn check(&self, info: &RegionInfo) -> Result<()> {
        let new = info.epoch();
        let stale = |known: &metapb::RegionEpoch| Error::StaleRegion {
            region_id: info.id(),
            reported: epoch_str(&new),
            known: epoch_str(known),
        };
        for id in self.overlaps(&info.meta) {
            let known = self.by_id[&id].epoch();
            if new.version < known.version {
                return Err(stale(&known));
            }
        }
        if let Some(origin) = self.by_id.get(&info.id()) {
            let known = origin.epoch();
            let term_behind = info.term > 0 && info.term < origin.term;
            if term_behind || new.version < known.version || new.conf_ver < known.conf_ver {
                return Err(stale(&known));
            }
        }
        Ok(())
    }

    /// Inserts or refreshes a region after [`RegionMap::check`]; overlapped regions go.
    pub fn upsert(&mut self, mut info: RegionInfo) -> Result<RegionUpdate> {
        self.check(&info)?;
        if let Some(old) = self.by_id.get(&info.id()) {
            info.carry_pending_since(old);
        }
        let removed = self.overlaps(&info.meta);
        for id in &removed {
            self.remove(*id);
        }
        let changed = match self.by_id.get(&info.id()) {
            None => true,
            Some(old) => old.meta != info.meta || old.leader != info.leader,
        };
        self.remove(info.id());
        self.count(&info, true);
        self.by_start.insert(info.meta.start_key.clone(), info.id());
        self.by_id.insert(info.id(), info);
        Ok(RegionUpdate { changed, removed })
    }

    /// Forgets a region.
    pub fn remove(&mut self, id: u64) -> Option<RegionInfo> {
        let old = self.by_id.remove(&id)?;
        if self.by_start.get(&old.meta.start_key) == Some(&id) {
            self.by_start.remove(&old.meta.start_key);
        }
        self.count(&old, false);
        Some(old)
    }

    /// Adds `r` to (or takes it from) the per-store counts.
    fn count(&mut self, r: &RegionInfo, add: bool) {
        let bump = |n: &mut u64, by: u64| {
            *n = if add {
                n.saturating_add(by)
            } else {
                n.saturating_sub(by)
            }
        };
        let size = r.size_mib();
        for p in &r.meta.peers {
            let c = self.by_store.entry(p.store_id).or_default();
            bump(&mut c.peers, 1);
            bump(&mut c.region_size, size);
        }
        if let Some(l) = &r.leader {
            bump(&mut self.by_store.entry(l.store_id).or_default().leaders, 1);
        }
    }

    /// Leaders and peers on `store_id`.
    pub fn store_count(&self, store_id: u64) -> StoreCount {
        self.by_store.get(&store_id).copied().unwrap_or_default()
    }

    /// Leaders and peers per store, for every store holding a peer or leader.
    pub fn counts_by_store(&self) -> HashMap<u64, StoreCount> {
        self.by_store
            .iter()
            .filter(|(_, c)| **c != StoreCount::default())
            .map(|(id, c)| (*id, *c))
            .collect()
    }
}

/// Checks that `found` (in key order) covers `[start, end)` without a gap.
fn check_coverage(found: &[&RegionInfo], start: &[u8], end: &[u8]) -> Result<()> {
    let hole = |key: &[u8]| Error::RegionsNotContainAllKeyRange(format!("{key:?}"));
    let mut covered = start.to_vec();
    for r in found {
        if r.meta.start_key.as_slice() > covered.as_slice() {
            return Err(hole(&covered));
        }
        if r.meta.end_key.is_empty() {
            return Ok(());
        }
        covered = r.meta.end_key.clone();
        if !end.is_empty() && covered.as_slice() >= end {
            return Ok(());
        }
    }
    Err(hole(&covered))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &str, end: &str, conf_ver: u64, version: u64) -> RegionInfo {
        let peer = metapb::Peer {
            id: id * 10,
            store_id: 1,
            ..Default::default()
        };
        RegionInfo::from_meta(
            metapb::Region {
                id,
                start_key: start.as_bytes().to_vec(),
                end_key: end.as_bytes().to_vec(),
                region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
                peers: vec![peer],
                ..Default::default()
            },
            Some(peer),
        )
    }

    fn ids(map: &RegionMap) -> Vec<u64> {
        map.iter().map(|r| r.id()).collect()
    }

    #[test]
    fn routes_keys_to_regions() {
        let mut m = RegionMap::default();
        m.upsert(region(1, "", "b", 1, 2)).unwrap();
        m.upsert(region(2, "b", "d", 1, 2)).unwrap();
        m.upsert(region(3, "d", "", 1, 2)).unwrap();
        let cases: &[(&str, u64)] = &[("", 1), ("a", 1), ("b", 2), ("c", 2), ("d", 3), ("zz", 3)];
        for (key, want) in cases {
            assert_eq!(m.by_key(key.as_bytes()).unwrap().id(), *want, "key {key}");
        }
        assert!(m.prev_of(b"a").is_none());
        assert_eq!(m.prev_of(b"c").unwrap().id(), 1);
        assert_eq!(m.prev_of(b"e").unwrap().id(), 2);
    }

    #[test]
    fn gap_is_not_routed() {
        let mut m = RegionMap::default();
        m.upsert(region(1, "", "b", 1, 1)).unwrap();
        m.upsert(region(3, "d", "", 1, 1)).unwrap();
        assert!(m.by_key(b"c").is_none());
        assert!(m.prev_of(b"e").is_none(), "previous region does not touch");
    }

    #[test]
    fn scan_respects_start_end_and_limit() {
        let mut m = RegionMap::default();
        for (id, s, e) in [(1, "", "b"), (2, "b", "d"), (3, "d", "f"), (4, "f", "")] {
            m.upsert(region(id, s, e, 1, 1)).unwrap();
        }
        let scan = |s: &str, e: &str, l| -> Vec<u64> {
            m.scan(s.as_bytes(), e.as_bytes(), l)
                .iter()
                .map(|r| r.id())
                .collect()
        };
        assert_eq!(scan("", "", 0), vec![1, 2, 3, 4]);
        assert_eq!(scan("c", "", 0), vec![2, 3, 4]);
        assert_eq!(scan("c", "e", 0), vec![2, 3]);
        assert_eq!(scan("c", "d", 0), vec![2]);
        assert_eq!(scan("a", "", 2), vec![1, 2]);
    }

    #[test]
    fn stale_epochs_are_ignored() {
        let mut m = RegionMap::default();
        m.upsert(region(1, "", "", 2, 5)).unwrap();
        // (conf_ver, version) pairs older in either component are stale.
        for (conf_ver, version) in [(1, 5), (2, 4), (1, 1)] {
            let err = m.upsert(region(1, "", "", conf_ver, version)).unwrap_err();
            assert!(matches!(err, Error::StaleRegion { region_id: 1, .. }));
        }
        assert_eq!(m.get(1).unwrap().epoch().version, 5);
        // Same epoch refreshes, a newer one replaces.
        assert!(!m.upsert(region(1, "", "", 2, 5)).unwrap().changed);
        assert!(m.upsert(region(1, "", "", 3, 5)).unwrap().changed);
    }

    #[test]
    fn stale_term_is_ignored() {
        let mut m = RegionMap::default();
        let mut r = region(1, "", "", 1, 1);
        r.term = 5;
        m.upsert(r.clone()).unwrap();
        r.term = 4;
        assert!(m.upsert(r).is_err());
    }

    #[test]
    fn split_replaces_parent_range() {
        let mut m = RegionMap::default();
        m.upsert(region(1, "", "", 1, 1)).unwrap();
        // The right half arrives first, with a new id and a bumped version.
        let up = m.upsert(region(2, "m", "", 1, 2)).unwrap();
        assert_eq!(up.removed, vec![1], "old full-range region 1 overlaps");
        assert!(m.by_key(b"a").is_none());
        // The left half (old id) then reports its shrunken range.
        m.upsert(region(1, "", "m", 1, 2)).unwrap();
        assert_eq!(ids(&m), vec![1, 2]);
        assert_eq!(m.by_key(b"a").unwrap().id(), 1);
        assert_eq!(m.by_key(b"x").unwrap().id(), 2);
        // A late heartbeat of the pre-split parent is stale against both halves.
        assert!(m.upsert(region(1, "", "", 1, 1)).is_err());
        assert_eq!(ids(&m), vec![1, 2]);
    }

    #[test]
    fn left_half_first_keeps_right_routing_after_report() {
        let mut m = RegionMap::default();
        m.upsert(region(1, "", "", 1, 1)).unwrap();
        m.upsert(region(1, "", "m", 1, 2)).unwrap();
        assert!(
            m.by_key(b"x").is_none(),
            "hole until the right half reports"
        );
        m.upsert(region(2, "m", "", 1, 2)).unwrap();
        assert_eq!(ids(&m), vec![1, 2]);
    }

    #[test]
    fn merge_removes_source() {
        let mut m = RegionMap::default();
        m.upsert(region(1, "", "m", 1, 2)).unwrap();
        m.upsert(region(2, "m", "", 1, 2)).unwrap();
        let up = m.upsert(region(2, "", "", 1, 3)).unwrap();
        assert_eq!(up.removed, vec![1]);
        assert_eq!(ids(&m), vec![2]);
        assert_eq!(m.by_key(b"a").unwrap().id(), 2);
    }

    #[test]
    fn leader_change_counts_as_change() {
        let mut m = RegionMap::default();
        let mut r = region(1, "", "", 1, 1);
        m.upsert(r.clone()).unwrap();
        r.leader = None;
        assert!(m.upsert(r).unwrap().changed);
        let counts = m.counts_by_store();
        assert_eq!(
            counts[&1],
            StoreCount {
                leaders: 0,
                peers: 1,
                region_size: 1,
            }
        );
    }

    #[test]
    fn store_sizes_follow_reported_sizes() {
        let mut m = RegionMap::default();
        let mut r = region(1, "", "m", 1, 1);
        // No size reported yet: the region weighs 1 MiB.
        m.upsert(r.clone()).unwrap();
        assert_eq!(m.store_count(1).region_size, 1);
        r.approximate_size = 96 << 20;
        m.upsert(r.clone()).unwrap();
        assert_eq!(m.store_count(1).region_size, 96);
        // Under a MiB still weighs 1.
        let mut small = region(2, "m", "", 1, 1);
        small.approximate_size = 1000;
        m.upsert(small).unwrap();
        assert_eq!(m.store_count(1).region_size, 97);
        m.remove(1);
        assert_eq!(m.store_count(1).region_size, 1);
        m.remove(2);
        assert!(m.counts_by_store().is_empty());
    }

    #[test]
    fn store_counts_follow_updates() {
        let mut m = RegionMap::default();
        let with_peers = |id, start: &str, end: &str, version, stores: &[u64]| {
            let mut r = region(id, start, end, 1, version);
            r.meta.peers = stores
                .iter()
                .map(|s| metapb::Peer {
                    id: id * 10 + s,
                    store_id: *s,
                    ..Default::default()
                })
                .collect();
            r.leader = r.meta.peers.first().copied();
            r
        };
        let count = |m: &RegionMap, s| {
            let c = m.store_count(s);
            (c.leaders, c.peers)
        };
        m.upsert(with_peers(1, "", "m", 1, &[1, 2])).unwrap();
        assert_eq!((count(&m, 1), count(&m, 2)), ((1, 1), (0, 1)));
        // A conf change moves the peer from store 2 to store 3 and the leader to store 3.
        let mut moved = with_peers(1, "", "m", 1, &[1, 3]);
        moved.leader = moved.meta.peers.get(1).copied();
        m.upsert(moved).unwrap();
        assert_eq!(
            (count(&m, 1), count(&m, 2), count(&m, 3)),
            ((0, 1), (0, 0), (1, 1))
        );
        // A new region adds counts; a merge over both removes the overlapped one.
        m.upsert(with_peers(2, "m", "", 1, &[1])).unwrap();
        assert_eq!(count(&m, 1), (1, 2));
        m.upsert(with_peers(2, "", "", 3, &[1])).unwrap();
        assert_eq!((count(&m, 1), count(&m, 3)), ((1, 1), (0, 0)));
        m.remove(2);
        assert!(m.counts_by_store().is_empty());
    }

    #[test]
    fn pending_peers_keep_the_start_of_their_pending_run() {
        let mut m = RegionMap::default();
        let two = |r: &mut RegionInfo| {
            r.meta.peers.push(metapb::Peer {
                id: 20,
                store_id: 2,
                ..Default::default()
            });
        };
        let report = |pending: &[u64], at: u64| {
            let mut r = region(1, "", "", 1, 1);
            two(&mut r);
            r.pending_peers = (r.meta.peers.iter())
                .filter(|p| pending.contains(&p.id))
                .copied()
                .collect();
            r.pending_since = pending.iter().map(|id| (*id, at)).collect();
            r
        };
        m.upsert(report(&[20], 1_000)).unwrap();
        m.upsert(report(&[20], 5_000)).unwrap();
        assert_eq!(m.get(1).unwrap().pending_since(20), Some(1_000));
        assert_eq!(m.get(1).unwrap().pending_since(10), None);
        // A report without it ends the run; the next one starts a new run.
        m.upsert(report(&[], 6_000)).unwrap();
        assert_eq!(m.get(1).unwrap().pending_since(20), None);
        m.upsert(report(&[20], 7_000)).unwrap();
        assert_eq!(m.get(1).unwrap().pending_since(20), Some(7_000));
        // A peer named pending without a start carries the known one.
        let mut bare = report(&[20], 0);
        bare.pending_since.clear();
        m.upsert(bare).unwrap();
        assert_eq!(m.get(1).unwrap().pending_since(20), Some(7_000));
    }

    #[test]
    fn batch_scan_dedups_limits_and_checks_coverage() {
        let mut m = RegionMap::default();
        for (id, s, e) in [(1, "", "b"), (2, "b", "d"), (4, "f", "")] {
            m.upsert(region(id, s, e, 1, 1)).unwrap();
        }
        let r = |s: &str, e: &str| (s.as_bytes().to_vec(), e.as_bytes().to_vec());
        let got = |ranges: &[(Vec<u8>, Vec<u8>)], limit, all| -> Result<Vec<u64>> {
            Ok(m.batch_scan(ranges, limit, all)?
                .iter()
                .map(|x| x.id())
                .collect())
        };
        assert_eq!(
            got(&[r("a", "ba"), r("bb", "c")], 0, false).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            got(&[r("a", "c"), r("g", "")], 0, false).unwrap(),
            vec![1, 2, 4]
        );
        assert_eq!(
            got(&[r("a", "c"), r("g", "")], 2, false).unwrap(),
            vec![1, 2]
        );
        assert_eq!(got(&[r("a", "c")], 0, true).unwrap(), vec![1, 2]);
        assert!(matches!(
            got(&[r("c", "g")], 0, true),
            Err(Error::RegionsNotContainAllKeyRange(_))
        ));
        assert_eq!(got(&[r("c", "g")], 0, false).unwrap(), vec![2, 4]);
        assert!(got(&[r("c", "a")], 0, false).is_err(), "inverted");
        assert!(
            got(&[r("a", "c"), r("b", "d")], 0, false).is_err(),
            "overlapping"
        );
    }
}
