//! Executing a region split: the pure part, shared by every replica.
//!
//! [`exec_batch_split`] checks a [`BatchSplit`] against the region as it is
//! when the command applies (the epoch may have moved since it was proposed)
//! and derives the regions it yields; [`split_writes`] turns the outcome into
//! engine writes applied atomically with the rest of the apply batch.

use prost::Message as _;
use proto::metapb;

use super::cmd::BatchSplit;
use super::local_keys;
use super::peer_storage::{bootstrap_writes, RaftStateError};
use crate::engine::{Modify, CF_RAFT};

/// The parent region after the split (leftmost part) and the new regions.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitOutcome {
    pub left: metapb::Region,
    pub new_regions: Vec<metapb::Region>,
}

/// Why a committed split changes nothing (the same on every replica).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitRejected {
    #[error(
        "epoch changed since the split was proposed: now {}/{}, proposed at {}/{}",
        .now.0, .now.1, .proposed.0, .proposed.1
    )]
    EpochChanged {
        /// (conf_ver, version) of the region now.
        now: (u64, u64),
        /// (conf_ver, version) the split was proposed at.
        proposed: (u64, u64),
    },
    #[error("no split keys")]
    NoKeys,
    #[error("split key {0:?} is not inside the region or not ascending")]
    KeyOutside(Vec<u8>),
    #[error("one new peer id per parent peer is required: {ids} ids for {peers} peers")]
    PeerIds { ids: usize, peers: usize },
}

pub fn exec_batch_split(
    region: &metapb::Region,
    bs: &BatchSplit,
) -> Result<SplitOutcome, SplitRejected> {
    let epoch = region.region_epoch.unwrap_or_default();
    if (epoch.conf_ver, epoch.version) != bs.epoch {
        return Err(SplitRejected::EpochChanged {
            now: (epoch.conf_ver, epoch.version),
            proposed: bs.epoch,
        });
    }
    if bs.splits.is_empty() {
        return Err(SplitRejected::NoKeys);
    }
    let mut prev = region.start_key.as_slice();
    for s in &bs.splits {
        if s.key.as_slice() <= prev || (!region.end_key.is_empty() && s.key >= region.end_key) {
            return Err(SplitRejected::KeyOutside(s.key.clone()));
        }
        if s.new_peer_ids.len() != region.peers.len() {
            return Err(SplitRejected::PeerIds {
                ids: s.new_peer_ids.len(),
                peers: region.peers.len(),
            });
        }
        prev = &s.key;
    }
    let version = epoch.version + bs.splits.len() as u64;
    let new_epoch = metapb::RegionEpoch {
        conf_ver: epoch.conf_ver,
        version,
    };
    let mut left = region.clone();
    left.end_key = bs.splits[0].key.clone();
    left.region_epoch = Some(new_epoch);
    let new_regions = bs
        .splits
        .iter()
        .enumerate()
        .map(|(i, s)| metapb::Region {
            id: s.new_region_id,
            start_key: s.key.clone(),
            end_key: bs
                .splits
                .get(i + 1)
                .map(|n| n.key.clone())
                .unwrap_or_else(|| region.end_key.clone()),
            region_epoch: Some(new_epoch),
            peers: region
                .peers
                .iter()
                .zip(&s.new_peer_ids)
                .map(|(p, id)| metapb::Peer { id: *id, ..*p })
                .collect(),
            ..Default::default()
        })
        .collect();
    Ok(SplitOutcome { left, new_regions })
}

/// Engine writes persisting a split: the shrunk parent and each new region's
/// initial raft state.
pub fn split_writes(outcome: &SplitOutcome) -> Result<Vec<Modify>, RaftStateError> {
    let mut m = vec![Modify::Put {
        cf: CF_RAFT,
        key: local_keys::region_state_key(outcome.left.id),
        value: outcome.left.encode_to_vec(),
    }];
    for r in &outcome.new_regions {
        m.extend(bootstrap_writes(r)?);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::cmd::SplitSpec;

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 4,
            }),
            peers: vec![metapb::Peer {
                id: 2,
                store_id: 7,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn spec(key: &str, id: u64) -> SplitSpec {
        SplitSpec {
            key: key.as_bytes().to_vec(),
            new_region_id: id,
            new_peer_ids: vec![id + 100],
        }
    }

    #[test]
    fn splits_into_ascending_ranges_with_bumped_version() {
        let bs = BatchSplit {
            epoch: (1, 4),
            splits: vec![spec("g", 10), spec("p", 11)],
        };
        let out = exec_batch_split(&region(), &bs).unwrap();
        assert_eq!(
            (out.left.start_key.as_slice(), out.left.end_key.as_slice()),
            (&b"a"[..], &b"g"[..])
        );
        assert_eq!(out.left.region_epoch.as_ref().unwrap().version, 6);
        let ranges: Vec<_> = out
            .new_regions
            .iter()
            .map(|r| {
                (
                    r.id,
                    r.start_key.clone(),
                    r.end_key.clone(),
                    r.peers[0].id,
                    r.peers[0].store_id,
                )
            })
            .collect();
        assert_eq!(
            ranges,
            vec![
                (10, b"g".to_vec(), b"p".to_vec(), 110, 7),
                (11, b"p".to_vec(), b"z".to_vec(), 111, 7)
            ]
        );
        assert_eq!(split_writes(&out).unwrap().len(), 1 + 3 * 2);
    }

    #[test]
    fn rejects_stale_epoch_and_bad_keys() {
        let stale = BatchSplit {
            epoch: (1, 3),
            splits: vec![spec("g", 10)],
        };
        assert!(exec_batch_split(&region(), &stale).is_err());
        for keys in [vec!["a"], vec!["z"], vec!["p", "g"], vec!["g", "g"]] {
            let bs = BatchSplit {
                epoch: (1, 4),
                splits: keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| spec(k, 10 + i as u64))
                    .collect(),
            };
            assert!(exec_batch_split(&region(), &bs).is_err(), "{keys:?}");
        }
    }
}
