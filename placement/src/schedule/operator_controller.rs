//! [`Operators`]: the running operators, at most one per region, and the limits on how many
//! may run at once (PD's operator controller).
//!
//! Limits: `replica-schedule-limit` replica operators in the cluster, `store-add-peer-limit`
//! operators adding a peer to any one store, `leader-schedule-limit` leader-only operators.
//! An operator that runs out of time is dropped, either when its region next reports or by
//! [`Operators::expire`], whichever comes first; the checkers then look at the region afresh.
//! Ended operators are kept in a short history for `GetOperator` and the HTTP API.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::context::Settings;
use super::operator::{Command, OpStatus, Operator, Progress};
use crate::cluster::RegionInfo;

/// Ended operators remembered for status queries.
const HISTORY: usize = 1024;

/// Something that happened to an operator, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpEvent {
    pub region_id: u64,
    pub desc: &'static str,
    /// `Running` when created, else how it ended.
    pub status: OpStatus,
    /// Why it was canceled.
    pub reason: Option<String>,
}

impl OpEvent {
    fn new(op: &Operator, reason: Option<String>) -> Self {
        OpEvent {
            region_id: op.region_id,
            desc: op.desc,
            status: op.status,
            reason,
        }
    }

    /// The metric label of the event: `create`, `finish`, `timeout` or `cancel` (PD's).
    pub fn name(&self) -> &'static str {
        match self.status {
            OpStatus::Running => "create",
            OpStatus::Success => "finish",
            OpStatus::Timeout => "timeout",
            OpStatus::Canceled => "cancel",
        }
    }
}

/// Why an operator was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    RegionBusy,
    ReplicaLimit,
    StoreLimit(u64),
    LeaderLimit,
}

/// What to do for a region's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// No operator: the checkers may make one.
    Idle,
    Send(Command),
    Wait,
    /// The operator ended with this heartbeat.
    Ended(OpEvent),
}

/// Running operators and a short history of ended ones.
#[derive(Debug, Default)]
pub struct Operators {
    running: BTreeMap<u64, Operator>,
    ended: HashMap<u64, Operator>,
    ended_order: VecDeque<u64>,
    /// A test hook (placement's fault injection only): while set, no operator leaves a joint
    /// state; each waits in it, as one whose leave command keeps getting lost would.
    pub hold_joint: bool,
}

impl Operators {
    pub fn get(&self, region_id: u64) -> Option<&Operator> {
        self.running.get(&region_id)
    }

    /// The running operator of a region, else the last one that ended.
    pub fn latest(&self, region_id: u64) -> Option<&Operator> {
        self.running
            .get(&region_id)
            .or_else(|| self.ended.get(&region_id))
    }

    /// Running operators by region id.
    pub fn running(&self) -> impl Iterator<Item = &Operator> {
        self.running.values()
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Running replica operators.
    pub fn replica_count(&self) -> usize {
        self.running().filter(|op| op.kind.replica).count()
    }

    /// Running leader-only operators (balance).
    pub fn leader_count(&self) -> usize {
        self.running()
            .filter(|op| op.kind.leader && !op.kind.replica)
            .count()
    }

    /// Running operators that add a peer to `store_id`.
    pub fn adding_to(&self, store_id: u64) -> usize {
        self.running().filter(|op| op.adds_to(store_id)).count()
    }

    /// Net leaders running operators will move onto `store_id`.
    pub fn leader_influence(&self, store_id: u64) -> i64 {
        self.running().map(|op| op.leader_influence(store_id)).sum()
    }

    /// Whether `op` may start now.
    pub fn admit(&self, op: &Operator, settings: &Settings) -> Result<(), Rejected> {
        if self.running.contains_key(&op.region_id) {
            return Err(Rejected::RegionBusy);
        }
        if op.kind.replica {
            if self.replica_count() >= settings.replica_schedule_limit {
                return Err(Rejected::ReplicaLimit);
            }
            for step in &op.steps {
                if let super::operator::Step::AddLearner { store_id, .. } = step {
                    if self.adding_to(*store_id) >= settings.store_add_peer_limit {
                        return Err(Rejected::StoreLimit(*store_id));
                    }
                }
            }
        } else if op.kind.leader && self.leader_count() >= settings.leader_schedule_limit {
            return Err(Rejected::LeaderLimit);
        }
        Ok(())
    }

    /// Starts `op` if [`Operators::admit`] allows it.
    pub fn add(&mut self, op: Operator, settings: &Settings) -> Result<OpEvent, Rejected> {
        self.admit(&op, settings)?;
        let event = OpEvent::new(&op, None);
        self.running.insert(op.region_id, op);
        Ok(event)
    }

    /// Checks the region's operator against its heartbeat.
    pub fn dispatch(&mut self, region: &RegionInfo, now_ms: u64) -> Dispatch {
        let Some(op) = self.running.get_mut(&region.id()) else {
            return Dispatch::Idle;
        };
        match op.check(region, now_ms) {
            Progress::Send(Command::LeaveJoint) if self.hold_joint => Dispatch::Wait,
            Progress::Send(command) => Dispatch::Send(command),
            Progress::Wait => Dispatch::Wait,
            Progress::Ended(_, reason) => match self.finish(region.id()) {
                Some(op) => Dispatch::Ended(OpEvent::new(&op, reason)),
                None => Dispatch::Idle,
            },
        }
    }

    /// Ends every operator out of time at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Vec<OpEvent> {
        let late: Vec<u64> = self
            .running()
            .filter(|op| op.is_timed_out(now_ms))
            .map(|op| op.region_id)
            .collect();
        late.into_iter()
            .filter_map(|id| {
                self.running.get_mut(&id)?.status = OpStatus::Timeout;
                Some(OpEvent::new(&self.finish(id)?, None))
            })
            .collect()
    }

    /// Cancels the region's operator (the region is gone or an operator asked).
    pub fn cancel(&mut self, region_id: u64, reason: &str) -> Option<OpEvent> {
        self.running.get_mut(&region_id)?.status = OpStatus::Canceled;
        let op = self.finish(region_id)?;
        Some(OpEvent::new(&op, Some(reason.to_owned())))
    }

    /// Moves an operator from running to the history.
    fn finish(&mut self, region_id: u64) -> Option<Operator> {
        let op = self.running.remove(&region_id)?;
        if self.ended.insert(region_id, op.clone()).is_none() {
            self.ended_order.push_back(region_id);
        }
        while self.ended_order.len() > HISTORY {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
        Some(op)
    }
}
