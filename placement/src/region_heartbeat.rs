//! A region heartbeat, decided apart from the stream that carries it.
//!
//! [`judge`] checks a heartbeat against the view: what PD refuses (no region, no leader, an
//! unknown store; NOT_BOOTSTRAPPED, which also ends the stream) and otherwise the change it
//! makes and the keyspace split due for the region. [`carry`] picks the one command the answer
//! carries, as PD sends them: the running operator's step first, then a due keyspace split,
//! then a new operator's first step (new operators are only asked for when no split is due,
//! see [`wants_new_operators`]). Both are pure and table-tested; `service::streams` executes
//! the outcome through [`crate::state::Placement::observe`] and the scheduler.

use proto::metapb;
use proto::pdpb::RegionHeartbeatRequest;

use crate::cluster::{ClusterView, RegionInfo};
use crate::error::Error;
use crate::schedule::{Command, Outcome};

/// What to do with one heartbeat.
#[derive(Debug)]
pub enum Verdict {
    /// Answer with `error`; `close` ends the stream.
    Refuse { error: Error, close: bool },
    /// Apply `info` to the view; the stream is bound to `leader`'s store, and the regions
    /// cut at keyspace boundaries by `split_keys` (empty: none due).
    Apply {
        info: RegionInfo,
        leader: metapb::Peer,
        split_keys: Vec<Vec<u8>>,
    },
}

/// Checks `request` against `view`.
pub fn judge(view: &ClusterView, request: &RegionHeartbeatRequest, now_ms: u64) -> Verdict {
    let refuse = |error| Verdict::Refuse {
        error,
        close: false,
    };
    let Some(info) = RegionInfo::from_heartbeat(request, now_ms) else {
        return refuse(Error::invalid("heartbeat without region"));
    };
    let Some(leader) = info.leader else {
        return refuse(Error::invalid("heartbeat without leader"));
    };
    if !view.is_bootstrapped() {
        // PD answers NOT_BOOTSTRAPPED once and closes the stream.
        return Verdict::Refuse {
            error: Error::NotBootstrapped,
            close: true,
        };
    }
    if let Err(e) = view.store(leader.store_id) {
        return refuse(e);
    }
    let split_keys = view.keyspaces().split_keys(&info.meta);
    Verdict::Apply {
        info,
        leader,
        split_keys,
    }
}

/// Whether the scheduler may start a new operator for the region: not while a keyspace split
/// is due (the split goes first).
pub fn wants_new_operators(split_keys: &[Vec<u8>]) -> bool {
    split_keys.is_empty()
}

/// The one command an answer carries.
#[derive(Debug, PartialEq)]
pub enum Carry {
    Nothing,
    Command(Command),
    Split(Vec<Vec<u8>>),
}

/// Picks the command of the answer from what the scheduler said and the split due.
pub fn carry(split_keys: Vec<Vec<u8>>, scheduled: &Outcome) -> Carry {
    match scheduled.command {
        Some(command) => Carry::Command(command),
        None if !split_keys.is_empty() && !scheduled.running => Carry::Split(split_keys),
        None => Carry::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use proto::pdpb;

    use super::*;
    use crate::meta::{MetaWrite, StoredMeta};

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer {
            id,
            store_id,
            ..Default::default()
        }
    }

    /// A bootstrapped view with store 1 and region 2 on it.
    fn view() -> ClusterView {
        let mut view = ClusterView::load(7, &StoredMeta::default());
        let store = metapb::Store {
            id: 1,
            address: "s1:20160".into(),
            ..Default::default()
        };
        let region = metapb::Region {
            id: 2,
            peers: vec![peer(3, 1)],
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            ..Default::default()
        };
        for w in view.plan_bootstrap(&store, &region, 3).unwrap() {
            view.apply(&w);
        }
        view
    }

    fn request(region: bool, leader: Option<metapb::Peer>) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: region.then(|| metapb::Region {
                id: 2,
                peers: vec![peer(3, 1), peer(4, 9)],
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                ..Default::default()
            }),
            leader,
            ..Default::default()
        }
    }

    /// The verdict in a few words: `apply leader 3 splits 0`, `refuse (close): <error>`.
    fn judged(view: &ClusterView, req: &RegionHeartbeatRequest) -> String {
        match judge(view, req, 1_000) {
            Verdict::Refuse { error, close } => {
                format!("refuse{}: {error}", if close { " (close)" } else { "" })
            }
            Verdict::Apply {
                info,
                leader,
                split_keys,
            } => format!(
                "apply region {} leader {} splits {}",
                info.id(),
                leader.id,
                split_keys.len()
            ),
        }
    }

    #[test]
    fn heartbeats_are_refused_as_pd_refuses_them() {
        let ok = view();
        let fresh = ClusterView::load(7, &StoredMeta::default());
        let rows = [
            (
                &ok,
                request(false, Some(peer(3, 1))),
                "refuse: invalid request: heartbeat without region",
            ),
            (
                &ok,
                request(true, None),
                "refuse: invalid request: heartbeat without leader",
            ),
            (
                &fresh,
                request(true, Some(peer(3, 1))),
                "refuse (close): cluster is not bootstrapped",
            ),
            (
                &ok,
                request(true, Some(peer(4, 9))),
                "refuse: invalid store ID 9, not found",
            ),
            // The region covers every key: it is due a split at the default keyspace's
            // raw and transactional bounds.
            (
                &ok,
                request(true, Some(peer(3, 1))),
                "apply region 2 leader 3 splits 4",
            ),
        ];
        for (i, (view, req, want)) in rows.into_iter().enumerate() {
            assert_eq!(judged(view, &req), want, "row {i}");
        }
    }

    #[test]
    fn a_region_across_a_keyspace_boundary_is_due_a_split() {
        let mut view = view();
        let due = |view: &ClusterView| match judge(view, &request(true, Some(peer(3, 1))), 1) {
            Verdict::Apply { split_keys, .. } => split_keys.len(),
            Verdict::Refuse { error, .. } => panic!("refused: {error}"),
        };
        let before = due(&view);
        view.apply(&MetaWrite::Keyspace(proto::keyspacepb::KeyspaceMeta {
            id: 5,
            name: "five".into(),
            ..Default::default()
        }));
        assert_eq!(
            due(&view),
            before + 4,
            "keyspace 5's raw and transactional bounds"
        );
        assert!(!wants_new_operators(&[b"x".to_vec()]));
        assert!(wants_new_operators(&[]));
    }

    #[test]
    fn the_answer_carries_a_running_step_then_a_split_then_a_new_operator() {
        let step = Command::TransferLeader { peer: peer(4, 9) };
        let keys = vec![b"x\x00\x00\x05".to_vec()];
        let outcome = |command: Option<Command>, running: bool| Outcome {
            command,
            running,
            ..Outcome::default()
        };
        let rows = [
            // A running operator's step goes first, a due split waits.
            (
                keys.clone(),
                outcome(Some(step), true),
                Carry::Command(step),
            ),
            // The split is due and nothing runs: the split.
            (
                keys.clone(),
                outcome(None, false),
                Carry::Split(keys.clone()),
            ),
            // An operator runs but has no step now: nothing, the split still waits.
            (keys.clone(), outcome(None, true), Carry::Nothing),
            // No split due: a new operator's first step.
            (vec![], outcome(Some(step), true), Carry::Command(step)),
            (vec![], outcome(None, false), Carry::Nothing),
        ];
        for (i, (keys, outcome, want)) in rows.into_iter().enumerate() {
            assert_eq!(carry(keys, &outcome), want, "row {i}");
        }
    }

    #[test]
    fn observed_heartbeats_change_the_view_and_return_records_to_persist() {
        let mut view = view();
        let Verdict::Apply { info, .. } = judge(&view, &request(true, Some(peer(3, 1))), 1_000)
        else {
            panic!("refused");
        };
        let writes = view
            .observe(crate::cluster::Observed::Region(info))
            .unwrap();
        assert!(
            matches!(writes.as_slice(), [MetaWrite::Region(_)]),
            "{writes:?}"
        );
        assert_eq!(view.regions().get(2).unwrap().meta.peers.len(), 2);
        let stats = pdpb::StoreStats {
            store_id: 1,
            region_count: 1,
            ..Default::default()
        };
        let change = crate::cluster::Observed::StoreStats {
            stats,
            now_ms: 2_000,
        };
        assert!(
            view.observe(change).unwrap().is_empty(),
            "stats are not persisted"
        );
    }
}
