//! Describing a cluster to start: [`ClusterBuilder`].
//!
//! The builder holds the store count, the cluster directory (a temporary one by default), the
//! TOML config texts for placement and stores, per-store `--labels`, the port plan and whether
//! children get their own process groups and network namespaces. [`ClusterBuilder::start`] lays out the directories,
//! starts placement and then each store, and returns the [`Cluster`] once every process listens;
//! [`ClusterBuilder::must_start`] also waits until the cluster is ready.

use std::path::PathBuf;

use crate::cluster::{Cluster, Member, Role, READY_TIMEOUT};
use crate::error::{Error, Result};
use crate::netns::{self, PodNet};
use crate::pd_api::PdHttp;
use crate::ports::PortPlan;
use crate::process::Binaries;

/// Describes a cluster to start.
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    placements: usize,
    stores: usize,
    dir: Option<PathBuf>,
    store_config: Option<String>,
    placement_config: Option<String>,
    labels: Vec<Option<String>>,
    ports: PortPlan,
    own_process_groups: bool,
    own_network: bool,
    /// Each store's data directory on a tmpfs of this many bytes (needs root).
    store_tmpfs: Option<u64>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            placements: 1,
            stores: 3,
            dir: None,
            store_config: None,
            placement_config: None,
            labels: Vec::new(),
            ports: PortPlan::Free,
            own_process_groups: false,
            own_network: false,
            store_tmpfs: None,
        }
    }
}

impl ClusterBuilder {
    /// Number of placement members (default 1). More than one form a raft group started with
    /// `--initial-cluster`, each with its own peer port.
    pub fn placements(mut self, n: usize) -> Self {
        self.placements = n.max(1);
        self
    }

    /// Number of stores (default 3).
    pub fn stores(mut self, n: usize) -> Self {
        self.stores = n;
        self
    }

    /// Cluster directory, kept after the cluster goes (default: a temporary directory).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// TOML text written to `store-i/store.toml` and passed to every store with `--config`.
    pub fn store_config(mut self, toml: impl Into<String>) -> Self {
        self.store_config = Some(toml.into());
        self
    }

    /// TOML text written to `placement/placement.toml` and passed with `--config`.
    pub fn placement_config(mut self, toml: impl Into<String>) -> Self {
        self.placement_config = Some(toml.into());
        self
    }

    /// `--labels` for store `index`, e.g. `zone=z1,host=h1`.
    pub fn store_labels(mut self, index: usize, labels: impl Into<String>) -> Self {
        if self.labels.len() <= index {
            self.labels.resize(index + 1, None);
        }
        self.labels[index] = Some(labels.into());
        self
    }

    /// Port plan (default: free ports; the playground uses fixed ones).
    pub fn ports(mut self, ports: PortPlan) -> Self {
        self.ports = ports;
        self
    }

    /// Runs each child in its own process group (see `Node::set_own_process_group`).
    pub fn own_process_groups(mut self, own: bool) -> Self {
        self.own_process_groups = own;
        self
    }

    /// Gives every process a network namespace of its own on a private bridge (see
    /// [`crate::netns`]), so that partitions cut real packets ([`crate::partition`]). Needs root.
    pub fn own_network(mut self, own: bool) -> Self {
        self.own_network = own;
        self
    }

    /// Puts every store's data directory on a tmpfs of `bytes` of its own (needs root), so a
    /// test can fill a store's disk: the fault suite's fill-disk fault.
    pub fn store_tmpfs(mut self, bytes: u64) -> Self {
        self.store_tmpfs = Some(bytes);
        self
    }

    /// Starts placement, then each store, and waits until every process listens on its ports.
    /// Does not wait for readiness: see [`Cluster::wait_ready`].
    pub async fn start(self) -> Result<Cluster> {
        let bins = Binaries::locate()?;
        let (root, temp) = match &self.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("kv-e2e-")
                    .tempdir()
                    .map_err(|e| Error::io(std::env::temp_dir(), e))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut placements = Vec::new();
        for i in 0..self.placements {
            let name = if self.placements == 1 {
                "placement".to_owned()
            } else {
                format!("placement-{i}")
            };
            let mut member = Member::new(
                &name,
                &root,
                bins.placement.clone(),
                self.placement_config.as_deref(),
                None,
            )?;
            member.node.set_own_process_group(self.own_process_groups);
            placements.push(member);
        }
        let mut cluster = Cluster {
            root,
            temp,
            ports: self.ports,
            placements,
            stores: Vec::new(),
            http: PdHttp::default(),
            net: None,
            mounts: Vec::new(),
        };
        for i in 0..self.stores {
            let labels = self.labels.get(i).cloned().flatten();
            let name = format!("store-{i}");
            let store_config = self.store_config.as_deref();
            let mut member = Member::new(
                &name,
                &cluster.root,
                bins.store.clone(),
                store_config,
                labels,
            )?;
            member.node.set_own_process_group(self.own_process_groups);
            if let Some(bytes) = self.store_tmpfs {
                mount_tmpfs(&member.data_dir, bytes)?;
                cluster.mounts.push(member.data_dir.clone());
            }
            cluster.stores.push(member);
        }
        if self.own_network {
            cluster.net = Some(join_pods(&mut cluster).await?);
        }
        if self.placements == 1 {
            cluster.placements[0].ports = vec![cluster.ports.pd_port()?];
            cluster.spawn(Role::Placement(0), true).await?;
        } else {
            // Every member must know every peer URL up front: pick all ports first, and
            // start the members together (each waits for the others to form the group).
            for i in 0..self.placements {
                let (client, peer) = cluster.ports.placement_ports(i)?;
                cluster.placements[i].ports = vec![client, peer];
            }
            for i in 0..self.placements {
                cluster.spawn_detached(Role::Placement(i))?;
            }
            for i in 0..self.placements {
                cluster.wait_member_listening(Role::Placement(i)).await?;
            }
        }
        for i in 0..self.stores {
            let (port, status) = cluster.ports.store_ports(i)?;
            cluster.stores[i].ports = vec![port, status];
            cluster.spawn(Role::Store(i), true).await?;
        }
        Ok(cluster)
    }

    /// [`start`](Self::start) and [`Cluster::must_ready`] with [`READY_TIMEOUT`]; panics on failure.
    pub async fn must_start(self) -> Cluster {
        let mut cluster = match self.start().await {
            Ok(cluster) => cluster,
            Err(err) => panic!("cluster failed to start: {err}"),
        };
        cluster.must_ready(READY_TIMEOUT).await;
        cluster
    }
}

/// Creates the cluster network and puts every member in a pod of its own (`pd0`, `s0`, ...).
async fn join_pods(cluster: &mut Cluster) -> Result<PodNet> {
    if let Some(reason) = netns::skip_reason() {
        return Err(Error::Command {
            command: "create a cluster network".to_owned(),
            reason,
        });
    }
    let names: Vec<String> = (0..cluster.placements.len())
        .map(|i| format!("pd{i}"))
        .chain((0..cluster.stores.len()).map(|i| format!("s{i}")))
        .collect();
    let (net, pods) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut net = PodNet::create()?;
        let mut pods = Vec::new();
        for name in &names {
            pods.push(net.add_pod(name)?);
        }
        Ok((net, pods))
    })
    .await
    .map_err(|e| Error::Command {
        command: "create a cluster network".to_owned(),
        reason: e.to_string(),
    })??;
    let members = cluster.placements.iter_mut().chain(&mut cluster.stores);
    for (member, pod) in members.zip(pods) {
        member.join_pod(pod);
    }
    Ok(net)
}

/// Mounts a tmpfs of `bytes` at `dir`.
fn mount_tmpfs(dir: &std::path::Path, bytes: u64) -> Result<()> {
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| Error::Command {
            command: format!("mount -t tmpfs {}", dir.display()),
            reason: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: format!("mount -t tmpfs {}", dir.display()),
        reason: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}
