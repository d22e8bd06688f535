//! A running local cluster of real processes: one placement and N stores.
//!
//! [`Cluster`] is started by [`ClusterBuilder`](crate::builder::ClusterBuilder). Each process
//! gets a directory under the cluster directory (`placement/`, `store-0/`, ...) holding its data
//! dir, its config file and its log. The
//! cluster can kill (SIGKILL), stop (SIGTERM) and restart any process on the same ports and
//! data, and waits for readiness through placement's PD HTTP API ([`Cluster::must_ready`]).
//! Dropping a cluster kills every child; a temporary directory is removed unless the thread is
//! panicking, in which case it is kept and its path printed along with the log tails.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::netns::{NetPod, PodNet};
use crate::pd_api::{check_leaders_confirmed, check_ready, PdHttp};
use crate::ports::{is_listening, PortPlan};
use crate::process::{mentions_addr_in_use, Node};
use crate::wait::POLL_INTERVAL;

/// How long a process may take to open its ports after it is spawned.
pub const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);
/// The default wait of [`must_start`](crate::builder::ClusterBuilder::must_start) for the whole cluster to be ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Grace period between SIGTERM and SIGKILL in [`Cluster::stop_store`] and friends.
pub const STOP_GRACE: Duration = Duration::from_secs(15);
/// Lines of each log shown in error messages.
const LOG_TAIL_LINES: usize = 30;

/// Which process of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Placement member `i`.
    Placement(usize),
    Store(usize),
}

/// A process slot: its node, directory, ports and static arguments.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) node: Node,
    pub(crate) data_dir: PathBuf,
    config: Option<PathBuf>,
    labels: Option<String>,
    /// Placement: `[client]`, or `[client, peer]` in a group; store: `[grpc, status]`.
    pub(crate) ports: Vec<u16>,
    /// The address it listens on: loopback, or its pod's address on a cluster network.
    pub(crate) host: Ipv4Addr,
    /// Its network namespace on a cluster network.
    pub(crate) pod: Option<NetPod>,
}

impl Member {
    pub(crate) fn new(
        name: &str,
        root: &Path,
        program: PathBuf,
        config: Option<&str>,
        labels: Option<String>,
    ) -> Result<Member> {
        let dir = root.join(name);
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(|e| Error::io(&data_dir, e))?;
        let config = match config {
            Some(text) => {
                let file = dir.join(format!("{}.toml", name.split('-').next().unwrap_or(name)));
                std::fs::write(&file, text).map_err(|e| Error::io(&file, e))?;
                Some(file)
            }
            None => None,
        };
        let log = dir.join(format!("{name}.log"));
        Ok(Member {
            node: Node::new(name, program, log),
            data_dir,
            config,
            labels,
            ports: Vec::new(),
            host: Ipv4Addr::LOCALHOST,
            pod: None,
        })
    }

    /// Puts the member in `pod`: it listens on the pod's address and runs in its namespace.
    pub(crate) fn join_pod(&mut self, pod: NetPod) {
        self.host = pod.ip;
        self.node.set_netns(Some(pod.netns.clone()));
        self.pod = Some(pod);
    }

    fn addr(&self, i: usize) -> String {
        format!("{}:{}", self.host, self.ports[i])
    }
}

/// The capacity every store reports (`--capacity`, which overrides a test's config file), as a
/// volume of that size would. Without it a store reports the whole shared disk of the test
/// machine, where a few GiB free out of hundreds is under placement's low-space ratio, so
/// replicas stop being placed whenever other work fills the disk; and each store keeps a
/// space placeholder of a fiftieth of its capacity (here 164 MiB) instead of 1 GiB.
pub const STORE_CAPACITY: &str = "8GiB";

/// A running cluster. See the module docs.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) root: PathBuf,
    pub(crate) temp: Option<TempDir>,
    pub(crate) ports: PortPlan,
    pub(crate) placements: Vec<Member>,
    pub(crate) stores: Vec<Member>,
    pub(crate) http: PdHttp,
    /// The cluster network when every process has a namespace of its own (dropped last, after
    /// the processes are gone).
    pub(crate) net: Option<PodNet>,
    /// tmpfs mounts (stores' data directories), unmounted when the cluster is dropped.
    pub(crate) mounts: Vec<PathBuf>,
}

impl Cluster {
    /// `127.0.0.1:PORT` of a running placement member (the first one), for the HTTP API:
    /// every member answers it, forwarding to the leader.
    pub fn pd_endpoint(&self) -> String {
        let running = self.placements.iter().find(|m| m.node.is_running());
        running.unwrap_or(&self.placements[0]).addr(0)
    }

    /// Every placement member's `127.0.0.1:PORT`, as the clients' constructors take them.
    pub fn pd_endpoints(&self) -> Vec<String> {
        self.placements.iter().map(|m| m.addr(0)).collect()
    }

    /// `127.0.0.1:PORT` of placement member `i`.
    pub fn placement_addr(&self, i: usize) -> String {
        self.placements[i].addr(0)
    }

    /// Number of placement members.
    pub fn placement_count(&self) -> usize {
        self.placements.len()
    }

    /// Whether placement member `i` has a running process.
    pub fn placement_running(&self, i: usize) -> bool {
        self.placements.get(i).is_some_and(|m| m.node.is_running())
    }

    /// The member name placement member `i` runs under.
    pub fn placement_name(&self, i: usize) -> String {
        format!("pd{}", i + 1)
    }

    /// Number of stores.
    pub fn store_count(&self) -> usize {
        self.stores.len()
    }

    /// gRPC address of store `i`.
    pub fn store_addr(&self, i: usize) -> String {
        self.stores[i].addr(0)
    }

    /// Status (metrics, health) address of store `i`.
    pub fn store_status_addr(&self, i: usize) -> String {
        self.stores[i].addr(1)
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// Data directory of store `i`.
    pub fn store_data_dir(&self, i: usize) -> &Path {
        &self.stores[i].data_dir
    }

    /// Whether store `i` has a running process.
    pub fn store_running(&self, i: usize) -> bool {
        self.stores.get(i).is_some_and(|m| m.node.is_running())
    }

    /// The last lines of every process's log.
    pub fn log_tails(&self) -> String {
        self.placements
            .iter()
            .chain(&self.stores)
            .map(|m| m.node.log_tail(LOG_TAIL_LINES))
            .collect()
    }

    fn member(&mut self, role: Role) -> Result<&mut Member> {
        let count = self.stores.len();
        match role {
            Role::Placement(index) => {
                let count = self.placements.len();
                self.placements
                    .get_mut(index)
                    .ok_or(Error::NoSuchStore { index, count })
            }
            Role::Store(index) => self
                .stores
                .get_mut(index)
                .ok_or(Error::NoSuchStore { index, count }),
        }
    }

    fn args(&self, role: Role) -> Vec<String> {
        let m = match role {
            Role::Placement(i) => &self.placements[i],
            Role::Store(i) => &self.stores[i],
        };
        let mut args: Vec<String> = match role {
            Role::Placement(i) => {
                let url = format!("http://{}", m.addr(0));
                let mut args = vec![
                    "--name".into(),
                    self.placement_name(i),
                    "--client-urls".into(),
                    url.clone(),
                    "--advertise-client-urls".into(),
                    url,
                ];
                if self.placements.len() > 1 {
                    let initial: Vec<String> = self
                        .placements
                        .iter()
                        .enumerate()
                        .map(|(j, p)| format!("{}=http://{}", self.placement_name(j), p.addr(1)))
                        .collect();
                    args.extend([
                        "--peer-urls".into(),
                        format!("http://{}", m.addr(1)),
                        "--initial-cluster".into(),
                        initial.join(","),
                    ]);
                }
                args
            }
            Role::Store(_) => vec![
                "--pd-endpoints".into(),
                self.pd_endpoints().join(","),
                "--addr".into(),
                m.addr(0),
                "--status-addr".into(),
                m.addr(1),
                "--capacity".into(),
                STORE_CAPACITY.into(),
            ],
        };
        args.extend(["--data-dir".into(), m.data_dir.display().to_string()]);
        if let Some(config) = &m.config {
            args.extend(["--config".into(), config.display().to_string()]);
        }
        if let Some(labels) = &m.labels {
            args.extend(["--labels".into(), labels.clone()]);
        }
        args
    }

    /// Spawns the process of `role` and waits until it listens. On its first start
    /// (`may_repick`), a log saying a port was taken leads to new free ports and a retry;
    /// restarts keep their ports, since the others know them.
    pub(crate) async fn spawn(&mut self, role: Role, may_repick: bool) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let args = self.args(role);
            let member = self.member(role)?;
            member.node.spawn(&args)?;
            let (host, ports) = (member.host, member.ports.clone());
            match wait_listening(&mut member.node, host, &ports).await {
                Ok(()) => return Ok(()),
                Err(Error::Exited { log_tail, .. })
                    if may_repick
                        && attempt < 4
                        && self.ports.can_repick()
                        && mentions_addr_in_use(&log_tail) =>
                {
                    tracing::warn!(?role, ?ports, "port taken; picking new ports");
                    let fresh = match role {
                        Role::Placement(_) => vec![self.ports.pd_port()?],
                        Role::Store(i) => {
                            let (a, b) = self.ports.store_ports(i)?;
                            vec![a, b]
                        }
                    };
                    self.member(role)?.ports = fresh;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Spawns the process of `role` without waiting for it to listen (members of a placement
    /// group start together).
    pub(crate) fn spawn_detached(&mut self, role: Role) -> Result<()> {
        let args = self.args(role);
        self.member(role)?.node.spawn(&args)
    }

    /// Waits until the process of `role` listens on all its ports.
    pub(crate) async fn wait_member_listening(&mut self, role: Role) -> Result<()> {
        let member = self.member(role)?;
        let ports = member.ports.clone();
        wait_listening(&mut member.node, member.host, &ports).await
    }

    /// Waits until placement is healthy, every running store is registered and `Up` and answers
    /// on its status port, and every region has a leader that placement names and that store
    /// confirms. Fails at once if a process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            self.check_alive()?;
            let last = match self.ready_observation().await {
                Ok(()) => return Ok(()),
                Err(observation) => observation,
            };
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: self.ready_description(),
                    waited: start.elapsed(),
                    last,
                    logs: self.log_tails(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn running_stores(&self) -> Vec<usize> {
        (0..self.stores.len())
            .filter(|&i| self.store_running(i))
            .collect()
    }

    fn ready_description(&self) -> String {
        let expected: Vec<String> = self
            .running_stores()
            .into_iter()
            .map(|i| self.store_addr(i))
            .collect();
        format!(
            "cluster ready: placement {} healthy, stores {expected:?} Up, every region led",
            self.pd_endpoint()
        )
    }

    /// `Ok` when ready, else what is still missing.
    async fn ready_observation(&self) -> Result<(), String> {
        let pd = self.pd_endpoint();
        let running = self.running_stores();
        let expected: Vec<String> = running.iter().map(|&i| self.store_addr(i)).collect();
        self.http.health(&pd).await?;
        let stores = self.http.stores(&pd).await?;
        let regions = self.http.regions(&pd).await?;
        check_ready(&stores, &regions, &expected)?;
        let mut leading = HashMap::new();
        for &i in &running {
            self.http.store_health(&self.store_status_addr(i)).await?;
            let status = self.store_status(i).await?;
            leading.insert(status.store_id, status.leader_regions);
        }
        check_leaders_confirmed(&regions, &leading)
    }

    /// [`wait_ready`](Self::wait_ready), panicking with the logs on failure.
    pub async fn must_ready(&mut self, timeout: Duration) {
        if let Err(err) = self.wait_ready(timeout).await {
            panic!("{err}");
        }
    }

    /// SIGKILL store `i`.
    pub async fn kill_store(&mut self, i: usize) -> Result<()> {
        self.member(Role::Store(i))?.node.kill().await
    }

    /// SIGTERM store `i` and wait for it to exit ([`STOP_GRACE`], then SIGKILL). Returns its
    /// exit status, or `None` if it was not running.
    pub async fn stop_store(&mut self, i: usize) -> Result<Option<ExitStatus>> {
        self.member(Role::Store(i))?.node.stop(STOP_GRACE).await
    }

    /// Starts store `i` again on its ports and data directory (stopping it first if it runs).
    pub async fn restart_store(&mut self, i: usize) -> Result<()> {
        self.stop_store(i).await?;
        self.spawn(Role::Store(i), false).await
    }

    /// Scale-out on the host of store `i` once placement has drained it to a tombstone: stops
    /// the process, empties its data directory and starts it again on the same address, where
    /// it registers as a new store.
    pub async fn replace_store(&mut self, i: usize) -> Result<()> {
        self.stop_store(i).await?;
        let dir = self.member(Role::Store(i))?.data_dir.clone();
        empty_dir(&dir)?;
        self.spawn(Role::Store(i), false).await
    }

    /// Stops placement member `i`, empties its data directory and starts it again: a new
    /// member under the old name and ports, which must join the running group (after it was
    /// removed from the membership, this is a scale-in followed by a scale-out).
    pub async fn replace_placement_member(&mut self, i: usize) -> Result<()> {
        self.stop_placement_member(i).await?;
        let dir = self.member(Role::Placement(i))?.data_dir.clone();
        empty_dir(&dir)?;
        self.spawn(Role::Placement(i), false).await
    }

    /// SIGKILL placement (member 0).
    pub async fn kill_placement(&mut self) -> Result<()> {
        self.kill_placement_member(0).await
    }

    /// SIGTERM placement (member 0) and wait for it to exit; returns its exit status.
    pub async fn stop_placement(&mut self) -> Result<Option<ExitStatus>> {
        self.stop_placement_member(0).await
    }

    /// Starts placement (member 0) again on its port and data directory.
    pub async fn restart_placement(&mut self) -> Result<()> {
        self.restart_placement_member(0).await
    }

    /// SIGKILL placement member `i`.
    pub async fn kill_placement_member(&mut self, i: usize) -> Result<()> {
        self.member(Role::Placement(i))?.node.kill().await
    }

    /// SIGTERM placement member `i` and wait for it to exit.
    pub async fn stop_placement_member(&mut self, i: usize) -> Result<Option<ExitStatus>> {
        self.member(Role::Placement(i))?.node.stop(STOP_GRACE).await
    }

    /// Starts placement member `i` again on its ports and data directory (stopping it first).
    pub async fn restart_placement_member(&mut self, i: usize) -> Result<()> {
        self.stop_placement_member(i).await?;
        self.spawn(Role::Placement(i), false).await
    }

    /// The index of the placement member that leads, as the running members report it.
    pub async fn placement_leader(&self) -> Result<usize> {
        let leader = self
            .http
            .leader_name(&self.pd_endpoint())
            .await
            .map_err(Error::NotRunning)?;
        (0..self.placements.len())
            .find(|&i| self.placement_name(i) == leader)
            .ok_or_else(|| Error::NotRunning(format!("unknown placement leader `{leader}`")))
    }

    /// Asks placement member `via` (it must lead: a follower refuses) to hand its leadership to
    /// member `name` (`POST .../leader/transfer`).
    pub async fn transfer_placement_leader(
        &self,
        via: usize,
        name: &str,
    ) -> std::result::Result<(), String> {
        let url = format!(
            "http://{}/pd/api/v1/leader/transfer/{name}",
            self.placement_addr(via)
        );
        self.http.send(reqwest::Method::POST, &url).await.map(drop)
    }

    /// Steps a process's wall clock by `ms` milliseconds (0 ends it): the clock a placement
    /// member's timestamp oracle reads, or the one a store's raw TTLs read. Needs `[debug]
    /// fault-injection = true` in its config.
    pub async fn set_clock_offset(&self, role: Role, ms: i64) -> std::result::Result<(), String> {
        let addr = match role {
            Role::Placement(i) => self.placement_addr(i),
            Role::Store(i) => self.store_status_addr(i),
        };
        let url = format!("http://{addr}/debug/clock-offset/{ms}");
        self.http.send(reqwest::Method::POST, &url).await.map(drop)
    }

    /// Whether the process in `role` runs (not killed or exited; a paused one runs).
    pub fn running(&self, role: Role) -> bool {
        match role {
            Role::Placement(i) => self.placement_running(i),
            Role::Store(i) => self.store_running(i),
        }
    }

    /// Makes every synced write (the raft log's) of store `i` wait `ms` milliseconds first, as
    /// on a slow disk; 0 ends it (needs `[debug] fault-injection = true` in the store config).
    pub async fn set_sync_delay(&self, i: usize, ms: u64) -> std::result::Result<(), String> {
        let url = format!(
            "http://{}/debug/engine/sync-delay/{ms}",
            self.store_status_addr(i)
        );
        self.http.send(reqwest::Method::POST, &url).await.map(drop)
    }

    /// Store `i`'s disk usage level as its metrics report it (`store_disk{type="usage"}`: 0
    /// normal, 1 almost full, 2 already full).
    pub async fn disk_usage(&self, i: usize) -> std::result::Result<u8, String> {
        let url = format!("http://{}/metrics", self.store_status_addr(i));
        let text = self.http.send(reqwest::Method::GET, &url).await?;
        text.lines()
            .find_map(|l| l.strip_prefix("store_disk{type=\"usage\"} "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| "no store_disk usage gauge in the metrics".to_owned())
    }

    /// Every process's name and log file.
    pub fn log_files(&self) -> Vec<(String, PathBuf)> {
        self.placements
            .iter()
            .chain(&self.stores)
            .map(|m| (m.node.name().to_owned(), m.node.log_path().to_path_buf()))
            .collect()
    }

    /// Errors with the exit status and log tail of the first process that exited on its own.
    pub fn check_alive(&mut self) -> Result<()> {
        for m in self.placements.iter_mut().chain(&mut self.stores) {
            if let Some(status) = m.node.exited() {
                return Err(m.node.exited_error(status));
            }
        }
        Ok(())
    }

    /// The processes that exited on their own since the last call (each reported once), as
    /// their `Exited` errors with log tails.
    pub fn reap_exited(&mut self) -> Vec<Error> {
        self.placements
            .iter_mut()
            .chain(&mut self.stores)
            .filter_map(|m| m.node.exited().map(|status| m.node.exited_error(status)))
            .collect()
    }

    /// Whether any placement member still runs.
    pub fn any_placement_running(&self) -> bool {
        self.placements.iter().any(|m| m.node.is_running())
    }

    /// Stops every process cleanly: SIGTERM the stores, then placement, waiting for each.
    pub async fn stop_all(&mut self) -> Result<()> {
        for i in 0..self.stores.len() {
            self.stop_store(i).await?;
        }
        for i in 0..self.placements.len() {
            self.stop_placement_member(i).await?;
        }
        Ok(())
    }
}

/// Waits until `node` accepts connections on every port in `ports`, or fails if it exits.
async fn wait_listening(node: &mut Node, host: Ipv4Addr, ports: &[u16]) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Some(status) = node.exited() {
            return Err(node.exited_error(status));
        }
        let mut all = true;
        for &port in ports {
            all &= is_listening(host, port).await;
        }
        if all {
            return Ok(());
        }
        if start.elapsed() > LISTEN_TIMEOUT {
            return Err(Error::Timeout {
                what: format!("{} to listen on ports {ports:?}", node.name()),
                waited: start.elapsed(),
                last: "not all ports accept connections".to_owned(),
                logs: node.log_tail(LOG_TAIL_LINES),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes everything inside `dir` but not `dir` itself (it may be a mount point).
fn empty_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.log_tails());
        }
        // Kill and reap before the temporary directory goes, so no process writes into it.
        for m in self.placements.iter_mut().chain(&mut self.stores) {
            m.node.kill_blocking();
        }
        for dir in &self.mounts {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(dir)
                .status();
        }
        if panicking {
            if let Some(temp) = self.temp.take() {
                // Logs and data stay for the post-mortem; each store's space placeholder
                // (1 GiB of nothing) goes, or a few failed runs fill the disk.
                for m in &self.stores {
                    let _ = std::fs::remove_file(m.data_dir.join("space_placeholder_file"));
                }
                let kept = temp.keep();
                eprintln!("cluster directory kept at {}", kept.display());
            }
        }
    }
}
