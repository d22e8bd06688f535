//! The fault suite: a real cluster under the official client's load while a nemesis breaks it,
//! every operation recorded and the histories judged by the `jepsen` crate's checkers.
//!
//! One run ([`run`]) starts 3 placement members and 5 stores, each in a network namespace of its
//! own ([`ClusterBuilder::own_network`]), with small regions so that they split under the load.
//! Workload processes ([`workloads`]) drive it through `tikv-client`: registers (raw get / put /
//! compare-and-swap), list-append transactions, bank transfers and snapshot reads, TSO
//! timestamps, and write-once raw puts. Meanwhile the [`nemesis`] follows a seeded
//! [`Schedule`](nemesis::Schedule) of faults. At the end everything is healed, the cluster must
//! serve again, the workloads stop, final reads collect what survived, and [`verdict`] checks
//! it all, leaving a results directory behind when anything is wrong.
//!
//! [`rng`] makes every choice from the run's seed; [`clock`] is what the processes share.

pub mod append;
pub mod bank;
pub mod clock;
pub mod lost;
pub mod nemesis;
pub mod orphans;
pub mod register;
pub mod rng;
pub mod table;
pub mod tso;
pub mod verdict;
pub mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use nemesis::{Damage, Schedule, Struck};
use rng::Rng;
pub use verdict::RunReport;

use crate::builder::ClusterBuilder;
use crate::client::wait_serving;
use crate::cluster::Cluster;

/// Small regions, checked often: the load splits them while faults strike.
/// Fault injection is on for the slow-disk fault's debug route.
const STORE_CONFIG: &str = "[raftstore]\nregion-max-size = 262144\nregion-max-keys = 2000\n\
                            split-check-interval-ms = 1000\n\n[storage]\nreserve-space = 33554432\n\
                            disk-check-interval-ms = 100\n\n[debug]\nfault-injection = true\n";
/// Each store's data directory is a tmpfs of this size (the fill-disk fault fills it).
const STORE_DISK: u64 = 512 << 20;
/// The clock-skew fault's debug route.
const PLACEMENT_CONFIG: &str = "[debug]\nfault-injection = true\n";
/// How long the cluster may take to serve again after the last heal.
const RECOVERY: Duration = Duration::from_secs(120);

/// What one run does.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub seed: u64,
    /// `None`: every fault once (the short form); `Some(s)`: random faults for about `s` seconds.
    pub seconds: Option<u64>,
    /// Where a failing run leaves its results.
    pub results: PathBuf,
    /// The command that repeats this run, with `{seed}` where the seed goes.
    pub reproducer: String,
    /// Whether one optimistic list-append transaction in twenty abandons its commit midway (a
    /// client killed during two-phase commit).
    pub client_crashes: bool,
}

impl RunConfig {
    fn schedule(&self, rng: &mut Rng) -> Schedule {
        match self.seconds {
            None => Schedule::each_once(rng),
            Some(s) => Schedule::random(rng, s),
        }
    }
}

/// Why a run could not be made here (not root, no network namespaces), or `None`.
pub fn skip_reason() -> Option<String> {
    crate::netns::skip_reason()
}

/// Runs once: starts the cluster, runs workloads and nemesis, heals, checks.
pub async fn run(config: &RunConfig) -> Result<RunReport, String> {
    let mut rng = Rng::new(config.seed);
    let schedule = config.schedule(&mut rng);
    let mut cluster = ClusterBuilder::default()
        .placements(3)
        .stores(5)
        .store_config(STORE_CONFIG)
        .placement_config(PLACEMENT_CONFIG)
        .store_tmpfs(STORE_DISK)
        .own_network(true)
        .start()
        .await
        .map_err(|e| format!("cluster failed to start: {e}"))?;
    cluster
        .wait_ready(crate::READY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    wait_serving(&cluster, RECOVERY)
        .await
        .map_err(|e| e.to_string())?;
    let load = workloads::start(&cluster, rng.fork(1), config.client_crashes).await?;
    let struck = run_schedule(&mut cluster, &schedule, rng.fork(2)).await;
    let recovered = recover(&mut cluster).await;
    let histories = load.finish(&cluster, recovered.is_ok()).await;
    let mut report = verdict::judge(config, &struck, &histories);
    if let Err(e) = recovered {
        report.problems.push(e);
    }
    if !report.is_clean() {
        let kept = verdict::keep_results(config, &cluster, &report, &schedule, &struck, &histories);
        report.results_dir = Some(kept?);
    }
    Ok(report)
}

/// Performs the schedule: each event after its quiet time, held, then healed.
async fn run_schedule(cluster: &mut Cluster, schedule: &Schedule, mut rng: Rng) -> Vec<Struck> {
    let started = tokio::time::Instant::now();
    let mut struck = Vec::new();
    for event in &schedule.0 {
        tokio::time::sleep(Duration::from_millis(event.quiet_ms)).await;
        let mut damage = Damage::default();
        for &fault in &event.faults {
            let at_ms = started.elapsed().as_millis() as u64;
            let what = nemesis::strike(cluster, &mut rng, fault, &mut damage)
                .await
                .unwrap_or_else(|e| format!("not injected: {e}"));
            tracing::info!(fault = fault.name(), %what, "nemesis");
            struck.push(Struck { at_ms, fault, what });
        }
        tokio::time::sleep(Duration::from_millis(event.hold_ms)).await;
        if let Err(e) = nemesis::heal(cluster, damage).await {
            tracing::warn!(error = %e, "healing failed; the final recovery retries");
        }
    }
    struck
}

/// Heals everything (network, pauses, dead processes) and waits until the cluster serves.
async fn recover(cluster: &mut Cluster) -> Result<(), String> {
    // A process that exited on its own (not killed by the nemesis) is a bug.
    if let Some(e) = cluster.reap_exited().into_iter().next() {
        return Err(format!("a process exited on its own: {e}"));
    }
    cluster.heal_network().await.map_err(|e| e.to_string())?;
    for role in cluster.roles() {
        let _ = cluster.resume(role);
    }
    for role in cluster.roles() {
        if cluster.running(role) {
            cluster.set_clock_offset(role, 0).await?;
        }
    }
    for i in 0..cluster.placement_count() {
        if !cluster.placement_running(i) {
            cluster
                .restart_placement_member(i)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    for i in 0..cluster.store_count() {
        if !cluster.store_running(i) {
            cluster.restart_store(i).await.map_err(|e| e.to_string())?;
        } else {
            cluster.set_sync_delay(i, 0).await?;
        }
    }
    wait_serving(cluster, RECOVERY)
        .await
        .map_err(|e| format!("the cluster did not serve again after healing: {e}"))
}
