//! A 3-member etcd cluster of Debian's `etcd` (package `etcd-server`) on loopback ports, fsync
//! on (etcd's default): the reference go-ycsb's `etcd` driver and the benchmarks are compared
//! with. [`EtcdCluster::start`] waits until every member's `/health` is true; dropping the
//! cluster kills the members and removes their data.

use std::time::Duration;

use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::ports::free_port;
use crate::wait::wait_for;

/// Members started by [`EtcdCluster::start`] and their client endpoints (`127.0.0.1:port`).
pub struct EtcdCluster {
    children: Vec<Child>,
    pub endpoints: Vec<String>,
    /// Process ids, for resident-memory readings.
    pub pids: Vec<u32>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `members` etcd processes as one new cluster and waits (up to `timeout`) for all
    /// of them to be healthy.
    pub async fn start(members: usize, timeout: Duration) -> Result<EtcdCluster> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("a temporary directory", e))?;
        let mut ports = Vec::with_capacity(members);
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let mut children = Vec::new();
        let mut pids = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let log_path = dir.path().join(format!("e{i}.log"));
            let log = std::fs::File::create(&log_path).map_err(|e| Error::io(&log_path, e))?;
            let err_log = log.try_clone().map_err(|e| Error::io(&log_path, e))?;
            let child = Command::new("etcd")
                .arg("--name")
                .arg(format!("e{i}"))
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .arg("--listen-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--advertise-client-urls")
                .arg(format!("http://127.0.0.1:{client}"))
                .arg("--listen-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-advertise-peer-urls")
                .arg(format!("http://127.0.0.1:{peer}"))
                .arg("--initial-cluster")
                .arg(initial.join(","))
                .arg("--initial-cluster-state")
                .arg("new")
                .stdout(log)
                .stderr(err_log)
                .kill_on_drop(true)
                .spawn()
                .map_err(|source| Error::Spawn {
                    name: format!("etcd e{i}"),
                    program: "etcd".into(),
                    source,
                })?;
            pids.extend(child.id());
            children.push(child);
        }
        let endpoints = ports
            .iter()
            .map(|(c, _)| format!("127.0.0.1:{c}"))
            .collect();
        let cluster = EtcdCluster {
            children,
            endpoints,
            pids,
            dir,
        };
        cluster.wait_healthy(timeout).await?;
        Ok(cluster)
    }

    /// Waits until every member's `/health` says `"health":"true"` (the cluster has a leader).
    async fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let http = reqwest::Client::new();
        let probe = || {
            let http = http.clone();
            let endpoints = self.endpoints.clone();
            async move {
                for ep in endpoints {
                    let body = http
                        .get(format!("http://{ep}/health"))
                        .send()
                        .await
                        .map_err(|e| format!("{ep}: {e}"))?
                        .text()
                        .await
                        .map_err(|e| format!("{ep}: {e}"))?;
                    if !body.contains("\"health\":\"true\"") {
                        return Err(format!("{ep}: {body}"));
                    }
                }
                Ok(())
            }
        };
        wait_for("etcd members healthy", timeout, probe, || self.log_tails()).await
    }

    /// The last lines of each member's log.
    pub fn log_tails(&self) -> String {
        (0..self.children.len())
            .map(|i| {
                let path = self.dir.path().join(format!("e{i}.log"));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                format!("----- etcd e{i} ({}) -----\n{tail}", path.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}
