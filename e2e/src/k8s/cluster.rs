//! A whole test Kubernetes cluster: the real control plane ([`ControlPlane`]) bound to the host's
//! address on the pod network, node agents for a given topology, cluster DNS and the volume
//! provisioner. [`KubeCluster::start`] brings it up; dropping it (or [`KubeCluster::stop`])
//! stops the agents and their pods, the control plane, and removes the pod network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::control_plane::ControlPlane;
use super::node_agent::{Fabric, NodeAgent, NodeSpec};
use super::tools::Tools;
use crate::error::{Error, Result};
use crate::netns::PodNet;
use crate::wait::wait_for;

/// The `node.kubernetes.io/instance-type` of every node (the zones example selects it).
pub const INSTANCE_TYPE: &str = "storage-optimized";
/// How long nodes may take to be Ready after registering.
const NODES_READY: Duration = Duration::from_secs(90);

/// A kube client for `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Result<Client> {
    let fail = |reason: String| Error::Command {
        command: format!("kube client for {}", kubeconfig.display()),
        reason,
    };
    let config = Kubeconfig::read_from(kubeconfig).map_err(|e| fail(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    Client::try_from(config).map_err(|e| fail(e.to_string()))
}

/// The running cluster.
pub struct KubeCluster {
    plane: Option<ControlPlane>,
    fabric: Option<Arc<Fabric>>,
    agents: tokio::sync::Mutex<Vec<NodeAgent>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    admin: Client,
    dir: PathBuf,
}

impl KubeCluster {
    /// Creates the pod network, starts the control plane on the host's address on it, cluster
    /// DNS, the provisioner and one node agent per `(name, zone)`, and waits for every node to
    /// be Ready. Pods' commands resolve to binaries in `bin_dir`.
    pub async fn start(
        tools: &Tools,
        dir: &Path,
        bin_dir: PathBuf,
        nodes: &[(&str, &str)],
    ) -> Result<KubeCluster> {
        let net = tokio::task::spawn_blocking(PodNet::create)
            .await
            .map_err(|e| Error::Command {
                command: "create the pod network".into(),
                reason: e.to_string(),
            })??;
        let host_ip = net.host_ip();
        let plane = match ControlPlane::start(tools, &dir.join("control-plane"), host_ip).await {
            Ok(plane) => plane,
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || drop(net)).await;
                return Err(e);
            }
        };
        let port = plane
            .server()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(443);
        let fabric = Fabric::new(net, dir.join("nodes"), bin_dir, host_ip.to_string(), port);
        let admin = client_for(plane.admin_kubeconfig()).await?;
        let cluster = KubeCluster {
            plane: Some(plane),
            fabric: Some(fabric.clone()),
            agents: tokio::sync::Mutex::new(Vec::new()),
            tasks: vec![
                tokio::spawn(fabric.clone().publish_dns(admin.clone())),
                tokio::spawn(super::provisioner::run(admin.clone(), dir.join("volumes"))),
            ],
            admin,
            dir: dir.to_path_buf(),
        };
        for (name, zone) in nodes {
            cluster.add_node(name, zone).await?;
        }
        cluster.wait_nodes_ready(nodes.len()).await?;
        Ok(cluster)
    }

    /// Starts a node agent for node `name` in `zone` (again, after [`KubeCluster::crash_node`]).
    pub async fn add_node(&self, name: &str, zone: &str) -> Result<()> {
        let plane = self.plane();
        let kubeconfig = plane.node_kubeconfig(name)?;
        let client = client_for(&kubeconfig).await?;
        let spec = NodeSpec {
            name: name.to_owned(),
            zone: zone.to_owned(),
            instance_type: INSTANCE_TYPE.to_owned(),
        };
        let fabric = self
            .fabric
            .clone()
            .ok_or_else(|| Error::NotRunning("pod network".into()))?;
        let agent = NodeAgent::start(fabric, client, spec)
            .await
            .map_err(|reason| Error::Command {
                command: format!("start node agent {name}"),
                reason,
            })?;
        self.agents.lock().await.push(agent);
        Ok(())
    }

    /// Crashes node `name`'s agent: heartbeats stop and its pods' processes die.
    pub async fn crash_node(&self, name: &str) {
        let agent = {
            let mut agents = self.agents.lock().await;
            let at = agents.iter().position(|a| a.name() == name);
            at.map(|at| agents.remove(at))
        };
        if let Some(agent) = agent {
            agent.crash().await;
        }
    }

    async fn wait_nodes_ready(&self, count: usize) -> Result<()> {
        let plane = self.plane();
        wait_for(
            &format!("{count} nodes Ready"),
            NODES_READY,
            || async {
                let out = plane
                    .kubectl(&[
                        "get",
                        "nodes",
                        "-o",
                        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
                    ])
                    .await?;
                let ready = out.split_whitespace().filter(|n| n.ends_with("=True")).count();
                if ready >= count {
                    Ok(())
                } else {
                    Err(out)
                }
            },
            || plane.logs(),
        )
        .await
    }

    /// The control plane.
    pub fn plane(&self) -> &ControlPlane {
        self.plane
            .as_ref()
            .expect("the control plane runs until drop")
    }

    /// A client with the admin's credentials.
    pub fn admin(&self) -> Client {
        self.admin.clone()
    }

    /// Where pods keep their files and logs (`nodes/pods/<ns>_<name>_<uid>/<container>.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of the logs of every container of pods whose name starts with `prefix`.
    pub fn pod_logs(&self, prefix: &str, lines: usize) -> String {
        let mut out = String::new();
        let pods = self.dir.join("nodes").join("pods");
        let Ok(entries) = std::fs::read_dir(&pods) else {
            return out;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let pod = name.split('_').nth(1).unwrap_or_default();
            if !pod.starts_with(prefix) {
                continue;
            }
            for log in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = log.path();
                if path.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let all: Vec<&str> = text.lines().collect();
                    let start = all.len().saturating_sub(lines);
                    out.push_str(&format!(
                        "----- {} -----\n{}\n",
                        path.display(),
                        all[start..].join("\n")
                    ));
                }
            }
        }
        out
    }

    /// The whole log of container `container` of the newest pod `namespace/name` run on any
    /// node (it stays after the pod is deleted).
    pub fn pod_log(&self, namespace: &str, name: &str, container: &str) -> String {
        let pods = self.dir.join("nodes").join("pods");
        let prefix = format!("{namespace}_{name}_");
        let newest = std::fs::read_dir(&pods)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
        newest
            .and_then(|e| std::fs::read_to_string(e.path().join(format!("{container}.log"))).ok())
            .unwrap_or_default()
    }

    /// Stops everything: agents (and their pods), DNS, provisioner, control plane, pod network.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        let agents: Vec<NodeAgent> = self.agents.lock().await.drain(..).collect();
        for agent in agents {
            agent.crash().await;
        }
        self.plane.take();
        if let Some(fabric) = self.fabric.take() {
            // The pod network's drop runs `ip` commands: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || drop(fabric)).await;
        }
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        // Agents' pod tasks kill their processes when the runtime drops them; the control
        // plane kills its processes on drop; the pod network removes itself on drop.
        self.agents.get_mut().clear();
        self.plane.take();
        self.fabric.take();
    }
}
