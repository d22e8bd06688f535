//! Operators asked for by hand through `POST /pd/api/v1/operators` (pd-ctl's `operator add`):
//! `transfer-peer` moves a region's replica from one store to another with the same steps the
//! checkers use ([`move_steps`]: a learner, then one joint change), `transfer-leader` moves its
//! leadership. [`admin_operator`] is pure: it checks the request against the region and the
//! cluster and returns the operator or why not.

use proto::metapb::PeerRole;

use super::context::Context;
use super::operator::{OpKind, Operator, Step};
use super::operator_controller::Operators;
use super::replica_checker::move_steps;
use crate::cluster::{Liveness, RegionInfo};

/// A hand-made operator request, as PD's HTTP API takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRequest {
    /// Move the replica on `from_store` to `to_store`.
    TransferPeer { from_store: u64, to_store: u64 },
    /// Move the leadership to the voter on `to_store`.
    TransferLeader { to_store: u64 },
}

/// The operator for `request` on `region`; `peer_id` is the id a new peer gets.
pub fn admin_operator(
    request: AdminRequest,
    region: &RegionInfo,
    ctx: &Context<'_>,
    ops: &Operators,
    peer_id: u64,
) -> Result<Operator, String> {
    let id = region.id();
    let up = |store: u64| ctx.liveness(store) == Some(Liveness::Up);
    match request {
        AdminRequest::TransferPeer {
            from_store,
            to_store,
        } => {
            let source = region
                .meta
                .peers
                .iter()
                .find(|p| p.store_id == from_store)
                .ok_or_else(|| format!("region {id} has no peer on store {from_store}"))?;
            if source.role() != PeerRole::Voter {
                return Err(format!(
                    "the peer of region {id} on store {from_store} is a {:?}, not a voter",
                    source.role()
                ));
            }
            if region.meta.peers.iter().any(|p| p.store_id == to_store) {
                return Err(format!(
                    "region {id} already has a peer on store {to_store}"
                ));
            }
            if !up(to_store) {
                return Err(format!("store {to_store} is not up"));
            }
            let (steps, kind) = move_steps(region, ctx, ops, source, to_store, peer_id);
            Ok(Operator::new(
                "admin-move-peer",
                kind,
                region,
                steps,
                ctx.now_ms,
            ))
        }
        AdminRequest::TransferLeader { to_store } => {
            let target = region.meta.peers.iter().find(|p| p.store_id == to_store);
            if target.is_none_or(|p| p.role() != PeerRole::Voter) {
                return Err(format!("region {id} has no voter on store {to_store}"));
            }
            let from_store = region
                .leader
                .map(|l| l.store_id)
                .ok_or_else(|| format!("region {id} has no known leader"))?;
            if from_store == to_store {
                return Err(format!("store {to_store} already leads region {id}"));
            }
            let kind = OpKind {
                leader: true,
                replica: false,
            };
            let steps = vec![Step::TransferLeader {
                from_store,
                to_store,
            }];
            Ok(Operator::new(
                "admin-transfer-leader",
                kind,
                region,
                steps,
                ctx.now_ms,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{joint_move, learner, region, voter, Fixture, FIRST_NEW_PEER};
    use super::*;

    #[test]
    fn admin_operator_table() {
        let mut f = Fixture::new(5);
        let r = region(
            &[voter(1, 1), voter(2, 2), voter(3, 3), learner(4, 4)],
            1,
            4,
        );
        f.report(&r);
        f.kill(5);
        let ops = Operators::default();
        let peer = |from_store, to_store| AdminRequest::TransferPeer {
            from_store,
            to_store,
        };
        let run = |req| admin_operator(req, &r, &f.ctx(), &ops, FIRST_NEW_PEER);
        let op = run(peer(3, 4)).unwrap_err();
        assert!(op.contains("already has a peer on store 4"), "{op}");
        let err = run(peer(4, 5)).unwrap_err();
        assert!(err.contains("not a voter"), "{err}");
        let err = run(peer(9, 5)).unwrap_err();
        assert!(err.contains("no peer on store 9"), "{err}");
        let err = run(peer(3, 5)).unwrap_err();
        assert!(err.contains("store 5 is not up"), "{err}");

        let r3 = region(&[voter(1, 1), voter(2, 2), voter(3, 3)], 1, 5);
        f.report(&r3);
        let op = admin_operator(peer(3, 4), &r3, &f.ctx(), &ops, FIRST_NEW_PEER).unwrap();
        assert_eq!(op.desc, "admin-move-peer");
        assert_eq!(op.steps, joint_move(3, 3, 4, FIRST_NEW_PEER, None));
        let op = admin_operator(peer(1, 4), &r3, &f.ctx(), &ops, FIRST_NEW_PEER).unwrap();
        assert_eq!(op.steps, joint_move(1, 1, 4, FIRST_NEW_PEER, Some(2)));

        let leader = |to_store| AdminRequest::TransferLeader { to_store };
        let op = admin_operator(leader(2), &r3, &f.ctx(), &ops, 0).unwrap();
        assert_eq!(
            op.steps,
            [Step::TransferLeader {
                from_store: 1,
                to_store: 2
            }]
        );
        assert!(admin_operator(leader(1), &r3, &f.ctx(), &ops, 0).is_err());
        assert!(admin_operator(leader(4), &r3, &f.ctx(), &ops, 0).is_err());
    }
}
