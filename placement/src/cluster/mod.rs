//! The cluster view: the pure core of placement. [`ClusterView`] holds the bootstrap state,
//! stores ([`stores`]), regions ([`regions`]), GC safe points ([`safepoint`]) and keyspaces
//! ([`keyspaces`]). No tokio, no I/O.
//!
//! Changes that must survive a restart are made in two steps: a `plan_*` method checks the
//! request against the current view and returns the [`MetaWrite`]s it implies; the driver
//! persists them and then feeds the same writes to [`ClusterView::apply`]. Startup re-applies
//! the stored records the same way, so disk and memory cannot disagree about what a record
//! means. Heartbeats, which are frequent and re-sent, are applied at once and persisted
//! behind.

pub mod keyspaces;
pub mod lifecycle;
pub mod regions;
pub mod safepoint;
pub mod stores;

use std::collections::BTreeMap;

use proto::{keyspacepb, metapb, pdpb};

use crate::error::{Error, Result};
use crate::meta::{ConfigRecord, MetaWrite, RegionRecord, StoredMeta};
pub use keyspaces::Keyspaces;
pub use regions::{RegionInfo, RegionMap, RegionUpdate, StoreCount};
pub use safepoint::{SafePoints, ServiceUpdate};
pub use stores::{Liveness, StoreInfo};

/// What the stores report, as a change to the view: applied at once by
/// [`ClusterView::observe`], its records (if any) persisted behind it (a record lost in a
/// crash is reported again by the next heartbeat).
#[derive(Debug)]
pub enum Observed {
    /// A region heartbeat: the region, its leader and statistics.
    Region(RegionInfo),
    /// The regions a store reports after a split.
    Split(Vec<metapb::Region>),
    /// A store's statistics (not persisted).
    StoreStats {
        stats: pdpb::StoreStats,
        now_ms: u64,
    },
}

/// Everything placement knows about the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    cluster_id: u64,
    /// `Some` once bootstrapped.
    meta: Option<metapb::Cluster>,
    stores: BTreeMap<u64, StoreInfo>,
    regions: RegionMap,
    safe_points: SafePoints,
    keyspaces: Keyspaces,
    /// Enabled scheduler names, `None` until first changed (the default set).
    schedulers: Option<Vec<String>>,
    /// Settings changed at runtime, over the config file's.
    config: ConfigRecord,
}

impl ClusterView {
    /// An empty, not yet bootstrapped cluster.
    pub fn new(cluster_id: u64) -> Self {
        ClusterView {
            cluster_id,
            meta: None,
            stores: BTreeMap::new(),
            regions: RegionMap::default(),
            safe_points: SafePoints::default(),
            keyspaces: Keyspaces::default(),
            schedulers: None,
            config: ConfigRecord::default(),
        }
    }

    /// Rebuilds the view from what was stored.
    pub fn load(cluster_id: u64, stored: &StoredMeta) -> Self {
        let mut view = ClusterView::new(cluster_id);
        for w in stored.cluster_writes() {
            view.apply(&w);
        }
        view
    }

    /// Applies a durable change. Region records are re-checked against newer knowledge, so a
    /// late write never rolls a region back.
    pub fn apply(&mut self, write: &MetaWrite) {
        match write {
            MetaWrite::Cluster(c) => self.meta = Some(*c),
            MetaWrite::Store(s) => {
                let entry = self.stores.entry(s.id).or_default();
                entry.meta = s.clone();
            }
            MetaWrite::Region(rec) => {
                if let Some(meta) = rec.region.clone() {
                    let mut info = RegionInfo::from_meta(meta, rec.leader);
                    if let Some(old) = self.regions.get(info.id()) {
                        info.approximate_size = old.approximate_size;
                        info.approximate_keys = old.approximate_keys;
                        info.term = old.term;
                    }
                    // Stale records are dropped: the table already knows better.
                    let _ = self.regions.upsert(info);
                }
            }
            MetaWrite::DeleteStore(id) => {
                self.stores.remove(id);
            }
            MetaWrite::Schedulers(rec) => self.schedulers = Some(rec.names.clone()),
            MetaWrite::Config(rec) => self.config = rec.clone(),
            MetaWrite::DeleteRegion(id) => {
                self.regions.remove(*id);
            }
            MetaWrite::GcSafePoint(v) => self.safe_points.set_gc(*v),
            MetaWrite::ServiceSafePoint(sp) => self.safe_points.put_service(sp.clone()),
            MetaWrite::DeleteServiceSafePoint(id) => self.safe_points.remove_service(id),
            MetaWrite::Keyspace(k) => self.keyspaces.put(k.clone()),
            MetaWrite::ClusterId(_)
            | MetaWrite::MemberId(_)
            | MetaWrite::TsoLimit(_)
            | MetaWrite::IdLimit(_) => {}
        }
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    pub fn is_bootstrapped(&self) -> bool {
        self.meta.is_some()
    }

    /// Cluster metadata; `NotBootstrapped` before bootstrap.
    pub fn meta(&self) -> Result<metapb::Cluster> {
        self.meta.ok_or(Error::NotBootstrapped)
    }

    fn ensure_bootstrapped(&self) -> Result<()> {
        self.meta.map(|_| ()).ok_or(Error::NotBootstrapped)
    }

    /// Plans bootstrap with the first store and the region covering all keys.
    pub fn plan_bootstrap(
        &self,
        store: &metapb::Store,
        region: &metapb::Region,
        max_replicas: u64,
    ) -> Result<Vec<MetaWrite>> {
        if self.is_bootstrapped() {
            return Err(Error::AlreadyBootstrapped);
        }
        let store = stores::plan_put_store(&BTreeMap::new(), store)?;
        if region.id == 0 || region.peers.is_empty() {
            return Err(Error::invalid("bootstrap region needs an id and peers"));
        }
        if !region.start_key.is_empty() || !region.end_key.is_empty() {
            return Err(Error::invalid("bootstrap region must cover all keys"));
        }
        if region.region_epoch.is_none() {
            return Err(Error::invalid("bootstrap region has no epoch"));
        }
        if region
            .peers
            .iter()
            .any(|p| p.store_id != store.id || p.id == 0)
        {
            return Err(Error::invalid(format!(
                "bootstrap region peers must be on store {}",
                store.id
            )));
        }
        // With a single voter its only peer is the leader; otherwise wait for a heartbeat.
        let leader = (region.peers.len() == 1).then(|| region.peers[0]);
        let cluster = metapb::Cluster {
            id: self.cluster_id,
            max_peer_count: max_replicas.min(u32::MAX as u64) as u32,
        };
        Ok(vec![
            MetaWrite::Store(store),
            MetaWrite::Region(RegionRecord {
                region: Some(region.clone()),
                leader,
            }),
            MetaWrite::Cluster(cluster),
        ])
    }

    /// Plans `PutClusterConfig`; only `max_peer_count` may change.
    pub fn plan_put_cluster(&self, cluster: &metapb::Cluster) -> Result<Vec<MetaWrite>> {
        let mut meta = self.meta()?;
        if cluster.id != 0 && cluster.id != self.cluster_id {
            return Err(Error::invalid(format!(
                "cluster id {} does not match {}",
                cluster.id, self.cluster_id
            )));
        }
        if cluster.max_peer_count == 0 {
            return Err(Error::invalid("max_peer_count must be at least 1"));
        }
        meta.max_peer_count = cluster.max_peer_count;
        Ok(vec![MetaWrite::Cluster(meta)])
    }

    // ---- stores ----

    pub fn plan_put_store(&self, store: &metapb::Store) -> Result<Vec<MetaWrite>> {
        self.ensure_bootstrapped()?;
        Ok(vec![MetaWrite::Store(stores::plan_put_store(
            &self.stores,
            store,
        )?)])
    }

    pub fn store(&self, id: u64) -> Result<&StoreInfo> {
        self.ensure_bootstrapped()?;
        self.stores.get(&id).ok_or(Error::StoreNotFound(id))
    }

    /// Every store, tombstones included, by id.
    pub fn stores(&self) -> impl Iterator<Item = &StoreInfo> {
        self.stores.values()
    }

    /// Applies what a store reported; returns the records to persist behind it.
    pub fn observe(&mut self, change: Observed) -> Result<Vec<MetaWrite>> {
        match change {
            Observed::Region(info) => self.region_heartbeat(info),
            Observed::Split(regions) => self.report_split(&regions),
            Observed::StoreStats { stats, now_ms } => {
                self.store_heartbeat(stats, now_ms).map(|()| Vec::new())
            }
        }
    }

    /// Applied immediately; store statistics are not persisted.
    pub fn store_heartbeat(&mut self, stats: pdpb::StoreStats, now_ms: u64) -> Result<()> {
        self.ensure_bootstrapped()?;
        stores::heartbeat(&mut self.stores, stats, now_ms)
    }

    /// Plans draining a store ([`lifecycle::plan_offline`]).
    pub fn plan_store_offline(
        &self,
        id: u64,
        force: bool,
        max_replicas: usize,
        is_up: impl Fn(&StoreInfo) -> bool,
    ) -> Result<Vec<MetaWrite>> {
        self.ensure_bootstrapped()?;
        lifecycle::plan_offline(&self.stores, id, force, max_replicas, is_up)
    }

    /// Plans canceling a drain ([`lifecycle::plan_up`]).
    pub fn plan_store_up(&self, id: u64) -> Result<Vec<MetaWrite>> {
        self.ensure_bootstrapped()?;
        lifecycle::plan_up(&self.stores, id)
    }

    /// Offline stores left without replicas, as tombstone writes.
    pub fn plan_tombstones(&self) -> Vec<MetaWrite> {
        lifecycle::plan_tombstones(&self.stores, &self.regions)
    }

    /// Deletes for every tombstone.
    pub fn plan_remove_tombstones(&self) -> Result<Vec<MetaWrite>> {
        self.ensure_bootstrapped()?;
        Ok(lifecycle::plan_remove_tombstones(&self.stores))
    }

    // ---- schedulers ----

    /// Enabled scheduler names; `None` means the default set.
    pub fn scheduler_names(&self) -> Option<&[String]> {
        self.schedulers.as_deref()
    }

    /// Settings changed at runtime (`POST /pd/api/v1/config`).
    pub fn config_override(&self) -> &ConfigRecord {
        &self.config
    }

    // ---- regions ----

    pub fn regions(&self) -> &RegionMap {
        &self.regions
    }

    /// Applies a region heartbeat at once and returns what to persist behind it.
    pub fn region_heartbeat(&mut self, info: RegionInfo) -> Result<Vec<MetaWrite>> {
        self.ensure_bootstrapped()?;
        validate_region(&info.meta)?;
        if let Some(leader) = &info.leader {
            if !info.meta.peers.iter().any(|p| p.id == leader.id) {
                return Err(Error::invalid(format!(
                    "leader peer {} is not a peer of region {}",
                    leader.id, info.meta.id
                )));
            }
        }
        let record = RegionRecord {
            region: Some(info.meta.clone()),
            leader: info.leader,
        };
        let update = self.regions.upsert(info)?;
        let mut writes: Vec<MetaWrite> = update
            .removed
            .into_iter()
            .map(MetaWrite::DeleteRegion)
            .collect();
        if update.changed {
            writes.push(MetaWrite::Region(record));
        }
        Ok(writes)
    }

    /// Applies the regions a store reports after a split. The leader of each new region is
    /// guessed to sit on the parent leader's store (where TiKV campaigns first); heartbeats
    /// correct it. Stale reports are skipped.
    pub fn report_split(&mut self, regions: &[metapb::Region]) -> Result<Vec<MetaWrite>> {
        self.ensure_bootstrapped()?;
        for r in regions {
            validate_region(r)?;
        }
        let leader_store = regions
            .iter()
            .filter_map(|r| self.regions.get(r.id))
            .find_map(|r| r.leader.map(|l| l.store_id));
        let mut writes = Vec::new();
        for r in regions {
            let leader = self
                .regions
                .get(r.id)
                .and_then(|old| old.leader)
                .filter(|l| r.peers.iter().any(|p| p.id == l.id))
                .or_else(|| {
                    let store = leader_store?;
                    r.peers.iter().find(|p| p.store_id == store).copied()
                });
            let info = RegionInfo::from_meta(r.clone(), leader);
            match self.region_heartbeat(info) {
                Ok(w) => writes.extend(w),
                Err(Error::StaleRegion { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(writes)
    }

    // ---- GC ----

    pub fn safe_points(&self) -> &SafePoints {
        &self.safe_points
    }

    // ---- keyspaces ----

    pub fn keyspaces(&self) -> &Keyspaces {
        &self.keyspaces
    }

    pub fn plan_create_keyspace(
        &self,
        name: &str,
        now_secs: i64,
    ) -> Result<(keyspacepb::KeyspaceMeta, Vec<MetaWrite>)> {
        let meta = self.keyspaces.plan_create(name, now_secs)?;
        Ok((meta.clone(), vec![MetaWrite::Keyspace(meta)]))
    }
}

/// Basic shape checks every reported region must pass.
fn validate_region(r: &metapb::Region) -> Result<()> {
    if r.id == 0 {
        return Err(Error::invalid("region id must not be 0"));
    }
    if r.peers.is_empty() {
        return Err(Error::invalid(format!("region {} has no peers", r.id)));
    }
    if r.region_epoch.is_none() {
        return Err(Error::invalid(format!("region {} has no epoch", r.id)));
    }
    if !r.end_key.is_empty() && r.start_key >= r.end_key {
        return Err(Error::invalid(format!(
            "region {} has start key >= end key",
            r.id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
