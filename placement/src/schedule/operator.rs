//! [`Operator`]: a planned change to one region, as a list of [`Step`]s executed one at a time
//! by the region's leader, after PD's `pkg/schedule/operator`.
//!
//! Placement never hears that a store finished a step; it reads the result off the region's
//! next heartbeat. [`Step::state`] decides from the reported region whether a step is done,
//! still to be sent ([`Command`]), being worked on by the store (a learner catching up), or
//! impossible. [`Operator::check`] walks past every finished step and says what to send next;
//! the current step's command is re-sent with every heartbeat until the region shows it done,
//! as PD does, so a lost response only delays the operator.
//!
//! A replica move never adds a voter next to the one it replaces: the new peer joins as a
//! learner, then one joint-consensus change ([`Step::EnterJoint`], PD's `ChangePeerV2Enter`)
//! promotes it and demotes the old voter together, [`Step::LeaveJoint`] leaves the joint
//! state, and the demoted learner is removed. While joint, every commit needs a majority of
//! both the old and the new voter sets, so a failure that either set survives alone (one
//! failure domain, when both are spread across domains) cannot take the region's quorum, as a
//! 4-voter step between "add" and "remove" could.

use std::fmt;
use std::time::Duration;

use proto::eraftpb::ConfChangeType;
use proto::metapb::{self, PeerRole};
use proto::pdpb::OperatorStatus;

use crate::cluster::RegionInfo;

/// Time for a new learner to be created and catch up (snapshot and log).
pub const ADD_LEARNER_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for a conf change or leader transfer to be applied and reported.
pub const FAST_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// One indivisible change, sent to the region's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Add a learner with this peer id on the store; done once it is no longer pending.
    AddLearner { store_id: u64, peer_id: u64 },
    /// Make the learner a voter.
    PromoteLearner { store_id: u64, peer_id: u64 },
    /// Remove the peer on the store (never the leader).
    RemovePeer { store_id: u64, peer_id: u64 },
    /// Move leadership to the voter on `to_store`.
    TransferLeader { from_store: u64, to_store: u64 },
    /// Enter a joint state that promotes the learner `promote` and demotes the voter `demote`
    /// (never the leader) in one conf change.
    EnterJoint {
        promote: (u64, u64),
        demote: (u64, u64),
    },
    /// Leave the joint state: incoming voters become voters, demoting voters learners.
    LeaveJoint,
}

/// What the leader is asked to do, as `RegionHeartbeatResponse` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    ChangePeer {
        peer: metapb::Peer,
        change_type: ConfChangeType,
    },
    TransferLeader {
        peer: metapb::Peer,
    },
    /// `ChangePeerV2` promoting `promote` (AddNode) and demoting `demote` (AddLearnerNode).
    EnterJoint {
        promote: metapb::Peer,
        demote: metapb::Peer,
    },
    /// `ChangePeerV2` with no changes.
    LeaveJoint,
}

/// Where a step stands according to a region report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    Done,
    /// Not started, or its command was lost: send it.
    Send(Command),
    /// The store is working on it (a learner catching up): nothing to send.
    Wait,
    /// The region changed so that the step cannot happen.
    Failed(String),
}

fn peer(id: u64, store_id: u64, role: PeerRole) -> metapb::Peer {
    metapb::Peer {
        id,
        store_id,
        role: role as i32,
        is_witness: false,
    }
}

/// The peer of `region` on `store_id`.
pub fn store_peer(region: &RegionInfo, store_id: u64) -> Option<&metapb::Peer> {
    region.meta.peers.iter().find(|p| p.store_id == store_id)
}

fn is_pending(region: &RegionInfo, peer_id: u64) -> bool {
    region.pending_peers.iter().any(|p| p.id == peer_id)
}

/// Whether some peer of `region` is an incoming or demoting voter.
pub fn in_joint_state(region: &RegionInfo) -> bool {
    region
        .meta
        .peers
        .iter()
        .any(|p| matches!(p.role(), PeerRole::IncomingVoter | PeerRole::DemotingVoter))
}

/// The peer with id `peer_id` on `store_id`, if the region has it.
fn exact_peer(region: &RegionInfo, (store_id, peer_id): (u64, u64)) -> Option<&metapb::Peer> {
    store_peer(region, store_id).filter(|p| p.id == peer_id)
}

fn enter_joint_state(region: &RegionInfo, promote: (u64, u64), demote: (u64, u64)) -> StepState {
    let (Some(up), Some(down)) = (exact_peer(region, promote), exact_peer(region, demote)) else {
        return StepState::Failed(format!(
            "peer {} or {} of the joint change is gone",
            promote.1, demote.1
        ));
    };
    match (up.role(), down.role()) {
        (
            PeerRole::IncomingVoter | PeerRole::Voter,
            PeerRole::DemotingVoter | PeerRole::Learner,
        ) => StepState::Done,
        (PeerRole::Learner, PeerRole::Voter) if in_joint_state(region) => StepState::Wait,
        (PeerRole::Learner, PeerRole::Voter) if region.leader.is_some_and(|l| l.id == down.id) => {
            StepState::Failed(format!("voter {} to demote is the leader", down.id))
        }
        (PeerRole::Learner, PeerRole::Voter) => StepState::Send(Command::EnterJoint {
            promote: *up,
            demote: *down,
        }),
        (a, b) => StepState::Failed(format!(
            "peer {} is {a:?} and peer {} is {b:?}: not a learner and a voter",
            up.id, down.id
        )),
    }
}

impl Step {
    /// How long the step may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Step::AddLearner { .. } => ADD_LEARNER_TIMEOUT,
            _ => FAST_STEP_TIMEOUT,
        }
    }

    /// The step's state according to `region`.
    pub fn state(&self, region: &RegionInfo) -> StepState {
        match *self {
            Step::AddLearner { store_id, peer_id } => match store_peer(region, store_id) {
                None => StepState::Send(Command::ChangePeer {
                    peer: peer(peer_id, store_id, PeerRole::Learner),
                    change_type: ConfChangeType::AddLearnerNode,
                }),
                Some(p) if p.id != peer_id => StepState::Failed(format!(
                    "store {store_id} already holds peer {} of the region",
                    p.id
                )),
                Some(_) if is_pending(region, peer_id) => StepState::Wait,
                Some(_) => StepState::Done,
            },
            Step::PromoteLearner { store_id, peer_id } => match store_peer(region, store_id) {
                Some(p) if p.id == peer_id => match p.role() {
                    PeerRole::Voter => StepState::Done,
                    PeerRole::Learner => StepState::Send(Command::ChangePeer {
                        peer: peer(peer_id, store_id, PeerRole::Voter),
                        change_type: ConfChangeType::AddNode,
                    }),
                    PeerRole::IncomingVoter | PeerRole::DemotingVoter => StepState::Wait,
                },
                _ => StepState::Failed(format!("learner {peer_id} is gone from store {store_id}")),
            },
            Step::RemovePeer { store_id, peer_id } => match store_peer(region, store_id) {
                Some(p) if p.id == peer_id => {
                    if region.leader.is_some_and(|l| l.id == peer_id) {
                        StepState::Failed(format!("peer {peer_id} to remove is the leader"))
                    } else {
                        StepState::Send(Command::ChangePeer {
                            peer: *p,
                            change_type: ConfChangeType::RemoveNode,
                        })
                    }
                }
                _ => StepState::Done,
            },
            Step::EnterJoint { promote, demote } => enter_joint_state(region, promote, demote),
            Step::LeaveJoint if in_joint_state(region) => StepState::Send(Command::LeaveJoint),
            Step::LeaveJoint => StepState::Done,
            Step::TransferLeader { to_store, .. } => {
                if region.leader.is_some_and(|l| l.store_id == to_store) {
                    return StepState::Done;
                }
                match store_peer(region, to_store) {
                    Some(p) if p.role() == PeerRole::Voter => {
                        StepState::Send(Command::TransferLeader { peer: *p })
                    }
                    _ => StepState::Failed(format!("store {to_store} holds no voter to lead")),
                }
            }
        }
    }

    /// Whether the step puts a new peer on `store_id`.
    pub fn adds_to(&self, store_id: u64) -> bool {
        matches!(self, Step::AddLearner { store_id: s, .. } if *s == store_id)
    }
}

/// PD's wording of each step (`operator.String()`).
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::AddLearner { store_id, peer_id } => {
                write!(f, "add learner peer {peer_id} on store {store_id}")
            }
            Step::PromoteLearner { store_id, peer_id } => {
                write!(
                    f,
                    "promote learner peer {peer_id} on store {store_id} to voter"
                )
            }
            Step::RemovePeer { store_id, .. } => write!(f, "remove peer on store {store_id}"),
            Step::TransferLeader {
                from_store,
                to_store,
            } => write!(
                f,
                "transfer leader from store {from_store} to store {to_store}"
            ),
            Step::EnterJoint { promote, demote } => write!(
                f,
                "use joint consensus, promote learner peer {} on store {} to voter, \
                 demote voter peer {} on store {} to learner",
                promote.1, promote.0, demote.1, demote.0
            ),
            Step::LeaveJoint => write!(f, "leave joint state"),
        }
    }
}

/// What an operator touches, as PD's `OpKind` flags name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpKind {
    pub leader: bool,
    /// Moves region replicas (PD's `region` and `replica` flags together).
    pub replica: bool,
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.leader, "leader"),
            (self.replica, "region"),
            (self.replica, "replica"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        f.write_str(&names.join(","))
    }
}

/// Where an operator is, as PD's `OpStatus` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpStatus {
    Running,
    Success,
    Timeout,
    /// The region changed under it (split, unexpected peer, leader to remove).
    Canceled,
}

impl OpStatus {
    /// The name PD's HTTP API shows.
    pub fn name(self) -> &'static str {
        match self {
            OpStatus::Running => "STARTED",
            OpStatus::Success => "SUCCESS",
            OpStatus::Timeout => "TIMEOUT",
            OpStatus::Canceled => "CANCELED",
        }
    }

    /// The status `GetOperator` answers with.
    pub fn to_pd(self) -> OperatorStatus {
        match self {
            OpStatus::Running => OperatorStatus::Running,
            OpStatus::Success => OperatorStatus::Success,
            OpStatus::Timeout => OperatorStatus::Timeout,
            OpStatus::Canceled => OperatorStatus::Cancel,
        }
    }
}

/// The outcome of [`Operator::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Send this command for the current step.
    Send(Command),
    /// The current step is in progress at the store.
    Wait,
    /// Ended with this status (not `Running`); the reason for a cancel.
    Ended(OpStatus, Option<String>),
}

/// Steps for one region, run in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub region_id: u64,
    /// PD's operator description (`add-replica`, `balance-leader`, ...).
    pub desc: &'static str,
    pub kind: OpKind,
    /// The region's epoch when the operator was made; a split or merge cancels it.
    pub epoch: metapb::RegionEpoch,
    pub steps: Vec<Step>,
    /// Index of the first step not yet seen done.
    pub current: usize,
    pub created_ms: u64,
    pub timeout: Duration,
    pub status: OpStatus,
}

impl Operator {
    pub fn new(
        desc: &'static str,
        kind: OpKind,
        region: &RegionInfo,
        steps: Vec<Step>,
        now_ms: u64,
    ) -> Self {
        Operator {
            region_id: region.id(),
            desc,
            kind,
            epoch: region.epoch(),
            timeout: steps.iter().map(Step::timeout).sum(),
            steps,
            current: 0,
            created_ms: now_ms,
            status: OpStatus::Running,
        }
    }

    /// The first step `region` does not show done, from `current` on, and its state.
    fn first_open(&self, region: &RegionInfo) -> Option<(usize, StepState)> {
        (self.current..self.steps.len())
            .map(|i| (i, self.steps[i].state(region)))
            .find(|(_, state)| *state != StepState::Done)
    }

    /// The step to send for `region` now, if any (none when finished or waiting).
    pub fn next_step(&self, region: &RegionInfo) -> Option<Step> {
        match self.first_open(region) {
            Some((i, StepState::Send(_))) => Some(self.steps[i]),
            _ => None,
        }
    }

    /// Whether the operator has run out of time at `now_ms`.
    pub fn is_timed_out(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.created_ms) >= self.timeout.as_millis() as u64
    }

    /// Advances past the steps `region` shows done and says what to do next. Finishing wins
    /// over timing out; a region split or merged since creation cancels the operator.
    pub fn check(&mut self, region: &RegionInfo, now_ms: u64) -> Progress {
        if self.status != OpStatus::Running {
            return Progress::Ended(self.status, None);
        }
        if region.epoch().version != self.epoch.version {
            self.status = OpStatus::Canceled;
            return Progress::Ended(self.status, Some("region split or merged".to_owned()));
        }
        let open = self.first_open(region);
        self.current = open.as_ref().map_or(self.steps.len(), |(i, _)| *i);
        let progress = match open {
            None => {
                self.status = OpStatus::Success;
                return Progress::Ended(self.status, None);
            }
            Some((_, StepState::Failed(reason))) => {
                self.status = OpStatus::Canceled;
                return Progress::Ended(self.status, Some(reason));
            }
            Some((_, StepState::Send(command))) => Progress::Send(command),
            Some((_, StepState::Wait | StepState::Done)) => Progress::Wait,
        };
        if self.is_timed_out(now_ms) {
            self.status = OpStatus::Timeout;
            return Progress::Ended(self.status, None);
        }
        progress
    }

    /// A store that a step still to come needs alive (a new peer's, or a leader's target)
    /// and that `up` says is not: the operator cannot finish.
    pub fn unavailable_target(&self, up: impl Fn(u64) -> bool) -> Option<u64> {
        self.steps[self.current.min(self.steps.len())..]
            .iter()
            .filter_map(|s| match *s {
                Step::AddLearner { store_id, .. } | Step::PromoteLearner { store_id, .. } => {
                    Some(store_id)
                }
                Step::EnterJoint { promote, .. } => Some(promote.0),
                Step::TransferLeader { to_store, .. } => Some(to_store),
                Step::RemovePeer { .. } | Step::LeaveJoint => None,
            })
            .find(|store| !up(*store))
    }

    /// Whether any step puts a new peer on `store_id`.
    pub fn adds_to(&self, store_id: u64) -> bool {
        self.steps.iter().any(|s| s.adds_to(store_id))
    }

    /// Leaders the operator will move onto (+1) or off (-1) `store_id` when it finishes.
    pub fn leader_influence(&self, store_id: u64) -> i64 {
        self.steps[self.current.min(self.steps.len())..]
            .iter()
            .map(|s| match s {
                Step::TransferLeader { to_store, .. } if *to_store == store_id => 1,
                Step::TransferLeader { from_store, .. } if *from_store == store_id => -1,
                _ => 0,
            })
            .sum()
    }

    /// The steps as PD words them.
    pub fn step_strings(&self) -> Vec<String> {
        self.steps.iter().map(Step::to_string).collect()
    }
}
