//! Keys of the store's local metadata in the `raft` column family.
//!
//! Everything a region replica persists outside user data lives here: the raft
//! log (`L`), raft hard state (`S`), apply state (`A`), region state (`R`),
//! tombstone (`T`) and pending snapshot install (`P`), each followed by the
//! big-endian region id, plus the store identity (`I`).

pub const STORE_IDENT_KEY: &[u8] = b"I";
const LOG_PREFIX: u8 = b'L';
const RAFT_STATE_PREFIX: u8 = b'S';
const APPLY_STATE_PREFIX: u8 = b'A';
pub const REGION_STATE_PREFIX: u8 = b'R';
const TOMBSTONE_PREFIX: u8 = b'T';
const SNAPSHOT_INSTALL_PREFIX: u8 = b'P';

fn region_key(prefix: u8, region_id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(prefix);
    k.extend_from_slice(&region_id.to_be_bytes());
    k
}

pub fn raft_log_key(region_id: u64, index: u64) -> Vec<u8> {
    let mut k = region_key(LOG_PREFIX, region_id);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

pub fn raft_state_key(region_id: u64) -> Vec<u8> {
    region_key(RAFT_STATE_PREFIX, region_id)
}

pub fn apply_state_key(region_id: u64) -> Vec<u8> {
    region_key(APPLY_STATE_PREFIX, region_id)
}

pub fn region_state_key(region_id: u64) -> Vec<u8> {
    region_key(REGION_STATE_PREFIX, region_id)
}

/// Marks a region replica this store removed, with the conf version then.
pub fn tombstone_key(region_id: u64) -> Vec<u8> {
    region_key(TOMBSTONE_PREFIX, region_id)
}

/// Marks a replica whose received snapshot is not fully installed yet; the
/// value says which snapshot (so a restart finishes the install).
pub fn snapshot_install_key(region_id: u64) -> Vec<u8> {
    region_key(SNAPSHOT_INSTALL_PREFIX, region_id)
}

/// Region id encoded in a region state key, if it is one.
pub fn region_id_of_state_key(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[0] != REGION_STATE_PREFIX {
        return None;
    }
    Some(u64::from_be_bytes(key[1..9].try_into().ok()?))
}

/// Where a region's applied data stands; persisted atomically with each apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyState {
    pub applied_index: u64,
    pub truncated_index: u64,
    pub truncated_term: u64,
}

impl ApplyState {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.applied_index.to_be_bytes());
        v.extend_from_slice(&self.truncated_index.to_be_bytes());
        v.extend_from_slice(&self.truncated_term.to_be_bytes());
        v
    }

    pub fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 24 {
            return None;
        }
        let at = |i: usize| u64::from_be_bytes(v[i..i + 8].try_into().unwrap_or_default());
        Some(ApplyState {
            applied_index: at(0),
            truncated_index: at(8),
            truncated_term: at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_region_then_index() {
        assert!(raft_log_key(1, 9) < raft_log_key(1, 10));
        assert!(raft_log_key(1, u64::MAX) < raft_log_key(2, 0));
        assert_eq!(region_id_of_state_key(&region_state_key(42)), Some(42));
        assert_eq!(region_id_of_state_key(&raft_state_key(42)), None);
        let s = ApplyState {
            applied_index: 7,
            truncated_index: 5,
            truncated_term: 5,
        };
        assert_eq!(ApplyState::decode(&s.encode()), Some(s));
        assert_eq!(ApplyState::decode(b"short"), None);
    }
}
