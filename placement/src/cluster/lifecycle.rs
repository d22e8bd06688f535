//! Store lifecycle transitions, after PD's `RemoveStore`, `UpStore`, `checkStores` and
//! `RemoveTombstoneStores`: pure planning functions over the store table that return the
//! [`MetaWrite`]s to persist.
//!
//! Up ⇄ Offline by request ([`plan_offline`], [`plan_up`]); Offline → Tombstone once the
//! replica checker has moved every replica away ([`plan_tombstones`]); Tombstone → gone on
//! purge ([`plan_remove_tombstones`]). Disconnected and Down are not stored: they are derived
//! from heartbeat silence ([`super::StoreInfo::liveness`]).

use std::collections::BTreeMap;

use proto::metapb::{self, NodeState, StoreState};

use super::regions::RegionMap;
use super::stores::StoreInfo;
use crate::error::{Error, Result};
use crate::meta::MetaWrite;

fn is_offline(s: &StoreInfo) -> bool {
    !s.is_tombstone() && s.meta.state == StoreState::Offline as i32
}

fn with_state(s: &StoreInfo, state: StoreState, node: NodeState) -> metapb::Store {
    let mut meta = s.meta.clone();
    meta.state = state as i32;
    meta.node_state = node as i32;
    meta
}

/// Starts draining store `id`. Refused (unless `force`) when the stores that `is_up` accepts,
/// other than this one, are fewer than `max_replicas`: the drain could never finish without
/// leaving regions under-replicated. Draining an Offline store again changes nothing.
pub fn plan_offline(
    stores: &BTreeMap<u64, StoreInfo>,
    id: u64,
    force: bool,
    max_replicas: usize,
    is_up: impl Fn(&StoreInfo) -> bool,
) -> Result<Vec<MetaWrite>> {
    let s = stores.get(&id).ok_or(Error::StoreNotFound(id))?;
    if s.is_tombstone() {
        return Err(Error::StoreTombstone(id));
    }
    if is_offline(s) {
        return Ok(Vec::new());
    }
    let others_up = stores
        .values()
        .filter(|o| o.meta.id != id && !o.is_tombstone() && !is_offline(o) && is_up(o))
        .count();
    if others_up < max_replicas && !force {
        return Err(Error::invalid(format!(
            "draining store {id} would leave {others_up} Up stores for max-replicas \
             {max_replicas}; regions could not be fully replicated (add ?force=true to drain anyway)"
        )));
    }
    Ok(vec![MetaWrite::Store(with_state(
        s,
        StoreState::Offline,
        NodeState::Removing,
    ))])
}

/// Cancels a drain: an Offline store becomes Up again. A tombstone cannot come back.
pub fn plan_up(stores: &BTreeMap<u64, StoreInfo>, id: u64) -> Result<Vec<MetaWrite>> {
    let s = stores.get(&id).ok_or(Error::StoreNotFound(id))?;
    if s.is_tombstone() {
        return Err(Error::StoreTombstone(id));
    }
    if !is_offline(s) {
        return Ok(Vec::new());
    }
    Ok(vec![MetaWrite::Store(with_state(
        s,
        StoreState::Up,
        NodeState::Serving,
    ))])
}

/// Every Offline store that holds no replica any more becomes Tombstone.
pub fn plan_tombstones(stores: &BTreeMap<u64, StoreInfo>, regions: &RegionMap) -> Vec<MetaWrite> {
    stores
        .values()
        .filter(|s| is_offline(s) && regions.store_count(s.meta.id).peers == 0)
        .map(|s| MetaWrite::Store(with_state(s, StoreState::Tombstone, NodeState::Removed)))
        .collect()
}

/// Forgets every tombstone.
pub fn plan_remove_tombstones(stores: &BTreeMap<u64, StoreInfo>) -> Vec<MetaWrite> {
    stores
        .values()
        .filter(|s| s.is_tombstone())
        .map(|s| MetaWrite::DeleteStore(s.meta.id))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(states: &[(u64, StoreState)]) -> BTreeMap<u64, StoreInfo> {
        states
            .iter()
            .map(|(id, state)| {
                let meta = metapb::Store {
                    id: *id,
                    address: format!("s{id}"),
                    state: *state as i32,
                    ..Default::default()
                };
                let info = StoreInfo {
                    meta,
                    ..Default::default()
                };
                (*id, info)
            })
            .collect()
    }

    fn state_of(writes: &[MetaWrite]) -> Vec<(u64, i32)> {
        writes
            .iter()
            .map(|w| match w {
                MetaWrite::Store(s) => (s.id, s.state),
                MetaWrite::DeleteStore(id) => (*id, -1),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn offline_and_up_table() {
        use StoreState::{Offline, Tombstone, Up};
        let stores = table(&[
            (1, Up),
            (2, Up),
            (3, Up),
            (4, Up),
            (5, Offline),
            (6, Tombstone),
            (7, Up),
        ]);
        let down = |s: &StoreInfo| s.meta.id != 4;
        // (name, store, force, expected writes or error text)
        type Row = (
            &'static str,
            u64,
            bool,
            std::result::Result<Vec<(u64, i32)>, &'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                "4 others up, one down",
                1,
                false,
                Ok(vec![(1, Offline as i32)]),
            ),
            ("down store counts as not up", 4, false, Ok(vec![(4, 1)])),
            ("already offline", 5, false, Ok(vec![])),
            ("tombstone", 6, false, Err("tombstone")),
            ("unknown", 9, false, Err("not found")),
        ];
        for (name, id, force, want) in rows {
            let got = plan_offline(&stores, id, force, 3, down).map(|w| state_of(&w));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
                (Err(e), Err(text)) => assert!(e.to_string().contains(text), "{name}: {e}"),
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
        // Only 2 other Up stores when two are down: refused unless forced.
        let two_down = |s: &StoreInfo| s.meta.id != 2 && s.meta.id != 7;
        let err = plan_offline(&stores, 1, false, 3, two_down).unwrap_err();
        assert!(err.to_string().contains("force=true"), "{err}");
        let forced = plan_offline(&stores, 1, true, 3, two_down).unwrap();
        assert_eq!(state_of(&forced), [(1, Offline as i32)]);

        assert_eq!(state_of(&plan_up(&stores, 5).unwrap()), [(5, Up as i32)]);
        assert!(plan_up(&stores, 1).unwrap().is_empty());
        assert!(plan_up(&stores, 6).is_err());
    }

    #[test]
    fn drained_stores_become_tombstones_and_are_purged() {
        use StoreState::{Offline, Tombstone, Up};
        let stores = table(&[(1, Up), (2, Offline), (3, Offline), (4, Tombstone)]);
        let mut regions = RegionMap::default();
        let peer = |id, store_id| metapb::Peer {
            id,
            store_id,
            ..Default::default()
        };
        let meta = metapb::Region {
            id: 1,
            region_epoch: Some(metapb::RegionEpoch::default()),
            peers: vec![peer(1, 1), peer(2, 2)],
            ..Default::default()
        };
        regions
            .upsert(super::super::RegionInfo::from_meta(meta, None))
            .unwrap();
        let writes = plan_tombstones(&stores, &regions);
        assert_eq!(
            state_of(&writes),
            [(3, Tombstone as i32)],
            "2 still holds a peer"
        );
        assert_eq!(state_of(&plan_remove_tombstones(&stores)), [(4, -1)]);
    }
}
