//! The two bidirectional `pdpb.PD` streams.
//!
//! `Tso`: each request is answered in order with `count` equal to the request's and the
//! LARGEST timestamp of its batch (the client hands out `logical - count + 1 ..= logical`). A
//! wrong cluster id or a bad count ends the stream with an error status, as PD does.
//!
//! `RegionHeartbeat`: each heartbeat updates the region and its leader in the cluster view and
//! is answered with a response carrying at most one command, as PD sends them: the current
//! step of the region's running operator ([`super::scheduling`]: `change_peer` to add a
//! learner, promote it or remove a peer, `transfer_leader`), else a split at keyspace
//! boundaries when one is due, else the first step of a new operator. The stream is bound to the leader's store in
//! [`crate::stream_registry::HeartbeatStreams`] so that scheduling can push operators down it.
//! Both streams end when the server shuts down, and with `Unavailable` when this member stops
//! serving as leader (the stores and clients then reconnect to the new leader).

use std::sync::Arc;
use std::time::Instant;

use proto::pdpb::{
    CheckPolicy, RegionHeartbeatRequest, RegionHeartbeatResponse, SplitRegion, Timestamp,
    TsoRequest, TsoResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::BoxStream;
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::scheduling::{put_command, schedule_region};
use super::{check_cluster_id, error_header, ok_header, typed_error_header};
use crate::cluster::Observed;
use crate::error::Error;
use crate::region_heartbeat::{self, Carry, Verdict};
use crate::state::Placement;
use crate::stream_registry::ResponseSender;

/// Serves one TSO stream.
pub fn tso(state: Arc<Placement>, mut inbound: Streaming<TsoRequest>) -> BoxStream<TsoResponse> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let stopped = state.member.stopped_serving();
        tokio::pin!(stopped);
        loop {
            let next = tokio::select! {
                m = inbound.message() => m,
                () = state.shutting_down() => break,
                () = &mut stopped => {
                    let _ = tx.send(Err(Status::unavailable(state.member.not_leader().to_string()))).await;
                    break;
                }
            };
            let request = match next {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "tso stream closed by client");
                    break;
                }
            };
            let reply = tso_one(&state, request).await;
            let failed = reply.is_err();
            if tx.send(reply).await.is_err() || failed {
                break;
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

async fn tso_one(state: &Placement, request: TsoRequest) -> Result<TsoResponse, Status> {
    let start = Instant::now();
    check_cluster_id(state.cluster_id, request.header.as_ref())?;
    let count = request.count;
    let ts = state.allocate_timestamps(count).await.map_err(tso_status)?;
    state.metrics.tso_requests.inc();
    state.metrics.tso_timestamps.inc_by(u64::from(count));
    state.metrics.observe_rpc("Tso", "ok", start.elapsed());
    Ok(TsoResponse {
        header: Some(ok_header(state.cluster_id)),
        count,
        timestamp: Some(Timestamp {
            physical: ts.physical,
            logical: ts.logical,
            suffix_bits: 0,
        }),
    })
}

/// The status a failed timestamp allocation ends a Tso stream with: `Unavailable` when
/// another member must be asked (clients reconnect to the leader), `InvalidArgument` for a
/// bad count.
pub(super) fn tso_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(msg) => Status::invalid_argument(msg),
        e @ (Error::NotLeader { .. } | Error::NoTsoLease(_)) => Status::unavailable(e.to_string()),
        other => Status::unknown(other.to_string()),
    }
}

/// Serves one region heartbeat stream.
pub fn region_heartbeat(
    state: Arc<Placement>,
    mut inbound: Streaming<RegionHeartbeatRequest>,
) -> BoxStream<RegionHeartbeatResponse> {
    let (tx, rx) = mpsc::channel(64);
    let stream_id = state.streams.new_stream_id();
    tokio::spawn(async move {
        let stopped = state.member.stopped_serving();
        tokio::pin!(stopped);
        loop {
            let next = tokio::select! {
                m = inbound.message() => m,
                () = state.shutting_down() => break,
                () = &mut stopped => {
                    let _ = tx.send(Err(Status::unavailable(state.member.not_leader().to_string()))).await;
                    break;
                }
            };
            let request = match next {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, stream_id, "region heartbeat stream closed by client");
                    break;
                }
            };
            if !handle_heartbeat(&state, stream_id, &tx, request).await {
                break;
            }
        }
        state.streams.unbind_stream(stream_id);
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Handles one heartbeat; false ends the stream.
async fn handle_heartbeat(
    state: &Placement,
    stream_id: u64,
    tx: &ResponseSender,
    request: RegionHeartbeatRequest,
) -> bool {
    let start = Instant::now();
    if let Err(status) = check_cluster_id(state.cluster_id, request.header.as_ref()) {
        state
            .metrics
            .region_heartbeats
            .with_label_values(&["cluster_mismatch"])
            .inc();
        let _ = tx.send(Err(status)).await;
        return false;
    }
    let region_id = request.region.as_ref().map_or(0, |r| r.id);
    let store_id = request.leader.as_ref().map_or(0, |l| l.store_id);
    let span = tracing::debug_span!("region_heartbeat", region_id, store_id, stream_id);
    let Applied {
        mut reply,
        keep_going,
        starved,
    } = span.in_scope(|| apply_heartbeat(state, stream_id, tx, &request));
    if starved {
        refill_and_reschedule(state, region_id, &mut reply)
            .instrument(span.clone())
            .await;
    }
    let _enter = span.enter();
    let outcome = match &reply.header.as_ref().and_then(|h| h.error.as_ref()) {
        None => "ok",
        Some(e) => e.r#type().as_str_name(),
    };
    state
        .metrics
        .region_heartbeats
        .with_label_values(&[outcome])
        .inc();
    state
        .metrics
        .observe_rpc("RegionHeartbeat", outcome, start.elapsed());
    drop(_enter);
    tx.send(Ok(reply)).await.is_ok() && keep_going
}

/// The id batch ran out while scheduling: persist a new one (no lock held), then schedule
/// the region again.
async fn refill_and_reschedule(
    state: &Placement,
    region_id: u64,
    reply: &mut RegionHeartbeatResponse,
) {
    if let Err(e) = state.ids.refill().await {
        tracing::warn!(error = %e, "cannot reserve peer ids for scheduling");
        return;
    }
    if reply.split_region.is_some() {
        return;
    }
    let view = state.view();
    if let Some(command) = schedule_region(state, &view, region_id, true).command {
        put_command(reply, command);
    }
}

/// What applying one heartbeat produced.
struct Applied {
    reply: RegionHeartbeatResponse,
    /// False ends the stream.
    keep_going: bool,
    /// Scheduling needed a peer id and the allocator's batch was used up.
    starved: bool,
}

impl From<(RegionHeartbeatResponse, bool)> for Applied {
    fn from((reply, keep_going): (RegionHeartbeatResponse, bool)) -> Self {
        Applied {
            reply,
            keep_going,
            starved: false,
        }
    }
}

/// Applies one heartbeat as [`region_heartbeat::judge`] says, asks the scheduler for a
/// command, and answers with what [`region_heartbeat::carry`] picks.
fn apply_heartbeat(
    state: &Placement,
    stream_id: u64,
    tx: &ResponseSender,
    request: &RegionHeartbeatRequest,
) -> Applied {
    let cluster_id = state.cluster_id;
    let fail = |e: &Error| RegionHeartbeatResponse {
        header: Some(error_header(cluster_id, e)),
        ..Default::default()
    };
    let verdict = region_heartbeat::judge(&state.view(), request, crate::state::now_ms());
    let (info, leader, split_keys) = match verdict {
        Verdict::Refuse { error, close } => return (fail(&error), !close).into(),
        Verdict::Apply {
            info,
            leader,
            split_keys,
        } => (info, leader, split_keys),
    };
    state.streams.bind(leader.store_id, stream_id, tx);
    let epoch = info.meta.region_epoch;
    let region_id = info.id();
    let new_operators = region_heartbeat::wants_new_operators(&split_keys);
    let scheduled = state.observe(Observed::Region(info), |view| {
        schedule_region(state, view, region_id, new_operators)
    });
    match scheduled {
        Ok(scheduled) => {
            let mut reply = RegionHeartbeatResponse {
                header: Some(ok_header(cluster_id)),
                region_id,
                region_epoch: epoch,
                target_peer: Some(leader),
                ..Default::default()
            };
            match region_heartbeat::carry(split_keys, &scheduled) {
                Carry::Command(command) => put_command(&mut reply, command),
                Carry::Split(keys) => {
                    reply.split_region = Some(SplitRegion {
                        policy: CheckPolicy::Usekey as i32,
                        keys,
                    })
                }
                Carry::Nothing => {}
            }
            Applied {
                reply,
                keep_going: true,
                starved: scheduled.starved,
            }
        }
        Err(e @ Error::StaleRegion { .. }) => {
            tracing::debug!(error = %e, "stale region heartbeat ignored");
            let header =
                typed_error_header(cluster_id, proto::pdpb::ErrorType::Unknown, e.to_string());
            let reply = RegionHeartbeatResponse {
                header: Some(header),
                region_id,
                ..Default::default()
            };
            (reply, true).into()
        }
        Err(e) => (fail(&e), true).into(),
    }
}
