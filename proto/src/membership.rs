//! Region membership rules applied the same way wherever a region's peers change: by stores
//! when they apply a joint change, and by tests that play a store.

use crate::metapb::{Peer, PeerRole};

/// Settles the roles of a joint state being left: incoming voters become voters, demoting
/// voters learners. Returns how many peers changed role (zero: the peers were not joint).
pub fn settle_joint_roles(peers: &mut [Peer]) -> u64 {
    let mut changed = 0;
    for p in peers {
        let role = match p.role() {
            PeerRole::IncomingVoter => PeerRole::Voter,
            PeerRole::DemotingVoter => PeerRole::Learner,
            _ => continue,
        };
        p.role = role as i32;
        changed += 1;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, role: PeerRole) -> Peer {
        Peer {
            id,
            store_id: id,
            role: role as i32,
            ..Default::default()
        }
    }

    #[test]
    fn leaving_a_joint_state_settles_incoming_and_demoting_voters_only() {
        let mut peers = vec![
            peer(1, PeerRole::Voter),
            peer(2, PeerRole::IncomingVoter),
            peer(3, PeerRole::DemotingVoter),
            peer(4, PeerRole::Learner),
        ];
        assert_eq!(settle_joint_roles(&mut peers), 2);
        let roles: Vec<PeerRole> = peers.iter().map(Peer::role).collect();
        assert_eq!(
            roles,
            [
                PeerRole::Voter,
                PeerRole::Voter,
                PeerRole::Learner,
                PeerRole::Learner
            ]
        );
        assert_eq!(settle_joint_roles(&mut peers), 0, "nothing joint is left");
    }
}
