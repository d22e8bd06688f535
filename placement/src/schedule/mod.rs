//! Scheduling: the pure core that turns region heartbeats into operators, after PD's
//! `pkg/schedule`. No tokio, no I/O: events in, operators out.
//!
//! - [`operator`]: [`Operator`], its [`Step`]s and the [`Command`] each sends;
//! - [`operator_controller`]: [`Operators`], the running operators (one per region) and their limits;
//! - [`context`]: [`Context`], the cluster as the checkers see it, and [`Settings`];
//! - [`replica_checker`]: adds, promotes, replaces and removes replicas;
//! - [`leader_balance`]: moves leaders from the busiest store to the idlest;
//! - [`evict_leader`]: the named scheduler set ([`SchedulerSet`]) and evict-leader;
//! - [`region_balance`]: moves replicas from the fullest store to the emptiest;
//! - [`fault_tolerance`]: how many failure domains per location level can be lost;
//! - [`admin`]: operators asked for by hand (`transfer-peer`, `transfer-leader`).
//!
//! [`Scheduler::on_heartbeat`] is what the region heartbeat handler calls, once the heartbeat
//! is applied to the cluster view: it advances the region's operator, or asks the checkers for
//! a new one, and returns the command to put in the heartbeat response.
//! [`Scheduler::advance`] only advances a running operator; the handler uses it while a
//! keyspace split is due, so that a running operator finishes first and the split goes before
//! any new one.

pub mod admin;
pub mod context;
pub mod evict_leader;
pub mod fault_tolerance;
pub mod leader_balance;
pub mod operator;
pub mod operator_controller;
pub mod region_balance;
pub mod replica_checker;

pub use context::{Context, PeerHealth, Settings};
pub use evict_leader::SchedulerSet;
pub use operator::{Command, OpKind, OpStatus, Operator, Step};
pub use operator_controller::{Dispatch, OpEvent, Operators, Rejected};
pub use replica_checker::{Blocked, PeerIds};

use crate::cluster::RegionInfo;

/// What one heartbeat led to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The command for the region's leader, if any.
    pub command: Option<Command>,
    /// Operators created, finished, timed out or canceled.
    pub events: Vec<OpEvent>,
    /// A checker wanted a new peer id and none was at hand (refill the allocator, retry).
    pub starved: bool,
    /// The region has a running operator after this heartbeat.
    pub running: bool,
    /// The region lacks a replica that no store can take (for a metric and the log).
    pub blocked: Option<Blocked>,
}

/// The running operators; settings come with each [`Context`].
#[derive(Debug, Default)]
pub struct Scheduler {
    pub operators: Operators,
}

/// Counts the ids asked for, to tell a starved allocator from a checker with nothing to do.
struct CountingIds<'a> {
    inner: &'a mut dyn PeerIds,
    starved: bool,
}

impl PeerIds for CountingIds<'_> {
    fn next_peer_id(&mut self) -> Option<u64> {
        let id = self.inner.next_peer_id();
        self.starved |= id.is_none();
        id
    }
}

impl Scheduler {
    /// Advances the region's running operator only, making none: expires late operators and
    /// says what the running one needs sent. Used while the region has a split due, which
    /// goes before any new operator.
    pub fn advance(&mut self, region: &RegionInfo, ctx: &Context<'_>) -> Outcome {
        let mut out = Outcome {
            events: self.operators.expire(ctx.now_ms),
            ..Outcome::default()
        };
        // A store an operator still needs went away (disconnected, down, draining): the
        // operator cannot finish, so it makes room for the checkers at once rather than at
        // its timeout.
        let gone = self.operators.get(region.id()).and_then(|op| {
            op.unavailable_target(|s| ctx.liveness(s) == Some(crate::cluster::Liveness::Up))
        });
        if let Some(store) = gone {
            let reason = format!("store {store} the operator needs is no longer up");
            out.events
                .extend(self.operators.cancel(region.id(), &reason));
        }
        match self.operators.dispatch(region, ctx.now_ms) {
            Dispatch::Send(command) => out.command = Some(command),
            Dispatch::Ended(event) => out.events.push(event),
            Dispatch::Wait | Dispatch::Idle => {}
        }
        out.running = self.operators.get(region.id()).is_some();
        out
    }

    /// Handles a region heartbeat already applied to `ctx.view`: expires late operators,
    /// advances the region's operator or makes a new one, and says what to send.
    pub fn on_heartbeat(
        &mut self,
        region: &RegionInfo,
        ctx: &Context<'_>,
        ids: &mut dyn PeerIds,
    ) -> Outcome {
        let mut out = self.advance(region, ctx);
        if out.running {
            return out;
        }
        let mut counting = CountingIds {
            inner: ids,
            starved: false,
        };
        let (op, blocked) = self.check(region, ctx, &mut counting);
        out.starved = counting.starved;
        out.blocked = blocked;
        let Some(op) = op else {
            return out;
        };
        match self.operators.add(op, ctx.settings) {
            Ok(created) => out.events.push(created),
            Err(rejected) => {
                tracing::debug!(region_id = region.id(), ?rejected, "operator not admitted");
                return out;
            }
        }
        out.running = true;
        if let Dispatch::Send(command) = self.operators.dispatch(region, ctx.now_ms) {
            out.command = Some(command);
        }
        out
    }

    /// The checkers in order: replicas first, then evict-leader, leader balance and region
    /// balance. Also says why the replica checker could not add a missing replica.
    fn check(
        &self,
        region: &RegionInfo,
        ctx: &Context<'_>,
        ids: &mut dyn PeerIds,
    ) -> (Option<Operator>, Option<Blocked>) {
        let ops = &self.operators;
        let mut blocked = None;
        if ops.replica_count() < ctx.settings.replica_schedule_limit {
            let checked = replica_checker::check_region(region, ctx, ops, ids);
            if checked.op.is_some() {
                return (checked.op, None);
            }
            blocked = checked.blocked;
        }
        (self.check_balance(region, ctx, ids), blocked)
    }

    /// Evict-leader, leader balance and region balance, in that order.
    fn check_balance(
        &self,
        region: &RegionInfo,
        ctx: &Context<'_>,
        ids: &mut dyn PeerIds,
    ) -> Option<Operator> {
        let ops = &self.operators;
        let set = ctx.schedulers();
        if ops.leader_count() < ctx.settings.leader_schedule_limit {
            if let Some(op) = evict_leader::check(region, ctx, ops, &set.evict_leader) {
                return Some(op);
            }
            if set.balance_leader {
                if let Some(op) = leader_balance::check(region, ctx, ops) {
                    return Some(op);
                }
            }
        }
        if set.balance_region && ops.replica_count() < ctx.settings.replica_schedule_limit {
            return region_balance::check(region, ctx, ops, ids);
        }
        None
    }
}

#[cfg(test)]
mod tests;
