//! Keyspaces (API V2 tenants): [`Keyspaces`] maps names to 24-bit ids.
//!
//! `DEFAULT` with id 0 always exists and is never stored; new keyspaces take the next id after
//! the largest one in use, as PD's keyspace manager does with its id allocator.

use proto::metapb;
use std::collections::BTreeMap;

use proto::keyspacepb::{KeyspaceMeta, KeyspaceState};

use crate::error::{Error, Result};

/// Name of the keyspace that always exists.
pub const DEFAULT_KEYSPACE: &str = "DEFAULT";
/// Largest keyspace id (ids are 24 bits on the wire).
pub const MAX_KEYSPACE_ID: u32 = 0xFF_FFFF;
const MAX_NAME_LEN: usize = 64;

/// All keyspaces by id.
#[derive(Debug, Clone)]
pub struct Keyspaces {
    by_id: BTreeMap<u32, KeyspaceMeta>,
}

impl Default for Keyspaces {
    fn default() -> Self {
        let default = KeyspaceMeta {
            id: 0,
            name: DEFAULT_KEYSPACE.to_owned(),
            state: KeyspaceState::Enabled as i32,
            ..Default::default()
        };
        Keyspaces {
            by_id: BTreeMap::from([(0, default)]),
        }
    }
}

impl Keyspaces {
    pub fn by_name(&self, name: &str) -> Option<&KeyspaceMeta> {
        self.by_id.values().find(|k| k.name == name)
    }

    pub fn by_id(&self, id: u32) -> Option<&KeyspaceMeta> {
        self.by_id.get(&id)
    }

    /// Encoded keyspace boundaries strictly inside `region`, ascending: where
    /// it must split so every keyspace's raw and transactional data sit in
    /// regions of their own (PD splits them the same way). Clients rely on
    /// it: a V2 raw scan stops at the first region end past its range.
    pub fn split_keys(&self, region: &metapb::Region) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = self
            .by_id
            .keys()
            .flat_map(|id| proto::codec::keyspace_boundaries(*id))
            .filter(|k| {
                k.as_slice() > region.start_key.as_slice()
                    && (region.end_key.is_empty() || k.as_slice() < region.end_key.as_slice())
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// Keyspaces with id >= `start_id`, at most `limit` (0 = all).
    pub fn list(&self, start_id: u32, limit: usize) -> Vec<KeyspaceMeta> {
        let iter = self.by_id.range(start_id..).map(|(_, k)| k.clone());
        if limit == 0 {
            iter.collect()
        } else {
            iter.take(limit).collect()
        }
    }

    /// Checks a new keyspace name and builds its record (created at `now_secs`).
    pub fn plan_create(&self, name: &str, now_secs: i64) -> Result<KeyspaceMeta> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(Error::invalid(format!(
                "keyspace name `{name}` must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_-]"
            )));
        }
        if self.by_name(name).is_some() {
            return Err(Error::KeyspaceExists(name.to_owned()));
        }
        let last = self.by_id.keys().next_back().copied().unwrap_or(0);
        if last >= MAX_KEYSPACE_ID {
            return Err(Error::KeyspaceIdsExhausted);
        }
        Ok(KeyspaceMeta {
            id: last + 1,
            name: name.to_owned(),
            state: KeyspaceState::Enabled as i32,
            created_at: now_secs,
            state_changed_at: now_secs,
            config: Default::default(),
        })
    }

    /// Inserts or replaces a keyspace record.
    pub fn put(&mut self, meta: KeyspaceMeta) {
        self.by_id.insert(meta.id, meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keys_cut_out_each_keyspace() {
        let mut ks = Keyspaces::default();
        ks.put(KeyspaceMeta {
            id: 7,
            name: "seven".into(),
            ..Default::default()
        });
        let whole = metapb::Region::default();
        assert_eq!(ks.split_keys(&whole).len(), 8);
        let keys = ks.split_keys(&whole);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        // A region already bounded by a keyspace's boundaries needs no split.
        let b = proto::codec::keyspace_boundaries(0);
        let inner = metapb::Region {
            start_key: b[0].clone(),
            end_key: b[1].clone(),
            ..Default::default()
        };
        assert!(ks.split_keys(&inner).is_empty());
    }

    #[test]
    fn default_always_exists() {
        let k = Keyspaces::default();
        let d = k.by_name(DEFAULT_KEYSPACE).unwrap();
        assert_eq!(d.id, 0);
        assert_eq!(d.state, KeyspaceState::Enabled as i32);
        assert!(k.by_name("other").is_none());
    }

    #[test]
    fn create_takes_next_id_and_checks_names() {
        let mut k = Keyspaces::default();
        let a = k.plan_create("a", 7).unwrap();
        assert_eq!((a.id, a.created_at), (1, 7));
        k.put(a);
        assert_eq!(k.plan_create("b", 8).unwrap().id, 2);
        for (name, err) in [
            ("a", "already exists"),
            (DEFAULT_KEYSPACE, "already exists"),
            ("", "must be"),
            ("bad name", "must be"),
        ] {
            let e = k.plan_create(name, 0).unwrap_err().to_string();
            assert!(e.contains(err), "{name}: {e}");
        }
        assert_eq!(k.list(1, 0).len(), 1);
        assert_eq!(k.list(0, 1).len(), 1);
    }

    #[test]
    fn ids_are_bounded() {
        let mut k = Keyspaces::default();
        k.put(KeyspaceMeta {
            id: MAX_KEYSPACE_ID,
            name: "last".into(),
            ..Default::default()
        });
        assert!(matches!(
            k.plan_create("x", 0),
            Err(Error::KeyspaceIdsExhausted)
        ));
    }
}
