//! The shell around [`crate::schedule`] for the region heartbeat stream: [`schedule_region`]
//! runs the [`Scheduler`] for one region (under the caller's view lock, without I/O), counts
//! and logs what happened to operators, and [`put_command`] writes the command into the
//! `RegionHeartbeatResponse` the way PD does (`change_peer` or `transfer_leader`).
//!
//! A region left under-replicated because no store may take its missing replica (none
//! left, or all would break `isolation-level`) is counted in
//! `placement_schedule_checker_events_total` and logged.
//!
//! New peer ids come from the id allocator's current batch ([`BatchIds`]); when the batch is
//! used up the outcome says `starved`, and the stream handler persists a new batch (off the
//! lock) and schedules the region once more.

use proto::eraftpb::ConfChangeType;
use proto::metapb;
use proto::pdpb::{self, RegionHeartbeatResponse};

use crate::cluster::ClusterView;
use crate::id::IdAllocator;
use crate::schedule::{Blocked, Command, Context, OpEvent, OpStatus, Outcome, PeerIds, Scheduler};
use crate::state::{now_ms, Placement};

/// Peer ids from the allocator's persisted batch, never waiting for the disk.
struct BatchIds<'a>(&'a IdAllocator);

impl PeerIds for BatchIds<'_> {
    fn next_peer_id(&mut self) -> Option<u64> {
        self.0.try_alloc()
    }
}

/// Runs the scheduler for `region_id` as `view` shows it; with `new_operators` false only a
/// running operator is advanced. The caller holds the view lock.
pub fn schedule_region(
    state: &Placement,
    view: &ClusterView,
    region_id: u64,
    new_operators: bool,
) -> Outcome {
    let Some(region) = view.regions().get(region_id) else {
        return Outcome::default();
    };
    let settings = state.settings(view);
    let ctx = Context {
        view,
        settings: &settings,
        now_ms: now_ms(),
        started_ms: state.started_ms,
    };
    let mut scheduler = state.scheduler.lock();
    let out = if new_operators {
        scheduler.on_heartbeat(region, &ctx, &mut BatchIds(&state.ids))
    } else {
        scheduler.advance(region, &ctx)
    };
    for event in &out.events {
        record(state, &scheduler, event);
    }
    if let Some(blocked) = out.blocked {
        state
            .metrics
            .checker_events
            .with_label_values(&["replica", blocked.name()])
            .inc();
        let peers = region.meta.peers.len();
        match blocked {
            // Every heartbeat of such a region lands here: the metric is the signal, the
            // log line the detail.
            Blocked::Isolation => tracing::debug!(
                region_id,
                peers,
                isolation_level = %settings.isolation_level,
                "region under-replicated: every candidate store would break isolation-level"
            ),
            Blocked::LowSpace => tracing::debug!(
                region_id,
                peers,
                "region under-replicated: every candidate store is low on space"
            ),
            Blocked::NoTargetStore => {
                tracing::debug!(
                    region_id,
                    peers,
                    "region under-replicated: no store to add to"
                )
            }
        }
    }
    out
}

/// Counts an operator event and logs it.
fn record(state: &Placement, scheduler: &Scheduler, e: &OpEvent) {
    state
        .metrics
        .operators
        .with_label_values(&[e.desc, e.name()])
        .inc();
    let region_id = e.region_id;
    match e.status {
        OpStatus::Running => {
            let steps = scheduler
                .operators
                .get(region_id)
                .map(|op| op.step_strings().join(", "))
                .unwrap_or_default();
            tracing::info!(region_id, desc = e.desc, %steps, "operator created");
        }
        OpStatus::Success => tracing::info!(region_id, desc = e.desc, "operator finished"),
        OpStatus::Timeout => tracing::warn!(region_id, desc = e.desc, "operator timed out"),
        OpStatus::Canceled => {
            let reason = e.reason.as_deref().unwrap_or("");
            tracing::info!(region_id, desc = e.desc, reason, "operator canceled");
        }
    }
}

/// Puts a scheduling command into a heartbeat response.
pub fn put_command(reply: &mut RegionHeartbeatResponse, command: Command) {
    match command {
        Command::ChangePeer { peer, change_type } => {
            reply.change_peer = Some(pdpb::ChangePeer {
                peer: Some(peer),
                change_type: change_type as i32,
            });
        }
        Command::TransferLeader { peer } => {
            reply.transfer_leader = Some(pdpb::TransferLeader {
                peer: Some(peer),
                peers: Vec::new(),
            });
        }
        Command::EnterJoint { promote, demote } => {
            let change =
                |peer: metapb::Peer, role: metapb::PeerRole, ty: ConfChangeType| pdpb::ChangePeer {
                    peer: Some(metapb::Peer {
                        role: role as i32,
                        ..peer
                    }),
                    change_type: ty as i32,
                };
            reply.change_peer_v2 = Some(pdpb::ChangePeerV2 {
                changes: vec![
                    change(promote, metapb::PeerRole::Voter, ConfChangeType::AddNode),
                    change(
                        demote,
                        metapb::PeerRole::Learner,
                        ConfChangeType::AddLearnerNode,
                    ),
                ],
            });
        }
        Command::LeaveJoint => {
            reply.change_peer_v2 = Some(pdpb::ChangePeerV2::default());
        }
    }
}
