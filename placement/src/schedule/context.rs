//! What the checkers see: [`Settings`] (the scheduling part of the config) and [`Context`], the
//! cluster view at one instant with each store's liveness, labels and counts, plus the
//! location scoring the replica checker ranks stores by ([`Context::distinct_score`]), the
//! `isolation-level` constraint ([`Context::isolated`]) and the size-based region score
//! region balance compares stores by ([`Context::region_score`]), and which stores are too
//! full for new replicas ([`Context::is_low_space`], PD's `low-space-ratio`).
//!
//! A peer needs replacing when its store is Down (no store heartbeat for
//! `max-store-down-time`), Tombstone or unknown, when the leader reports it in `down_peers`
//! for at least `max-store-down-time`, when the leader has reported it pending in every
//! heartbeat for `max-pending-peer-time` (a snapshot that never arrives), or when its store
//! is Offline (being drained): [`PeerHealth`].

use std::time::Duration;

use proto::metapb;

use super::evict_leader::SchedulerSet;
use super::operator::Step;
use super::operator_controller::Operators;
use crate::cluster::{ClusterView, Liveness, RegionInfo, StoreCount, StoreInfo};
use crate::config::Config;
use crate::meta::ConfigRecord;

/// Weight of a difference at one location level over all levels below it (PD's
/// `replicaBaseScore`).
const LEVEL_WEIGHT: u64 = 100;

/// A store with fewer regions than this and more than [`INIT_MIN_SPACE`] available is never
/// low on space (PD's `InitClusterRegionThreshold`).
pub const INIT_REGION_THRESHOLD: u64 = 100;
/// See [`INIT_REGION_THRESHOLD`]: 8 GiB, PD's `initialMinSpace`.
pub const INIT_MIN_SPACE: u64 = 8 << 30;

/// Scheduling settings, fixed at startup.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Replicas per region when the cluster metadata does not say (before bootstrap).
    pub max_replicas: usize,
    /// Store label keys, outermost first.
    pub location_labels: Vec<String>,
    /// One of `location_labels`, or empty: no two replicas of a region may share a domain at
    /// this level ([`Context::isolated`]).
    pub isolation_level: String,
    pub max_store_down_time: Duration,
    /// A peer reported pending this long needs replacing ([`PeerHealth::Pending`]).
    pub max_pending_peer_time: Duration,
    pub replica_schedule_limit: usize,
    pub store_add_peer_limit: usize,
    pub leader_schedule_limit: usize,
    pub region_schedule_limit: usize,
    /// Stores with less than `1 - low_space_ratio` of their capacity available take no new
    /// replica ([`Context::is_low_space`]).
    pub low_space_ratio: f64,
}

impl Settings {
    pub fn from_config(c: &Config) -> Self {
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Settings {
            max_replicas: count(c.max_replicas),
            location_labels: c.location_labels.clone(),
            isolation_level: c.isolation_level.clone(),
            max_store_down_time: c.max_store_down_time.0,
            max_pending_peer_time: c.schedule.max_pending_peer_time.0,
            replica_schedule_limit: count(c.schedule.replica_schedule_limit),
            store_add_peer_limit: count(c.schedule.store_add_peer_limit),
            leader_schedule_limit: count(c.schedule.leader_schedule_limit),
            region_schedule_limit: count(c.schedule.region_schedule_limit),
            low_space_ratio: c.schedule.low_space_ratio,
        }
    }
}

impl Settings {
    /// These settings with the runtime overrides applied.
    pub fn with_overrides(&self, o: &ConfigRecord) -> Settings {
        let mut s = self.clone();
        if o.has_location_labels {
            s.location_labels = o.location_labels.clone();
        }
        if o.has_isolation_level {
            s.isolation_level = o.isolation_level.clone();
        }
        if o.max_store_down_time_ms > 0 {
            s.max_store_down_time = Duration::from_millis(o.max_store_down_time_ms);
        }
        s
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(&Config::default())
    }
}

/// Why a peer must be replaced, if it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHealth {
    Healthy,
    /// Store down, tombstone or unknown, or the peer reported down for too long.
    Down,
    /// Reported pending (needing a snapshot, or far behind) for too long: stuck.
    Pending,
    /// Store being drained.
    Offline,
}

/// The cluster at one instant, as the checkers read it.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub view: &'a ClusterView,
    pub settings: &'a Settings,
    /// Unix milliseconds now.
    pub now_ms: u64,
    /// Unix milliseconds when placement started (stores not heard from since count from here).
    pub started_ms: u64,
}

impl<'a> Context<'a> {
    /// Replicas per region: the cluster's `max_peer_count`, else the configured default.
    pub fn max_replicas(&self) -> usize {
        self.view
            .meta()
            .ok()
            .map(|m| m.max_peer_count as usize)
            .filter(|n| *n > 0)
            .unwrap_or(self.settings.max_replicas)
    }

    /// The enabled schedulers (evicted stores among them).
    pub fn schedulers(&self) -> SchedulerSet {
        SchedulerSet::from_names(self.view.scheduler_names())
    }

    pub fn store(&self, id: u64) -> Option<&'a StoreInfo> {
        self.view.store(id).ok()
    }

    /// Every known store, tombstones included, by id.
    pub fn stores(&self) -> impl Iterator<Item = &'a StoreInfo> {
        self.view.stores()
    }

    /// Liveness of a known store.
    pub fn liveness(&self, id: u64) -> Option<Liveness> {
        let s = self.store(id)?;
        Some(s.liveness(
            self.now_ms,
            self.started_ms,
            self.settings.max_store_down_time,
        ))
    }

    pub fn counts(&self, store_id: u64) -> StoreCount {
        self.view.regions().store_count(store_id)
    }

    /// Whether `peer` of `region` must be replaced, and why.
    pub fn peer_health(&self, region: &RegionInfo, peer: &metapb::Peer) -> PeerHealth {
        match self.liveness(peer.store_id) {
            None | Some(Liveness::Down | Liveness::Tombstone) => PeerHealth::Down,
            Some(Liveness::Offline) => PeerHealth::Offline,
            Some(Liveness::Up | Liveness::Disconnected) => {
                let limit = self.settings.max_store_down_time.as_secs();
                let down = region
                    .down_peers
                    .iter()
                    .any(|d| d.peer.is_some_and(|p| p.id == peer.id) && d.down_seconds >= limit);
                let bound = self.settings.max_pending_peer_time.as_millis();
                let stuck = region
                    .pending_since(peer.id)
                    .is_some_and(|since| u128::from(self.now_ms.saturating_sub(since)) >= bound);
                if down {
                    PeerHealth::Down
                } else if stuck {
                    PeerHealth::Pending
                } else {
                    PeerHealth::Healthy
                }
            }
        }
    }

    /// Whether a store is low on space (PD's `IsLowSpace`): it reported its disk (capacity
    /// above 0) and has less than `1 - low-space-ratio` of it available. As in PD, a store
    /// still holding few regions (under [`INIT_REGION_THRESHOLD`]) with more than
    /// [`INIT_MIN_SPACE`] available is not: a new cluster on big disks is not low.
    pub fn is_low_space(&self, store_id: u64) -> bool {
        let Some(stats) = self.store(store_id).and_then(|s| s.stats.as_ref()) else {
            return false;
        };
        if stats.capacity == 0 {
            return false;
        }
        let regions = self.counts(store_id).peers;
        if regions < INIT_REGION_THRESHOLD && stats.available > INIT_MIN_SPACE {
            return false;
        }
        let ratio = stats.available as f64 / stats.capacity as f64;
        ratio < 1.0 - self.settings.low_space_ratio
    }

    /// How well `candidate` is isolated from `others` (PD's `DistinctScore`): for each other
    /// store, `100^(levels - i - 1)` where `i` is the first location label that differs, or
    /// nothing when all are equal. Higher is better; 0 without location labels.
    pub fn distinct_score(&self, others: &[u64], candidate: u64) -> u64 {
        let labels = &self.settings.location_labels;
        let Some(c) = self.store(candidate) else {
            return 0;
        };
        let mut score = 0u64;
        for other in others.iter().filter(|id| **id != candidate) {
            let Some(o) = self.store(*other) else {
                continue;
            };
            let differs = labels
                .iter()
                .position(|key| !label(o, key).eq_ignore_ascii_case(label(c, key)));
            if let Some(i) = differs {
                let exp = u32::try_from(labels.len() - i - 1).unwrap_or(u32::MAX);
                score = score.saturating_add(LEVEL_WEIGHT.saturating_pow(exp));
            }
        }
        score
    }
}

impl Context<'_> {
    /// How many of the location labels, outermost first, make up an `isolation-level`
    /// domain: the level's position plus one, or `None` when no level is set or the level is
    /// not one of the labels (which validation prevents).
    pub fn isolation_depth(&self) -> Option<usize> {
        let level = &self.settings.isolation_level;
        if level.is_empty() {
            return None;
        }
        let labels = &self.settings.location_labels;
        labels.iter().position(|l| l == level).map(|i| i + 1)
    }

    /// Whether `candidate` may hold a replica next to the replicas on `others` under
    /// `isolation-level` (PD's isolation filter): its labels down to that level must differ
    /// from every other store's. Always true without a level. A store lacking a label has
    /// the value `""` there, so unlabeled stores share a domain.
    pub fn isolated(&self, others: &[u64], candidate: u64) -> bool {
        let Some(depth) = self.isolation_depth() else {
            return true;
        };
        let Some(c) = self.store(candidate) else {
            return false;
        };
        let keys = &self.settings.location_labels[..depth];
        others.iter().filter(|id| **id != candidate).all(|id| {
            self.store(*id).is_none_or(|o| {
                keys.iter()
                    .any(|key| !label(o, key).eq_ignore_ascii_case(label(c, key)))
            })
        })
    }

    /// A store's region score for balancing: the size in MiB of the regions it holds
    /// ([`crate::cluster::StoreCount::region_size`]) plus what running operators will add to
    /// it, minus what they will take away (PD's region score with operator influence).
    pub fn region_score(&self, ops: &Operators, store_id: u64) -> i64 {
        let held = self.counts(store_id).region_size as i64;
        let influence: i64 = ops
            .running()
            .map(|op| {
                let size =
                    (self.view.regions().get(op.region_id)).map_or(1, RegionInfo::size_mib) as i64;
                let rest = &op.steps[op.current.min(op.steps.len())..];
                rest.iter()
                    .map(|s| match s {
                        Step::AddLearner { store_id: id, .. } if *id == store_id => size,
                        Step::RemovePeer { store_id: id, .. } if *id == store_id => -size,
                        _ => 0,
                    })
                    .sum::<i64>()
            })
            .sum();
        held + influence
    }
}

/// The value of a store's location label, "" when it has none.
pub fn label<'s>(store: &'s StoreInfo, key: &str) -> &'s str {
    store
        .meta
        .labels
        .iter()
        .find(|l| l.key.eq_ignore_ascii_case(key))
        .map_or("", |l| l.value.as_str())
}
