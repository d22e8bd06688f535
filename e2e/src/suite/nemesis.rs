//! The nemesis: faults injected into a running cluster at random times, and their healing.
//!
//! Each [`Fault`] picks its targets when it strikes (the placement leader, the store leading the
//! most regions, a random split of the nodes) and returns how to undo it. A [`Schedule`] is the
//! list of events a run performs: in the short form every fault once in a seeded order; in the
//! long form random faults, alone or two at once, until the run's time is up. Every event is
//! logged with what it hit, for the results directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::rng::Rng;
use crate::cluster::{Cluster, Role};
use crate::topology::leader_store;
use crate::wait::wait_for;

/// A kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL a store, restart it when healing.
    KillStore,
    /// SIGKILL the placement leader, restart it when healing.
    KillPlacementLeader,
    /// SIGSTOP the store leading the most regions, long enough for its leases to run out.
    PauseStoreLeader,
    /// SIGSTOP the placement leader, long enough for another member to be elected.
    PausePlacementLeader,
    /// Cut one store off from every other node.
    IsolateStore,
    /// Cut the placement leader off from every other node.
    IsolatePlacementLeader,
    /// Split the nodes at random into a majority and a minority.
    MajorityMinority,
    /// Two halves that cannot talk, and one node that talks to both.
    Bridge,
    /// One node's packets to every other node are lost; theirs to it arrive.
    OneWay,
    /// Move placement leadership to another member.
    TransferPlacementLeader,
    /// Skew a placement member's clock (the leader half the time), by less than its lease or
    /// by far more, ahead or behind.
    ClockSkew,
    /// Step a store's wall clock (the store leading the most regions half the time) ahead or
    /// back by less than a lease or by far more: raft ticks, elections and leader leases run on
    /// the monotonic clock, so only raw TTLs may follow it.
    StoreClockSkew,
    /// Slow a store's disk: every fsync of its raft log waits (the store leading the most
    /// regions half the time), by a little or by more than an election timeout.
    SlowDisk,
    /// Scale a store in and out again: placement is told to remove it and drains its replicas
    /// to the others while the load runs; once it is a tombstone the process comes back on
    /// the same host with an empty data directory, as a new store. A drain still running when
    /// the event heals is cancelled (the store is set Up again).
    DrainStore,
    /// Throttle one node's outgoing traffic (the store leading the most regions half the
    /// time): a token bucket that queues and drops, so its packets arrive late by varying
    /// amounts or not at all.
    SlowNetwork,
    /// Fill a store's disk (its data directory is a small tmpfs of its own) with a ballast file
    /// until a few MiB are left: the store must release its reserved space, refuse writes with
    /// a clear error and keep serving reads; on healing the ballast goes and writes resume.
    FillDisk,
    /// Scale placement in and out again: a member other than the leader is removed from the
    /// membership (`DELETE /pd/api/v1/members/name/<name>`) and killed; on healing it comes
    /// back with an empty data directory and joins the running group as a new member.
    ReplacePlacementMember,
}

impl Fault {
    pub const ALL: [Fault; 17] = [
        Fault::KillStore,
        Fault::KillPlacementLeader,
        Fault::PauseStoreLeader,
        Fault::PausePlacementLeader,
        Fault::IsolateStore,
        Fault::IsolatePlacementLeader,
        Fault::MajorityMinority,
        Fault::Bridge,
        Fault::OneWay,
        Fault::TransferPlacementLeader,
        Fault::ClockSkew,
        Fault::StoreClockSkew,
        Fault::SlowDisk,
        Fault::DrainStore,
        Fault::SlowNetwork,
        Fault::ReplacePlacementMember,
        Fault::FillDisk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillStore => "kill-store",
            Fault::KillPlacementLeader => "kill-placement-leader",
            Fault::PauseStoreLeader => "pause-store-leader",
            Fault::PausePlacementLeader => "pause-placement-leader",
            Fault::IsolateStore => "isolate-store",
            Fault::IsolatePlacementLeader => "isolate-placement-leader",
            Fault::MajorityMinority => "majority-minority",
            Fault::Bridge => "bridge",
            Fault::OneWay => "one-way",
            Fault::TransferPlacementLeader => "transfer-placement-leader",
            Fault::ClockSkew => "clock-skew",
            Fault::StoreClockSkew => "store-clock-skew",
            Fault::SlowDisk => "slow-disk",
            Fault::DrainStore => "drain-store",
            Fault::SlowNetwork => "slow-network",
            Fault::ReplacePlacementMember => "replace-placement-member",
            Fault::FillDisk => "fill-disk",
        }
    }

    /// Whether the fault cuts packets (needs every process in a namespace of its own).
    pub fn is_network(self) -> bool {
        matches!(
            self,
            Fault::IsolateStore
                | Fault::IsolatePlacementLeader
                | Fault::MajorityMinority
                | Fault::Bridge
                | Fault::OneWay
                | Fault::SlowNetwork
        )
    }
}

/// One planned event: the faults that strike together, after a quiet time, held for a while.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    pub faults: Vec<Fault>,
    pub quiet_ms: u64,
    pub hold_ms: u64,
}

/// The events of a run, in order.
#[derive(Clone, Debug, Serialize)]
pub struct Schedule(pub Vec<Planned>);

impl Schedule {
    /// Every fault once, alone, in a seeded order.
    pub fn each_once(rng: &mut Rng) -> Schedule {
        let mut faults = Fault::ALL.to_vec();
        rng.shuffle(&mut faults);
        Schedule(
            faults
                .into_iter()
                .map(|f| Planned {
                    faults: vec![f],
                    quiet_ms: rng.between(1000, 2000),
                    hold_ms: hold_ms(rng, f),
                })
                .collect(),
        )
    }

    /// Random events, a third of them two faults at once, filling about `seconds`.
    pub fn random(rng: &mut Rng, seconds: u64) -> Schedule {
        let mut events = Vec::new();
        let mut total = 0;
        while total < seconds * 1000 {
            let mut faults = vec![*rng.pick(&Fault::ALL).unwrap_or(&Fault::KillStore)];
            if rng.chance(1, 3) {
                let second = *rng.pick(&Fault::ALL).unwrap_or(&Fault::KillStore);
                if second != faults[0] {
                    faults.push(second);
                }
            }
            let hold = faults.iter().map(|&f| hold_ms(rng, f)).max().unwrap_or(0);
            let quiet = rng.between(500, 3000);
            total += quiet + hold;
            events.push(Planned {
                faults,
                quiet_ms: quiet,
                hold_ms: hold,
            });
        }
        Schedule(events)
    }
}

/// Pauses outlast raft's election timeout and placement's leader lease; the rest vary.
fn hold_ms(rng: &mut Rng, fault: Fault) -> u64 {
    match fault {
        Fault::PauseStoreLeader | Fault::PausePlacementLeader => rng.between(4000, 7000),
        Fault::TransferPlacementLeader => 500,
        // Long enough for placement to move a good part of the store's replicas.
        Fault::DrainStore => rng.between(8000, 15000),
        _ => rng.between(2000, 6000),
    }
}

/// Clock skews: within the placement leader's lease, a few seconds, a minute.
const CLOCK_SKEWS_MS: [i64; 3] = [200, 3_000, 60_000];

/// Slow-disk delays per fsync: a busy disk, one slower than raft's heartbeats, one slower than
/// an election.
const SYNC_DELAYS_MS: [u64; 3] = [20, 300, 2_000];

/// Slow-network token buckets: (kilobits a second, longest queueing in milliseconds).
const THROTTLES: [(u32, u32); 3] = [(4096, 50), (1024, 200), (256, 800)];

/// What must be undone after an event.
#[derive(Clone, Debug, Default)]
pub struct Damage {
    restart: BTreeSet<Role>,
    resume: BTreeSet<Role>,
    network: bool,
    /// Processes whose wall clock is skewed.
    clocks: BTreeSet<Role>,
    /// Stores whose disk is slowed.
    slow_disks: BTreeSet<usize>,
    /// The store being drained: harness index and store id.
    drained: Option<(usize, u64)>,
    /// The placement member removed from the membership, to come back as a new member.
    replaced_member: Option<usize>,
    /// Ballast files filling stores' disks.
    ballasts: Vec<PathBuf>,
}

/// What an event did, for the results.
#[derive(Clone, Debug, Serialize)]
pub struct Struck {
    pub at_ms: u64,
    pub fault: Fault,
    pub what: String,
}

/// Injects `fault`, recording what must be undone in `damage`; returns what it hit.
pub async fn strike(
    cluster: &mut Cluster,
    rng: &mut Rng,
    fault: Fault,
    damage: &mut Damage,
) -> Result<String, String> {
    let e = |e: crate::Error| e.to_string();
    match fault {
        Fault::KillStore => {
            let i = pick_running_store(cluster, rng, damage)?;
            cluster.kill_store(i).await.map_err(e)?;
            damage.restart.insert(Role::Store(i));
            Ok(format!("store {i}"))
        }
        Fault::KillPlacementLeader => {
            let i = placement_leader(cluster, damage).await?;
            cluster.kill_placement_member(i).await.map_err(e)?;
            damage.restart.insert(Role::Placement(i));
            Ok(format!("placement {i}"))
        }
        Fault::PauseStoreLeader => {
            let i = busiest_leader(cluster, rng, damage).await?;
            cluster.pause(Role::Store(i)).map_err(e)?;
            damage.resume.insert(Role::Store(i));
            Ok(format!("store {i}"))
        }
        Fault::PausePlacementLeader => {
            let i = placement_leader(cluster, damage).await?;
            cluster.pause(Role::Placement(i)).map_err(e)?;
            damage.resume.insert(Role::Placement(i));
            Ok(format!("placement {i}"))
        }
        Fault::TransferPlacementLeader => transfer_placement(cluster, rng, damage).await,
        Fault::ClockSkew => {
            let i = if rng.chance(1, 2) {
                placement_leader(cluster, damage).await?
            } else {
                rng.below(cluster.placement_count() as u64) as usize
            };
            skew_clock(cluster, rng, damage, Role::Placement(i)).await
        }
        Fault::StoreClockSkew => {
            let i = if rng.chance(1, 2) {
                busiest_leader(cluster, rng, damage).await?
            } else {
                pick_running_store(cluster, rng, damage)?
            };
            skew_clock(cluster, rng, damage, Role::Store(i)).await
        }
        Fault::DrainStore => {
            let i = pick_running_store(cluster, rng, damage)?;
            let id = *cluster.store_ids().await?.get(i).ok_or("no such store")?;
            // Placement refuses while it does not see enough other stores Up (as after a
            // fault that just healed, or a new placement leader): ask again, as an operator would.
            let url = format!("http://{}/pd/api/v1/store/{id}", cluster.pd_endpoint());
            let drain = || async { cluster.http.send(reqwest::Method::DELETE, &url).await };
            wait_for(
                "placement to accept the drain",
                DRAIN_ACCEPT,
                drain,
                String::new,
            )
            .await
            .map_err(|e| e.to_string())?;
            damage.drained = Some((i, id));
            Ok(format!("store {i} (id {id})"))
        }
        Fault::ReplacePlacementMember => {
            let leader = placement_leader(cluster, damage).await?;
            let candidates: Vec<usize> = (0..cluster.placement_count())
                .filter(|&i| i != leader && cluster.placement_running(i))
                .filter(|&i| !damage.resume.contains(&Role::Placement(i)))
                .collect();
            let i = *rng
                .pick(&candidates)
                .ok_or("no running follower to remove")?;
            let name = cluster.placement_name(i);
            let url = format!(
                "http://{}/pd/api/v1/members/name/{name}",
                cluster.placement_addr(leader)
            );
            let remove = || async { cluster.http.send(reqwest::Method::DELETE, &url).await };
            wait_for(
                "placement to remove the member",
                DRAIN_ACCEPT,
                remove,
                String::new,
            )
            .await
            .map_err(|e| e.to_string())?;
            cluster.kill_placement_member(i).await.map_err(e)?;
            damage.replaced_member = Some(i);
            Ok(format!("placement {i} ({name}) removed"))
        }
        Fault::FillDisk => {
            let i = pick_running_store(cluster, rng, damage)?;
            let ballast = cluster.store_data_dir(i).join(BALLAST);
            let path = ballast.clone();
            let written = tokio::task::spawn_blocking(move || fill(&path, LEAVE_FREE))
                .await
                .map_err(|e| e.to_string())??;
            damage.ballasts.push(ballast);
            // The store must notice: its disk is no longer normal and writes adding data are
            // refused (the workloads see `disk_full`).
            let full = || async {
                match cluster.disk_usage(i).await? {
                    0 => Err("store still reports a normal disk".to_owned()),
                    level => Ok(level),
                }
            };
            let level = wait_for(
                "the store to see its disk full",
                DISK_NOTICE,
                full,
                String::new,
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(format!(
                "store {i} disk filled ({} MiB of ballast, about {} MiB left; usage level {level})",
                written >> 20,
                LEAVE_FREE >> 20
            ))
        }
        Fault::SlowDisk => {
            let i = if rng.chance(1, 2) {
                busiest_leader(cluster, rng, damage).await?
            } else {
                pick_running_store(cluster, rng, damage)?
            };
            let delay = *rng.pick(&SYNC_DELAYS_MS).unwrap_or(&20);
            cluster.set_sync_delay(i, delay).await?;
            damage.slow_disks.insert(i);
            Ok(format!("store {i} fsync +{delay} ms"))
        }
        _ => cut(cluster, rng, fault, damage).await,
    }
}

async fn cut(
    cluster: &mut Cluster,
    rng: &mut Rng,
    fault: Fault,
    damage: &mut Damage,
) -> Result<String, String> {
    let mut all = cluster.roles();
    rng.shuffle(&mut all);
    let e = |e: crate::Error| e.to_string();
    damage.network = true;
    let what = match fault {
        Fault::IsolateStore | Fault::IsolatePlacementLeader => {
            let alone = if fault == Fault::IsolateStore {
                Role::Store(rng.below(cluster.store_count() as u64) as usize)
            } else {
                Role::Placement(placement_leader(cluster, damage).await?)
            };
            let rest: Vec<Role> = all.into_iter().filter(|&r| r != alone).collect();
            cluster.partition(&[vec![alone], rest]).await.map_err(e)?;
            format!("{alone:?} alone")
        }
        Fault::MajorityMinority => {
            let minority = all.split_off(all.len().div_ceil(2));
            cluster
                .partition(&[all.clone(), minority.clone()])
                .await
                .map_err(e)?;
            format!("{all:?} | {minority:?}")
        }
        Fault::Bridge => {
            let bridge = all.remove(0);
            let right = all.split_off(all.len() / 2);
            cluster
                .partition(&[all.clone(), right.clone()])
                .await
                .map_err(e)?;
            format!("{all:?} | {right:?} bridged by {bridge:?}")
        }
        Fault::SlowNetwork => {
            let node = if rng.chance(1, 2) {
                Role::Store(busiest_leader(cluster, rng, damage).await?)
            } else {
                all[0]
            };
            let (kbit, queue_ms) = *rng.pick(&THROTTLES).unwrap_or(&THROTTLES[0]);
            cluster.throttle(node, kbit, queue_ms).await.map_err(e)?;
            format!("{node:?} sends {kbit} kbit/s, queueing up to {queue_ms} ms")
        }
        _ => {
            let from = all[0];
            let pairs: Vec<(Role, Role)> = all[1..].iter().map(|&to| (from, to)).collect();
            cluster.cut(&pairs).await.map_err(e)?;
            format!("{from:?} cannot send")
        }
    };
    Ok(what)
}

/// The placement leader, asking until the members name one (a heal may have just restarted the
/// old one), for at most [`LEADER_WAIT`].
/// Members the nemesis paused are not asked (they would not answer).
async fn placement_leader(cluster: &Cluster, damage: &Damage) -> Result<usize, String> {
    let ask = || async {
        let mut last = "no member to ask".to_owned();
        for i in 0..cluster.placement_count() {
            if !cluster.placement_running(i) || damage.resume.contains(&Role::Placement(i)) {
                continue;
            }
            match cluster.http.leader_name(&cluster.placement_addr(i)).await {
                Ok(name) => {
                    let count = cluster.placement_count();
                    if let Some(j) = (0..count).find(|&j| cluster.placement_name(j) == name) {
                        return Ok(j);
                    }
                    last = format!("unknown leader `{name}`");
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    };
    wait_for(
        "placement to name its leader",
        LEADER_WAIT,
        ask,
        String::new,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Steps `role`'s wall clock ahead or back by one of [`CLOCK_SKEWS_MS`].
async fn skew_clock(
    cluster: &Cluster,
    rng: &mut Rng,
    damage: &mut Damage,
    role: Role,
) -> Result<String, String> {
    let magnitude = *rng.pick(&CLOCK_SKEWS_MS).unwrap_or(&200);
    let offset = if rng.chance(1, 2) {
        magnitude
    } else {
        -magnitude
    };
    cluster.set_clock_offset(role, offset).await?;
    damage.clocks.insert(role);
    let who = match role {
        Role::Placement(i) => format!("placement {i}"),
        Role::Store(i) => format!("store {i}"),
    };
    Ok(format!("{who} clock {offset:+} ms"))
}

fn pick_running_store(cluster: &Cluster, rng: &mut Rng, damage: &Damage) -> Result<usize, String> {
    let candidates: Vec<usize> = (0..cluster.store_count())
        .filter(|&i| cluster.store_running(i) && !damage.resume.contains(&Role::Store(i)))
        .collect();
    rng.pick(&candidates)
        .copied()
        .ok_or_else(|| "no running store".to_owned())
}

/// The running store that leads the most regions (a random one if placement cannot say).
async fn busiest_leader(
    cluster: &Cluster,
    rng: &mut Rng,
    damage: &Damage,
) -> Result<usize, String> {
    let fallback = pick_running_store(cluster, rng, damage)?;
    let (Ok(regions), Ok(ids)) = (cluster.regions().await, cluster.store_ids().await) else {
        return Ok(fallback);
    };
    let mut counts = vec![0usize; ids.len()];
    for id in regions.iter().filter_map(leader_store) {
        if let Some(i) = ids.iter().position(|&s| s == id) {
            counts[i] += 1;
        }
    }
    Ok((0..ids.len())
        .filter(|&i| cluster.store_running(i) && !damage.resume.contains(&Role::Store(i)))
        .max_by_key(|&i| counts[i])
        .unwrap_or(fallback))
}

async fn transfer_placement(
    cluster: &Cluster,
    rng: &mut Rng,
    damage: &Damage,
) -> Result<String, String> {
    // Asked of the leader itself: another member may not know one (cut off by a partition
    // struck meanwhile). Leadership may move between the lookup and the request, so a refusal
    // is retried on the leader named again, a few times.
    let mut refused = String::new();
    for _ in 0..TRANSFER_ATTEMPTS {
        let leader = placement_leader(cluster, damage).await?;
        let others: Vec<usize> = (0..cluster.placement_count())
            .filter(|&i| i != leader && cluster.placement_running(i))
            .collect();
        let Some(&to) = rng.pick(&others) else {
            return Ok("no other member".to_owned());
        };
        match cluster
            .transfer_placement_leader(leader, &cluster.placement_name(to))
            .await
        {
            Ok(()) => return Ok(format!("placement {leader} -> {to}")),
            Err(e) => refused = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(refused)
}

/// Undoes everything in `damage`: heals the network, resumes paused processes, restarts killed
/// ones (on their ports and data).
pub async fn heal(cluster: &mut Cluster, damage: Damage) -> Result<(), String> {
    let e = |e: crate::Error| e.to_string();
    if damage.network {
        cluster.heal_network().await.map_err(e)?;
    }
    for role in damage.resume {
        cluster.resume(role).map_err(e)?;
    }
    for role in damage.clocks {
        if cluster.running(role) {
            cluster.set_clock_offset(role, 0).await?;
        }
    }
    // A store killed meanwhile restarts with a fast disk.
    for i in damage.slow_disks {
        if cluster.store_running(i) && !damage.restart.contains(&Role::Store(i)) {
            cluster.set_sync_delay(i, 0).await?;
        }
    }
    for role in damage.restart {
        match role {
            Role::Store(i) => cluster.restart_store(i).await.map_err(e)?,
            Role::Placement(i) => cluster.restart_placement_member(i).await.map_err(e)?,
        }
    }
    for ballast in damage.ballasts {
        std::fs::remove_file(&ballast).map_err(|e| format!("{}: {e}", ballast.display()))?;
    }
    if let Some(i) = damage.replaced_member {
        cluster.replace_placement_member(i).await.map_err(e)?;
        // It must have joined the running group, not started one of its own: it follows the
        // leader every other member names.
        let same_leader = || async {
            let mine = cluster.http.leader_name(&cluster.placement_addr(i)).await?;
            for j in (0..cluster.placement_count()).filter(|&j| j != i) {
                if let Ok(theirs) = cluster.http.leader_name(&cluster.placement_addr(j)).await {
                    return if theirs == mine {
                        Ok(())
                    } else {
                        Err(format!(
                            "member {i} follows {mine}, member {j} follows {theirs}"
                        ))
                    };
                }
            }
            Err("no other member names a leader".to_owned())
        };
        wait_for(
            "the new member to join the running group",
            LEADER_WAIT,
            same_leader,
            String::new,
        )
        .await
        .map_err(|e| e.to_string())?;
        tracing::info!(member = i, "removed placement member back as a new member");
    }
    if let Some((i, id)) = damage.drained {
        let done = finish_drain(cluster, i, id).await?;
        tracing::info!(store = i, id, %done, "drain healed");
    }
    Ok(())
}

/// The fill-disk fault's ballast file, in the store's data directory.
const BALLAST: &str = "e2e-ballast";
/// How long a store may take to notice its disk filled (it looks every 100 ms in the suite).
const DISK_NOTICE: Duration = Duration::from_secs(5);
/// What the fill-disk fault leaves free: less than any store's write threshold.
const LEAVE_FREE: u64 = 4 << 20;

/// Writes `path` until the filesystem holding it has about `leave` bytes free (or none);
/// returns the bytes written.
fn fill(path: &Path, leave: u64) -> Result<u64, String> {
    use std::io::Write;
    let dir = path.parent().ok_or("a ballast path has a directory")?;
    let stat =
        nix::sys::statvfs::statvfs(dir).map_err(|e| format!("statvfs {}: {e}", dir.display()))?;
    let free = stat.blocks_available() * stat.fragment_size();
    let mut left = free.saturating_sub(leave);
    let mut file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        match file.write_all(&chunk[..n]) {
            Ok(()) => {}
            // Full already (the store wrote meanwhile): as filled as it gets.
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        written += n as u64;
        left -= n as u64;
    }
    Ok(written)
}

/// How long the drain-store fault keeps asking placement to accept the drain.
const DRAIN_ACCEPT: Duration = Duration::from_secs(15);

/// How long healing waits for a drained store to become a tombstone before cancelling.
const DRAIN_WAIT: Duration = Duration::from_secs(20);

/// Scales the drained store `i` (id `id`) out again once it is a tombstone, or cancels the
/// drain if it does not get there within [`DRAIN_WAIT`]; says which.
async fn finish_drain(cluster: &mut Cluster, i: usize, id: u64) -> Result<String, String> {
    let tombstone = || async {
        match store_state(cluster, id).await {
            Ok(state) if state == "Tombstone" => Ok(()),
            Ok(state) => Err(format!("store {id} is {state}")),
            Err(e) => Err(e),
        }
    };
    let drained = wait_for(
        "the drained store to become a tombstone",
        DRAIN_WAIT,
        tombstone,
        String::new,
    )
    .await;
    if drained.is_err() {
        let url = format!(
            "http://{}/pd/api/v1/store/{id}/state?state=Up",
            cluster.pd_endpoint()
        );
        let cancelled = cluster.http.send(reqwest::Method::POST, &url).await;
        // The last replica may have moved between the two calls.
        match (cancelled, store_state(cluster, id).await) {
            (_, Ok(state)) if state == "Tombstone" => {}
            (Ok(_), _) => return Ok(format!("drain of store {id} cancelled")),
            (Err(e), _) => return Err(format!("cancelling the drain of store {id}: {e}")),
        }
    }
    cluster.replace_store(i).await.map_err(|e| e.to_string())?;
    Ok(format!(
        "store {id} drained; its host serves again as a new store"
    ))
}

/// Placement's name for the state of store `id` (`Up`, `Offline`, `Tombstone`, ...).
async fn store_state(cluster: &Cluster, id: u64) -> Result<String, String> {
    let stores = cluster.http.all_store_infos(&cluster.pd_endpoint()).await?;
    stores
        .into_iter()
        .find(|s| s.store.id == id)
        .map(|s| s.store.state_name)
        .ok_or_else(|| format!("store {id} is unknown to placement"))
}

/// How long the nemesis waits for placement to name its leader.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// Leader lookups and requests a placement leader transfer gets before it is not injected.
const TRANSFER_ATTEMPTS: usize = 5;
