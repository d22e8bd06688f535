//! Joint-consensus membership changes in region metadata (PD's `ChangePeerV2`).
//!
//! A joint change is one raft `ConfChangeV2` with an explicit transition: entering it promotes
//! learners (`AddNode`: role `IncomingVoter`), demotes voters (`AddLearnerNode`: role
//! `DemotingVoter`), adds new learners or voters and removes learners, all at once; while the
//! region is joint every decision needs a majority of both the old voters (`Voter` and
//! `DemotingVoter`) and the new ones (`Voter` and `IncomingVoter`). An empty `ConfChangeV2`
//! leaves the joint state: incoming voters become voters, demoting voters learners.
//!
//! As in TiKV, a voter is never removed inside a joint change (it is demoted first and removed
//! as a learner afterwards), a change touching learners only is refused (it would put raft in a
//! joint configuration no peer role shows), and the conf version grows by the number of
//! changes on entering and by the number of peers whose role changed on leaving.
//!
//! The region's peer roles are the durable form of the raft configuration:
//! [`crate::raftstore::peer_storage::conf_state_of`] rebuilds it from them at restart and in
//! snapshots.

use std::collections::HashSet;

use prost::Message as _;
use raft::prelude::{ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2};

use proto::metapb::{self, PeerRole};
use proto::{eraftpb, pdpb};

/// One change of a joint membership change: its kind and the peer it is about.
pub type PeerChange = (ConfChangeType, metapb::Peer);

/// Whether some peer of `region` is an incoming or a demoting voter.
pub fn in_joint(region: &metapb::Region) -> bool {
    region
        .peers
        .iter()
        .any(|p| matches!(p.role(), PeerRole::IncomingVoter | PeerRole::DemotingVoter))
}

/// The raft change type placement's `ChangePeer.change_type` names, if valid.
pub fn change_type_from_pd(change_type: i32) -> Option<ConfChangeType> {
    match eraftpb::ConfChangeType::try_from(change_type).ok()? {
        eraftpb::ConfChangeType::AddNode => Some(ConfChangeType::AddNode),
        eraftpb::ConfChangeType::AddLearnerNode => Some(ConfChangeType::AddLearnerNode),
        eraftpb::ConfChangeType::RemoveNode => Some(ConfChangeType::RemoveNode),
    }
}

fn change_type_to_pd(change_type: ConfChangeType) -> i32 {
    let t = match change_type {
        ConfChangeType::AddNode => eraftpb::ConfChangeType::AddNode,
        ConfChangeType::AddLearnerNode => eraftpb::ConfChangeType::AddLearnerNode,
        ConfChangeType::RemoveNode => eraftpb::ConfChangeType::RemoveNode,
    };
    t as i32
}

/// The changes of placement's `ChangePeerV2`; None if one is invalid (no peer, an unknown
/// change type). Empty changes mean "leave the joint state".
pub fn changes_from_pd(cp: &pdpb::ChangePeerV2) -> Option<Vec<PeerChange>> {
    cp.changes
        .iter()
        .map(|c| Some((change_type_from_pd(c.change_type)?, c.peer?)))
        .collect()
}

/// What a joint change's log entry carries besides the raft change: the peers' metadata, as
/// placement's `ChangePeerV2`.
pub fn encode_context(changes: &[PeerChange]) -> Vec<u8> {
    pdpb::ChangePeerV2 {
        changes: changes
            .iter()
            .map(|(t, p)| pdpb::ChangePeer {
                peer: Some(*p),
                change_type: change_type_to_pd(*t),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Why a joint membership change cannot be made (the same on every replica).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JointRefused {
    #[error("undecodable joint change context: {0}")]
    Undecodable(#[from] prost::DecodeError),
    #[error("joint change context names an invalid change")]
    InvalidChange,
    #[error("a joint membership change needs at least one change")]
    NoChanges,
    #[error("the region is already in a joint state: leave it before another membership change")]
    AlreadyJoint,
    #[error("the region is not in a joint state: there is nothing to leave")]
    NotJoint,
    #[error("peer {peer_id} on store {store_id}: a change needs a peer id and a store id")]
    MissingIds { peer_id: u64, store_id: u64 },
    #[error("more than one change for peer {0}")]
    Repeated(u64),
    #[error("peer {peer_id} is on store {on}, not store {named}")]
    WrongStore { peer_id: u64, on: u64, named: u64 },
    #[error("store {store_id} already holds peer {peer_id} of the region")]
    StoreTaken { store_id: u64, peer_id: u64 },
    #[error("peer {0} to remove is not in the region")]
    RemoveMissing(u64),
    #[error("peer {0} is a voter: a joint change removes only learners (demote it first)")]
    RemoveVoter(u64),
    #[error("peer {0} is already a voter")]
    AlreadyVoter(u64),
    #[error("peer {0} is already a learner")]
    AlreadyLearner(u64),
    #[error("peer {peer_id} is {role:?}")]
    InTransition { peer_id: u64, role: PeerRole },
    #[error("the changes touch only learners: they need no joint state (use single changes)")]
    LearnersOnly,
    #[error("the new configuration would have no voter")]
    NoVoter,
    #[error("a leave-joint entry names changes")]
    LeaveWithChanges,
    #[error("joint changes are left explicitly; {0:?} transition refused")]
    Transition(ConfChangeTransition),
    #[error("the raft change does not match the peers its entry names")]
    Mismatch,
}

/// The changes [`encode_context`] wrote.
pub fn decode_context(context: &[u8]) -> Result<Vec<PeerChange>, JointRefused> {
    let cp = pdpb::ChangePeerV2::decode(context)?;
    changes_from_pd(&cp).ok_or(JointRefused::InvalidChange)
}

/// The raft change entering a joint state with `changes` (or leaving it, if empty).
pub fn conf_change_v2(changes: &[PeerChange]) -> ConfChangeV2 {
    let mut cc = ConfChangeV2::default();
    if changes.is_empty() {
        // Auto with no changes is what raft-rs reads as "leave the joint state".
        return cc;
    }
    cc.set_transition(ConfChangeTransition::Explicit);
    let singles: Vec<ConfChangeSingle> = changes
        .iter()
        .map(|(t, p)| {
            let mut s = ConfChangeSingle::default();
            s.set_change_type(*t);
            s.node_id = p.id;
            s
        })
        .collect();
    cc.set_changes(singles.into());
    cc
}

/// Whether the raft change `cc` is exactly the one `changes` stand for.
pub fn matches(cc: &ConfChangeV2, changes: &[PeerChange]) -> bool {
    cc.changes.len() == changes.len()
        && cc
            .changes
            .iter()
            .zip(changes)
            .all(|(s, (t, p))| s.node_id == p.id && s.get_change_type() == *t)
}

fn bump_conf_ver(region: &mut metapb::Region, by: u64) {
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.conf_ver += by;
    region.region_epoch = Some(epoch);
}

/// `region` once it entered the joint state `changes` describe, or why it cannot.
pub fn enter_joint(
    region: &metapb::Region,
    changes: &[PeerChange],
) -> Result<metapb::Region, JointRefused> {
    check_can_enter_joint(region, changes)?;
    let mut out = region.clone();
    let mut seen = HashSet::new();
    let mut voters_change = false;
    for (ty, peer) in changes {
        check_change_ids(peer)?;
        if !seen.insert(peer.id) {
            return Err(JointRefused::Repeated(peer.id));
        }
        let existing = locate_change_target(&out, *ty, peer)?;
        let changes_voters = match existing {
            None => add_joint_peer(&mut out, *ty, peer)?,
            Some(i) => change_joint_peer(&mut out, i, *ty, peer)?,
        };
        voters_change |= changes_voters;
    }
    check_joint_outcome(&out, voters_change)?;
    bump_conf_ver(&mut out, changes.len() as u64);
    Ok(out)
}

/// Refuses a joint change without changes, or on a region already in a joint state.
fn check_can_enter_joint(
    region: &metapb::Region,
    changes: &[PeerChange],
) -> Result<(), JointRefused> {
    if changes.is_empty() {
        return Err(JointRefused::NoChanges);
    }
    if in_joint(region) {
        return Err(JointRefused::AlreadyJoint);
    }
    Ok(())
}

/// Refuses a change whose peer lacks a peer id or a store id.
fn check_change_ids(peer: &metapb::Peer) -> Result<(), JointRefused> {
    if peer.id == 0 || peer.store_id == 0 {
        return Err(JointRefused::MissingIds {
            peer_id: peer.id,
            store_id: peer.store_id,
        });
    }
    Ok(())
}

/// Where `peer` is among `region`'s peers, if there; refuses a store clashing with theirs.
fn locate_change_target(
    region: &metapb::Region,
    ty: ConfChangeType,
    peer: &metapb::Peer,
) -> Result<Option<usize>, JointRefused> {
    let existing = region.peers.iter().position(|p| p.id == peer.id);
    if let Some(i) = existing {
        if region.peers[i].store_id != peer.store_id {
            return Err(JointRefused::WrongStore {
                peer_id: peer.id,
                on: region.peers[i].store_id,
                named: peer.store_id,
            });
        }
    } else if ty != ConfChangeType::RemoveNode {
        if let Some(other) = region.peers.iter().find(|p| p.store_id == peer.store_id) {
            return Err(JointRefused::StoreTaken {
                store_id: peer.store_id,
                peer_id: other.id,
            });
        }
    }
    Ok(existing)
}

/// `peer` with `role`, as a joint change puts it in the region.
fn peer_with_role(peer: &metapb::Peer, role: PeerRole) -> metapb::Peer {
    metapb::Peer {
        id: peer.id,
        store_id: peer.store_id,
        role: role as i32,
        is_witness: peer.is_witness,
    }
}

/// Applies a `ty` change for `peer`, not yet in `out`; Ok(true) if it changed the voters.
fn add_joint_peer(
    out: &mut metapb::Region,
    ty: ConfChangeType,
    peer: &metapb::Peer,
) -> Result<bool, JointRefused> {
    match ty {
        ConfChangeType::AddNode => {
            out.peers
                .push(peer_with_role(peer, PeerRole::IncomingVoter));
            Ok(true)
        }
        ConfChangeType::AddLearnerNode => {
            out.peers.push(peer_with_role(peer, PeerRole::Learner));
            Ok(false)
        }
        ConfChangeType::RemoveNode => Err(JointRefused::RemoveMissing(peer.id)),
    }
}

/// Applies a `ty` change for `peer`, `out.peers[i]`; Ok(true) if it changed the voters.
fn change_joint_peer(
    out: &mut metapb::Region,
    i: usize,
    ty: ConfChangeType,
    peer: &metapb::Peer,
) -> Result<bool, JointRefused> {
    match (ty, out.peers[i].role()) {
        (ConfChangeType::AddNode, PeerRole::Learner) => {
            out.peers[i].role = PeerRole::IncomingVoter as i32;
            Ok(true)
        }
        (ConfChangeType::AddLearnerNode, PeerRole::Voter) => {
            out.peers[i].role = PeerRole::DemotingVoter as i32;
            Ok(true)
        }
        (ConfChangeType::RemoveNode, PeerRole::Learner) => {
            out.peers.retain(|p| p.id != peer.id);
            Ok(false)
        }
        (ConfChangeType::RemoveNode, PeerRole::Voter) => Err(JointRefused::RemoveVoter(peer.id)),
        (ConfChangeType::AddNode, PeerRole::Voter) => Err(JointRefused::AlreadyVoter(peer.id)),
        (ConfChangeType::AddLearnerNode, PeerRole::Learner) => {
            Err(JointRefused::AlreadyLearner(peer.id))
        }
        (_, role) => Err(JointRefused::InTransition {
            peer_id: peer.id,
            role,
        }),
    }
}

/// Refuses a joint state that changes no voter or leaves the region without one.
fn check_joint_outcome(out: &metapb::Region, voters_change: bool) -> Result<(), JointRefused> {
    if !voters_change {
        return Err(JointRefused::LearnersOnly);
    }
    if !out
        .peers
        .iter()
        .any(|p| matches!(p.role(), PeerRole::Voter | PeerRole::IncomingVoter))
    {
        return Err(JointRefused::NoVoter);
    }
    Ok(())
}

/// `region` once it left its joint state, or why it cannot.
pub fn leave_joint(region: &metapb::Region) -> Result<metapb::Region, JointRefused> {
    let mut out = region.clone();
    let changed = proto::membership::settle_joint_roles(&mut out.peers);
    if changed == 0 {
        return Err(JointRefused::NotJoint);
    }
    bump_conf_ver(&mut out, changed);
    Ok(out)
}

/// A peer with this id, store and role (for tests).
#[cfg(test)]
pub(crate) fn test_peer(id: u64, store_id: u64, role: PeerRole) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        role: role as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::test_peer as peer;
    use super::*;

    /// Voters 101, 102, 103 on stores 1-3, learner 104 on store 4, conf version 5.
    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 5,
                version: 1,
            }),
            peers: vec![
                peer(101, 1, PeerRole::Voter),
                peer(102, 2, PeerRole::Voter),
                peer(103, 3, PeerRole::Voter),
                peer(104, 4, PeerRole::Learner),
            ],
            ..Default::default()
        }
    }

    fn roles(r: &metapb::Region) -> Vec<(u64, PeerRole)> {
        r.peers.iter().map(|p| (p.id, p.role())).collect()
    }

    fn conf_ver(r: &metapb::Region) -> u64 {
        r.region_epoch.unwrap().conf_ver
    }

    #[test]
    fn entering_promotes_and_demotes_and_leaving_settles_the_roles() {
        let changes = [
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (
                ConfChangeType::AddLearnerNode,
                peer(103, 3, PeerRole::Learner),
            ),
        ];
        let joint = enter_joint(&region(), &changes).unwrap();
        assert!(in_joint(&joint));
        assert_eq!(
            roles(&joint),
            vec![
                (101, PeerRole::Voter),
                (102, PeerRole::Voter),
                (103, PeerRole::DemotingVoter),
                (104, PeerRole::IncomingVoter),
            ]
        );
        assert_eq!(conf_ver(&joint), 7, "one per change");
        let left = leave_joint(&joint).unwrap();
        assert!(!in_joint(&left));
        assert_eq!(
            roles(&left),
            vec![
                (101, PeerRole::Voter),
                (102, PeerRole::Voter),
                (103, PeerRole::Learner),
                (104, PeerRole::Voter),
            ]
        );
        assert_eq!(conf_ver(&left), 9, "one per peer whose role changed");
    }

    #[test]
    fn new_peers_join_as_incoming_voters_or_learners_and_learners_can_go() {
        let changes = [
            (ConfChangeType::AddNode, peer(105, 5, PeerRole::Voter)),
            (
                ConfChangeType::AddLearnerNode,
                peer(106, 6, PeerRole::Learner),
            ),
            (ConfChangeType::RemoveNode, peer(104, 4, PeerRole::Learner)),
        ];
        let joint = enter_joint(&region(), &changes).unwrap();
        assert_eq!(
            roles(&joint),
            vec![
                (101, PeerRole::Voter),
                (102, PeerRole::Voter),
                (103, PeerRole::Voter),
                (105, PeerRole::IncomingVoter),
                (106, PeerRole::Learner),
            ]
        );
        assert_eq!(conf_ver(&joint), 8);
    }

    #[test]
    fn invalid_joint_changes_are_refused_with_their_reason() {
        let refused =
            |changes: &[PeerChange]| enter_joint(&region(), changes).unwrap_err().to_string();
        let remove_voter = refused(&[
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (ConfChangeType::RemoveNode, peer(103, 3, PeerRole::Voter)),
        ]);
        assert!(
            remove_voter.contains("removes only learners"),
            "{remove_voter}"
        );
        let learners_only = refused(&[
            (
                ConfChangeType::AddLearnerNode,
                peer(105, 5, PeerRole::Learner),
            ),
            (ConfChangeType::RemoveNode, peer(104, 4, PeerRole::Learner)),
        ]);
        assert!(learners_only.contains("only learners"), "{learners_only}");
        let twice = refused(&[
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (
                ConfChangeType::AddLearnerNode,
                peer(104, 4, PeerRole::Learner),
            ),
        ]);
        assert!(twice.contains("more than one change"), "{twice}");
        let same_store = refused(&[(ConfChangeType::AddNode, peer(107, 4, PeerRole::Voter))]);
        assert!(same_store.contains("already holds"), "{same_store}");
        let voter_again = refused(&[(ConfChangeType::AddNode, peer(101, 1, PeerRole::Voter))]);
        assert!(voter_again.contains("already a voter"), "{voter_again}");
        let missing = refused(&[
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (ConfChangeType::RemoveNode, peer(109, 9, PeerRole::Learner)),
        ]);
        assert!(missing.contains("not in the region"), "{missing}");
        let empty = refused(&[]);
        assert!(empty.contains("at least one"), "{empty}");

        let joint = enter_joint(
            &region(),
            &[(ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter))],
        )
        .unwrap();
        let again = enter_joint(
            &joint,
            &[(
                ConfChangeType::AddLearnerNode,
                peer(103, 3, PeerRole::Learner),
            )],
        )
        .unwrap_err();
        assert_eq!(again, JointRefused::AlreadyJoint);
        let not_joint = leave_joint(&region()).unwrap_err().to_string();
        assert!(not_joint.contains("not in a joint state"), "{not_joint}");
    }

    #[test]
    fn the_entry_context_and_raft_change_round_trip() {
        let changes = vec![
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (
                ConfChangeType::AddLearnerNode,
                peer(103, 3, PeerRole::Learner),
            ),
            (ConfChangeType::RemoveNode, peer(105, 5, PeerRole::Learner)),
        ];
        assert_eq!(decode_context(&encode_context(&changes)).unwrap(), changes);
        let cc = conf_change_v2(&changes);
        assert_eq!(cc.enter_joint(), Some(false), "explicit: left on request");
        assert!(matches(&cc, &changes));
        assert!(!matches(&cc, &changes[..2]));
        let leave = conf_change_v2(&[]);
        assert!(leave.leave_joint());
        assert_eq!(decode_context(&encode_context(&[])).unwrap(), vec![]);
        assert!(decode_context(b"\xff\xff").is_err());
    }
}
