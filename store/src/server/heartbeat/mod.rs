//! Heartbeats to placement, and the operators it answers with.
//!
//! Each region this store leads is reported periodically and whenever
//! leadership or shape changes; the store's own statistics go out on their
//! own interval, with the disk monitor's capacity, available and used
//! bytes. A `split_region` operator in a heartbeat answer is carried
//! out here: new ids from placement, the split proposed through raft, the
//! result reported back. When placement's leader changes, the region stream
//! ends (or the client has moved on); it is reopened on the new leader at
//! once, with a growing pause if it keeps failing, and every led region is
//! reported again so the new leader learns them all.

mod stream;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use proto::{metapb, pdpb};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::placement_client::{PlacementClient, PlacementError};
use crate::disk::DiskState;
use crate::engine::{Engine, CF_DEFAULT, CF_WRITE};
use crate::raftstore::cmd::{BatchSplit, RaftCmd, SplitSpec};
use crate::raftstore::membership;
use crate::raftstore::split_check::{self, SplitLimits};
use crate::raftstore::{ProposeError, Router, StoreMeta};
use raft::prelude::ConfChangeType;
use std::sync::atomic::Ordering;
use stream::{Action, Event, StreamMachine};

pub struct HeartbeatConfig {
    pub region_interval: Duration,
    pub store_interval: Duration,
    pub split_check_interval: Duration,
    pub split_limits: SplitLimits,
}

/// What the heartbeat task works with.
pub struct Heartbeat {
    pub placement: PlacementClient,
    pub store: metapb::Store,
    pub engine: Engine,
    pub router: Router,
    pub meta: Arc<RwLock<StoreMeta>>,
    pub changed: Arc<Notify>,
    pub cfg: HeartbeatConfig,
    /// Regions split here whose new layout placement has not acknowledged yet: their
    /// narrowed range is not sent in heartbeats until ReportBatchSplit is answered, so
    /// placement never sees the parent shrink before it knows the regions that took over the
    /// rest (which would leave a hole in its key space).
    pub reporting_splits: Mutex<HashSet<u64>>,
    /// The disk monitor's latest look: capacity, available and used bytes.
    pub disk: Arc<DiskState>,
}

/// Approximate bytes of a region's data (transactional keys, encoded bounds).
fn approximate_size(engine: &Engine, region: &metapb::Region) -> u64 {
    let mut start = vec![b't'];
    start.extend_from_slice(&region.start_key);
    let end = if region.end_key.is_empty() {
        vec![b'u']
    } else {
        let mut e = vec![b't'];
        e.extend_from_slice(&region.end_key);
        e
    };
    [CF_DEFAULT, CF_WRITE]
        .iter()
        .map(|cf| engine.approximate_size(cf, &start, &end).unwrap_or(0))
        .sum()
}

/// The open region heartbeat stream.
struct Stream {
    tx: mpsc::Sender<pdpb::RegionHeartbeatRequest>,
    rx: mpsc::Receiver<pdpb::RegionHeartbeatResponse>,
}

impl HeartbeatConfig {
    /// The intervals and split limits of the store's configuration.
    pub fn of(cfg: &crate::config::Config) -> Self {
        let rs = &cfg.raftstore;
        HeartbeatConfig {
            region_interval: Duration::from_millis(rs.region_heartbeat_interval_ms),
            store_interval: Duration::from_millis(rs.store_heartbeat_interval_ms),
            split_check_interval: Duration::from_millis(rs.split_check_interval_ms),
            split_limits: SplitLimits {
                max_size: rs.region_max_size,
                max_keys: rs.region_max_keys,
            },
        }
    }
}

impl Driver {
    async fn run(&mut self) -> Result<(), Stopped> {
        let cfg = &self.hb.cfg;
        let mut region_tick = tokio::time::interval(cfg.region_interval);
        let mut store_tick = tokio::time::interval(cfg.store_interval);
        let mut split_tick = tokio::time::interval(cfg.split_check_interval);
        let mut machine = StreamMachine::new(Instant::now());
        loop {
            let responses = async {
                match self.stream.as_mut() {
                    Some(s) => s.rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            let reopen_at = machine.reopen_at();
            let reopen = tokio::time::sleep_until(reopen_at.unwrap_or_else(Instant::now));
            let wake = tokio::select! {
                _ = &mut self.stop => return Err(Stopped),
                _ = region_tick.tick() => None,
                _ = self.hb.changed.notified() => None,
                _ = reopen, if reopen_at.is_some() => None,
                _ = store_tick.tick() => Some(Event::StoreTick {
                    in_flight: self.store_hb.as_ref().is_some_and(|h| !h.is_finished()),
                }),
                _ = split_tick.tick() => Some(Event::SplitTick),
                resp = responses => Some(match resp {
                    Some(resp) => Event::Response(Box::new(resp)),
                    None => {
                        tracing::info!("region heartbeat stream ended; reopening");
                        Event::Ended
                    }
                }),
            };
            // None: a round of region heartbeats is due.
            let event = wake.unwrap_or_else(|| Event::Round {
                leader_generation: self.hb.placement.leader_generation(),
                closed: self.stream.as_ref().is_none_or(|s| s.tx.is_closed()),
            });
            let mut actions: VecDeque<Action> = machine.on(event, Instant::now()).into();
            while let Some(action) = actions.pop_front() {
                if let Some(event) = self.act(action).await? {
                    actions.extend(machine.on(event, Instant::now()));
                }
            }
        }
    }

    /// Does `action`; the event its outcome makes, if any.
    async fn act(&mut self, action: Action) -> Result<Option<Event>, Stopped> {
        let hb = &self.hb;
        match action {
            Action::Close => self.stream = None,
            Action::Open => {
                let opened = tokio::select! {
                    _ = &mut self.stop => return Err(Stopped),
                    r = hb.placement.region_heartbeat_stream() => r,
                };
                return Ok(Some(match opened {
                    Ok((tx, rx)) => {
                        tracing::info!(leader = %hb.placement.leader_url(), "region heartbeat stream open");
                        self.stream = Some(Stream { tx, rx });
                        Event::Opened {
                            generation: hb.placement.leader_generation(),
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "opening region heartbeat stream failed");
                        Event::OpenFailed
                    }
                }));
            }
            Action::Report => match &self.stream {
                Some(s) if hb.region_heartbeats(&s.tx).await => {}
                _ => return Ok(Some(Event::Ended)),
            },
            Action::StoreHeartbeat => {
                let task = hb.clone().store_heartbeat(self.start_time);
                self.store_hb = Some(tokio::spawn(task));
            }
            Action::CheckSplits => hb.clone().check_splits(),
            Action::Carry(resp) => hb.clone().on_response(*resp),
        }
        Ok(None)
    }
}

/// The I/O side of the heartbeat task: what [`StreamMachine`] decides, done.
struct Driver {
    hb: Arc<Heartbeat>,
    stop: oneshot::Receiver<()>,
    stream: Option<Stream>,
    store_hb: Option<JoinHandle<()>>,
    start_time: u32,
}

/// `stop` fired.
struct Stopped;

impl Heartbeat {
    /// Heartbeats until `stop` fires: waits for the next event, asks the
    /// [`StreamMachine`] what it calls for, and does it.
    pub async fn run(self, stop: oneshot::Receiver<()>) {
        let mut driver = Driver {
            hb: Arc::new(self),
            stop,
            stream: None,
            store_hb: None,
            start_time: crate::clock::now_secs() as u32,
        };
        let _ = driver.run().await;
        if let Some(h) = driver.store_hb {
            h.abort();
        }
    }

    async fn store_heartbeat(self: Arc<Self>, start_time: u32) {
        let region_count = self.meta.read().regions.len() as u32;
        let disk = self.disk.stats();
        let stats = pdpb::StoreStats {
            store_id: self.store.id,
            region_count,
            start_time,
            capacity: disk.capacity,
            available: disk.available,
            used_size: disk.used,
            ..Default::default()
        };
        if let Err(e) = self.placement.store_heartbeat(stats).await {
            tracing::warn!(store_id = self.store.id, error = %e, "store heartbeat failed");
        }
    }

    /// Sends a heartbeat for every region led here; false if the stream broke.
    async fn region_heartbeats(&self, tx: &mpsc::Sender<pdpb::RegionHeartbeatRequest>) -> bool {
        let leaders: Vec<_> = self
            .meta
            .read()
            .regions
            .values()
            .filter(|r| r.is_leader)
            .cloned()
            .collect();
        let reporting = self.reporting_splits.lock().clone();
        for r in leaders
            .into_iter()
            .filter(|r| !reporting.contains(&r.region.id))
        {
            let down_peers = r
                .down_peers
                .iter()
                .map(|(peer, secs)| pdpb::PeerStats {
                    peer: Some(*peer),
                    down_seconds: *secs,
                })
                .collect();
            let req = pdpb::RegionHeartbeatRequest {
                header: self.placement.request_header(),
                approximate_size: approximate_size(&self.engine, &r.region),
                leader: r.leader_peer(),
                region: Some(r.region),
                term: r.term,
                pending_peers: r.pending_peers,
                down_peers,
                ..Default::default()
            };
            if tx.send(req).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Checks every led region written to since the last check, and splits
    /// those over the size or key limits at their middle.
    fn check_splits(self: Arc<Self>) {
        let candidates: Vec<_> = self
            .meta
            .read()
            .regions
            .values()
            .filter(|r| r.is_leader && r.written.swap(0, Ordering::Relaxed) > 0)
            .map(|r| r.region.clone())
            .collect();
        for region in candidates {
            let hb = self.clone();
            tokio::spawn(async move {
                let engine = hb.engine.clone();
                let limits = hb.cfg.split_limits;
                let r = region.clone();
                let check =
                    tokio::task::spawn_blocking(move || split_check::check(&engine, &r, limits))
                        .await;
                let Ok(Ok(check)) = check else {
                    return;
                };
                if !check.split_keys.is_empty() {
                    tracing::info!(
                        region_id = region.id,
                        size = check.size,
                        keys = check.keys,
                        pieces = check.split_keys.len() + 1,
                        "region over split limits"
                    );
                    if let Err(e) = hb.split(region.id, check.split_keys).await {
                        tracing::info!(region_id = region.id, error = %e, "size split failed");
                    }
                }
            });
        }
    }

    /// Carries out the operator placement attached to a heartbeat answer.
    fn on_response(self: Arc<Self>, resp: pdpb::RegionHeartbeatResponse) {
        let region_id = resp.region_id;
        if let Some(t) = resp.transfer_leader {
            if let Some(peer) = t.peer {
                tracing::info!(region_id, to_store = peer.store_id, "transferring leader");
                if let Err(e) = self.router.transfer_leader(region_id, peer.id) {
                    tracing::warn!(region_id, error = %e, "leader transfer not queued");
                }
            }
        }
        if let Some(cp) = resp.change_peer {
            tokio::spawn(async move {
                if let Err(e) = self.change_peer(region_id, cp).await {
                    tracing::info!(region_id, error = %e, "peer change requested by placement failed");
                }
            });
            return;
        }
        if let Some(cp) = resp.change_peer_v2 {
            tokio::spawn(async move {
                if let Err(e) = self.change_peer_v2(region_id, cp).await {
                    tracing::info!(region_id, error = %e, "joint peer change requested by placement failed");
                }
            });
            return;
        }
        if let Some(split) = resp.split_region {
            tokio::spawn(async move {
                if let Err(e) = self.split(region_id, split.keys).await {
                    tracing::warn!(region_id, error = %e, "split requested by placement failed");
                }
            });
        }
    }

    async fn change_peer(&self, region_id: u64, cp: pdpb::ChangePeer) -> Result<(), SplitError> {
        let Some(peer) = cp.peer else {
            return Ok(());
        };
        let Some(change) = membership::change_type_from_pd(cp.change_type) else {
            return Ok(());
        };
        // Only act when the change is still needed (placement repeats operators).
        let needed = match self.meta.read().regions.get(&region_id) {
            Some(r) if r.is_leader => change_peer_needed(&r.region, change, &peer),
            _ => false,
        };
        if !needed {
            return Ok(());
        }
        self.router.change_peer(region_id, change, peer).await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Carries out placement's `ChangePeerV2`: enter a joint state with its changes, or leave
    /// the joint state if it has none, when this store leads the region and it is still needed.
    async fn change_peer_v2(
        &self,
        region_id: u64,
        cp: pdpb::ChangePeerV2,
    ) -> Result<(), SplitError> {
        let Some(changes) = membership::changes_from_pd(&cp) else {
            tracing::warn!(
                region_id,
                ?cp,
                "invalid joint peer change from placement ignored"
            );
            return Ok(());
        };
        let needed = match self.meta.read().regions.get(&region_id) {
            Some(r) if r.is_leader => change_peer_v2_needed(&r.region, &changes),
            _ => false,
        };
        if !needed {
            return Ok(());
        }
        if changes.is_empty() {
            tracing::info!(region_id, "leaving joint state as placement asks");
        } else {
            let summary: Vec<String> = changes
                .iter()
                .map(|(t, p)| format!("{t:?} {}@{}", p.id, p.store_id))
                .collect();
            tracing::info!(region_id, changes = ?summary, "entering joint state as placement asks");
        }
        self.router.change_peer_v2(region_id, changes).await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Splits `region_id` at `keys` (those inside it), if this store leads it.
    async fn split(&self, region_id: u64, mut keys: Vec<Vec<u8>>) -> Result<(), SplitError> {
        let region = match self.meta.read().regions.get(&region_id) {
            Some(r) if r.is_leader => r.region.clone(),
            _ => return Ok(()),
        };
        keys.sort();
        keys.dedup();
        keys.retain(|k| {
            k.as_slice() > region.start_key.as_slice()
                && (region.end_key.is_empty() || k.as_slice() < region.end_key.as_slice())
        });
        if keys.is_empty() {
            return Ok(());
        }
        let ids = self
            .placement
            .ask_batch_split(region.clone(), keys.len())
            .await?;
        if ids.len() != keys.len() {
            return Err(SplitError::Ids(ids.len(), keys.len()));
        }
        let epoch = region.region_epoch.unwrap_or_default();
        let splits = keys
            .into_iter()
            .zip(ids)
            .map(|(key, id)| SplitSpec {
                key,
                new_region_id: id.new_region_id,
                new_peer_ids: id.new_peer_ids,
            })
            .collect();
        let cmd = RaftCmd::BatchSplit(BatchSplit {
            epoch: (epoch.conf_ver, epoch.version),
            splits,
        });
        self.reporting_splits.lock().insert(region_id);
        let reported = async {
            self.router.propose(region_id, cmd).await?;
            let regions = self.regions_from(region_id, &region);
            tracing::info!(region_id, new_regions = regions.len() - 1, "region split");
            self.placement.report_batch_split(regions).await?;
            Ok::<(), SplitError>(())
        }
        .await;
        self.reporting_splits.lock().remove(&region_id);
        self.changed.notify_one();
        reported
    }

    /// The regions now covering the parent's old range, parent first.
    fn regions_from(&self, parent: u64, old: &metapb::Region) -> Vec<metapb::Region> {
        let meta = self.meta.read();
        let mut out: Vec<metapb::Region> = meta
            .regions
            .values()
            .map(|r| r.region.clone())
            .filter(|r| {
                r.start_key.as_slice() >= old.start_key.as_slice()
                    && (old.end_key.is_empty()
                        || (!r.end_key.is_empty()
                            && r.end_key.as_slice() <= old.end_key.as_slice()))
            })
            .collect();
        out.sort_by(|a, b| a.start_key.cmp(&b.start_key));
        if let Some(i) = out.iter().position(|r| r.id == parent) {
            let p = out.remove(i);
            out.insert(0, p);
        }
        out
    }
}

/// Whether a single membership change placement asks for is still to be made in `region`
/// (placement repeats it on every heartbeat until it sees it done). None while the region is
/// joint: single changes wait until the joint state is left.
fn change_peer_needed(
    region: &metapb::Region,
    change: ConfChangeType,
    peer: &metapb::Peer,
) -> bool {
    if membership::in_joint(region) {
        return false;
    }
    let existing = region.peers.iter().find(|p| p.id == peer.id);
    match change {
        ConfChangeType::AddNode => existing.is_none_or(|p| p.role() != metapb::PeerRole::Voter),
        ConfChangeType::AddLearnerNode => existing.is_none(),
        ConfChangeType::RemoveNode => existing.is_some(),
    }
}

/// Whether a joint change placement asks for is still to be made in `region`: entering (some
/// changes) only if the region is not joint yet and not every change is already reflected in
/// its peers; leaving (no changes) only if it is joint.
fn change_peer_v2_needed(region: &metapb::Region, changes: &[membership::PeerChange]) -> bool {
    use metapb::PeerRole;
    let joint = membership::in_joint(region);
    if changes.is_empty() {
        return joint;
    }
    if joint {
        return false;
    }
    let reflected = |(change, peer): &membership::PeerChange| {
        let existing = region.peers.iter().find(|p| p.id == peer.id);
        match change {
            ConfChangeType::AddNode => existing
                .is_some_and(|p| matches!(p.role(), PeerRole::Voter | PeerRole::IncomingVoter)),
            ConfChangeType::AddLearnerNode => existing
                .is_some_and(|p| matches!(p.role(), PeerRole::Learner | PeerRole::DemotingVoter)),
            ConfChangeType::RemoveNode => existing.is_none(),
        }
    };
    !changes.iter().all(reflected)
}

#[derive(Debug, thiserror::Error)]
enum SplitError {
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error("placement gave {0} split ids for {1} keys")]
    Ids(usize, usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::membership::test_peer as peer;
    use metapb::PeerRole;

    fn region(peers: Vec<metapb::Peer>) -> metapb::Region {
        metapb::Region {
            id: 1,
            peers,
            ..Default::default()
        }
    }

    /// Placement's move of a replica from store 3 to store 4: promote 104, demote 103.
    fn enter() -> Vec<membership::PeerChange> {
        vec![
            (ConfChangeType::AddNode, peer(104, 4, PeerRole::Voter)),
            (
                ConfChangeType::AddLearnerNode,
                peer(103, 3, PeerRole::Learner),
            ),
        ]
    }

    #[test]
    fn a_joint_change_is_made_only_while_still_needed() {
        let before = region(vec![
            peer(101, 1, PeerRole::Voter),
            peer(103, 3, PeerRole::Voter),
            peer(104, 4, PeerRole::Learner),
        ]);
        let joint = region(vec![
            peer(101, 1, PeerRole::Voter),
            peer(103, 3, PeerRole::DemotingVoter),
            peer(104, 4, PeerRole::IncomingVoter),
        ]);
        let after = region(vec![
            peer(101, 1, PeerRole::Voter),
            peer(103, 3, PeerRole::Learner),
            peer(104, 4, PeerRole::Voter),
        ]);
        assert!(change_peer_v2_needed(&before, &enter()));
        assert!(!change_peer_v2_needed(&joint, &enter()), "already entered");
        assert!(!change_peer_v2_needed(&after, &enter()), "entered and left");
        assert!(!change_peer_v2_needed(&before, &[]), "nothing to leave");
        assert!(change_peer_v2_needed(&joint, &[]));
        assert!(!change_peer_v2_needed(&after, &[]), "already left");
        // Half reflected (the learner was promoted by a single change meanwhile): still to do.
        let half = region(vec![
            peer(101, 1, PeerRole::Voter),
            peer(103, 3, PeerRole::Voter),
            peer(104, 4, PeerRole::Voter),
        ]);
        assert!(change_peer_v2_needed(&half, &enter()));
        // A removal is done once the peer is gone.
        let remove = [(ConfChangeType::RemoveNode, peer(103, 3, PeerRole::Learner))];
        assert!(change_peer_v2_needed(&after, &remove));
        assert!(!change_peer_v2_needed(
            &region(vec![peer(101, 1, PeerRole::Voter)]),
            &remove
        ));
    }

    #[test]
    fn single_changes_wait_for_the_joint_state_to_be_left() {
        let joint = region(vec![
            peer(101, 1, PeerRole::Voter),
            peer(103, 3, PeerRole::DemotingVoter),
            peer(104, 4, PeerRole::IncomingVoter),
        ]);
        let promote = peer(104, 4, PeerRole::Voter);
        assert!(!change_peer_needed(
            &joint,
            ConfChangeType::AddNode,
            &promote
        ));
        let learner = region(vec![
            peer(101, 1, PeerRole::Voter),
            peer(104, 4, PeerRole::Learner),
        ]);
        assert!(change_peer_needed(
            &learner,
            ConfChangeType::AddNode,
            &promote
        ));
        let removed = peer(103, 3, PeerRole::Learner);
        assert!(!change_peer_needed(
            &learner,
            ConfChangeType::RemoveNode,
            &removed
        ));
    }

    #[test]
    fn placements_joint_change_is_read_and_an_invalid_one_ignored() {
        let cp = pdpb::ChangePeerV2 {
            changes: vec![
                pdpb::ChangePeer {
                    peer: Some(peer(104, 4, PeerRole::Voter)),
                    change_type: proto::eraftpb::ConfChangeType::AddNode as i32,
                },
                pdpb::ChangePeer {
                    peer: Some(peer(103, 3, PeerRole::Learner)),
                    change_type: proto::eraftpb::ConfChangeType::AddLearnerNode as i32,
                },
            ],
        };
        assert_eq!(membership::changes_from_pd(&cp), Some(enter()));
        assert_eq!(
            membership::changes_from_pd(&pdpb::ChangePeerV2::default()),
            Some(vec![]),
            "no changes: leave"
        );
        let no_peer = pdpb::ChangePeerV2 {
            changes: vec![pdpb::ChangePeer {
                peer: None,
                change_type: 0,
            }],
        };
        assert_eq!(membership::changes_from_pd(&no_peer), None);
        let bad_type = pdpb::ChangePeerV2 {
            changes: vec![pdpb::ChangePeer {
                peer: Some(peer(104, 4, PeerRole::Voter)),
                change_type: 42,
            }],
        };
        assert_eq!(membership::changes_from_pd(&bad_type), None);
    }
}
