//! Stores: [`StoreInfo`] (the `metapb::Store` a store registered, plus its last heartbeat and
//! statistics) and the rules for registering and heartbeating, after PD's `PutStore`.
//!
//! A store keeps its id for life. Re-registering updates address, labels and version but not
//! its state; a tombstone store may not come back; two live stores may not share an address.

use std::collections::BTreeMap;
use std::time::Duration;

use proto::{metapb, pdpb};

use crate::error::{Error, Result};

/// What placement knows about one store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreInfo {
    pub meta: metapb::Store,
    pub stats: Option<pdpb::StoreStats>,
    /// Unix milliseconds of the last heartbeat, if any since placement started.
    pub last_heartbeat_ms: Option<u64>,
}

/// The liveness of a store as PD's HTTP API names it (`state_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Up,
    /// No heartbeat for 20 s.
    Disconnected,
    /// No heartbeat for `max-store-down-time`.
    Down,
    Offline,
    Tombstone,
}

impl Liveness {
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Up => "Up",
            Liveness::Disconnected => "Disconnected",
            Liveness::Down => "Down",
            Liveness::Offline => "Offline",
            Liveness::Tombstone => "Tombstone",
        }
    }
}

/// Heartbeat silence after which a store counts as disconnected (PD's value).
const DISCONNECT_AFTER: Duration = Duration::from_secs(20);

impl StoreInfo {
    pub fn is_tombstone(&self) -> bool {
        self.meta.state == metapb::StoreState::Tombstone as i32
            || self.meta.node_state == metapb::NodeState::Removed as i32
    }

    /// Liveness at `now_ms`; a store never heard from since startup counts from `started_ms`.
    pub fn liveness(&self, now_ms: u64, started_ms: u64, down_after: Duration) -> Liveness {
        if self.is_tombstone() {
            return Liveness::Tombstone;
        }
        if self.meta.state == metapb::StoreState::Offline as i32 {
            return Liveness::Offline;
        }
        let last = self.last_heartbeat_ms.unwrap_or(started_ms);
        let silent = Duration::from_millis(now_ms.saturating_sub(last));
        if silent >= down_after {
            Liveness::Down
        } else if silent >= DISCONNECT_AFTER {
            Liveness::Disconnected
        } else {
            Liveness::Up
        }
    }
}

/// Checks a store registration and returns the store record to persist.
pub fn plan_put_store(
    stores: &BTreeMap<u64, StoreInfo>,
    store: &metapb::Store,
) -> Result<metapb::Store> {
    if store.id == 0 {
        return Err(Error::invalid("store id must not be 0"));
    }
    if store.address.is_empty() {
        return Err(Error::invalid(format!("store {} has no address", store.id)));
    }
    for other in stores.values() {
        if other.meta.id != store.id && other.meta.address == store.address && !other.is_tombstone()
        {
            return Err(Error::invalid(format!(
                "duplicated store address: {}, already registered by store {}",
                store.address, other.meta.id
            )));
        }
    }
    match stores.get(&store.id) {
        Some(existing) if existing.is_tombstone() => Err(Error::StoreTombstone(store.id)),
        Some(existing) => {
            let mut meta = existing.meta.clone();
            meta.address = store.address.clone();
            meta.peer_address = store.peer_address.clone();
            meta.status_address = store.status_address.clone();
            meta.labels = store.labels.clone();
            meta.version = store.version.clone();
            meta.git_hash = store.git_hash.clone();
            meta.start_timestamp = store.start_timestamp;
            meta.deploy_path = store.deploy_path.clone();
            Ok(meta)
        }
        None => {
            let mut meta = store.clone();
            meta.state = metapb::StoreState::Up as i32;
            meta.node_state = metapb::NodeState::Serving as i32;
            Ok(meta)
        }
    }
}

/// Records a store heartbeat.
pub fn heartbeat(
    stores: &mut BTreeMap<u64, StoreInfo>,
    stats: pdpb::StoreStats,
    now_ms: u64,
) -> Result<()> {
    let info = stores
        .get_mut(&stats.store_id)
        .ok_or(Error::StoreNotFound(stats.store_id))?;
    if info.is_tombstone() {
        return Err(Error::StoreTombstone(stats.store_id));
    }
    info.meta.last_heartbeat = (now_ms as i64).saturating_mul(1_000_000);
    info.last_heartbeat_ms = Some(now_ms);
    info.stats = Some(stats);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: u64, addr: &str) -> metapb::Store {
        metapb::Store {
            id,
            address: addr.to_owned(),
            ..Default::default()
        }
    }

    fn table(stores: &[metapb::Store]) -> BTreeMap<u64, StoreInfo> {
        stores
            .iter()
            .map(|s| {
                (
                    s.id,
                    StoreInfo {
                        meta: s.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn put_store_rules() {
        let mut tomb = store(3, "c:1");
        tomb.state = metapb::StoreState::Tombstone as i32;
        let mut offline = store(2, "b:1");
        offline.state = metapb::StoreState::Offline as i32;
        let stores = table(&[store(1, "a:1"), offline, tomb]);
        let cases: Vec<(metapb::Store, std::result::Result<i32, &str>)> = vec![
            (store(0, "x:1"), Err("id must not be 0")),
            (store(9, ""), Err("no address")),
            (store(9, "a:1"), Err("duplicated store address")),
            (store(3, "c:2"), Err("tombstone")),
            (store(9, "c:1"), Ok(metapb::StoreState::Up as i32)),
            (store(1, "a:2"), Ok(metapb::StoreState::Up as i32)),
            (store(2, "b:2"), Ok(metapb::StoreState::Offline as i32)),
        ];
        for (input, want) in cases {
            let got = plan_put_store(&stores, &input);
            match (got, want) {
                (Ok(meta), Ok(state)) => {
                    assert_eq!(meta.state, state, "store {}", input.id);
                    assert_eq!(meta.address, input.address);
                }
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{e} vs {text}"),
                (got, want) => panic!("store {}: got {got:?}, want {want:?}", input.id),
            }
        }
    }

    #[test]
    fn heartbeat_and_liveness() {
        let mut stores = table(&[store(1, "a:1")]);
        let down = Duration::from_secs(1800);
        assert!(heartbeat(&mut stores, pdpb::StoreStats::default(), 0).is_err());
        let stats = pdpb::StoreStats {
            store_id: 1,
            capacity: 100,
            ..Default::default()
        };
        heartbeat(&mut stores, stats, 1_000).unwrap();
        let s = &stores[&1];
        assert_eq!(s.stats.as_ref().unwrap().capacity, 100);
        assert_eq!(s.liveness(5_000, 0, down), Liveness::Up);
        assert_eq!(s.liveness(25_000, 0, down), Liveness::Disconnected);
        assert_eq!(s.liveness(1_900_000, 0, down), Liveness::Down);
    }
}
