//! Faults between and inside processes: network partitions on a cluster network, process pauses.
//!
//! On a cluster started with [`own_network`](crate::builder::ClusterBuilder::own_network) every
//! process has a network namespace of its own, so a partition is real packet loss: a blackhole
//! route in A's namespace to B's address drops every packet A sends to B (TCP to and from B then
//! stalls both ways; UDP from B still arrives, which is what one-way loss means).
//! [`Cluster::cut`] adds such routes for (from, to) pairs, [`Cluster::partition`] cuts every
//! pair across the given sides both ways, and [`Cluster::heal_network`] removes every blackhole
//! route. The test process itself (the clients) stays connected to every node, as Jepsen's
//! control node does. [`Cluster::pause`] and [`Cluster::resume`] send SIGSTOP and SIGCONT.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cluster::{Cluster, Role};
use crate::error::{Error, Result};

impl Cluster {
    /// Whether every process runs in a network namespace of its own.
    pub fn has_own_network(&self) -> bool {
        self.net.is_some()
    }

    /// Every process of the cluster, placement members first.
    pub fn roles(&self) -> Vec<Role> {
        (0..self.placements.len())
            .map(Role::Placement)
            .chain((0..self.stores.len()).map(Role::Store))
            .collect()
    }

    fn netns_of(&self, role: Role) -> Result<(&str, std::net::Ipv4Addr)> {
        let member = match role {
            Role::Placement(i) => self.placements.get(i),
            Role::Store(i) => self.stores.get(i),
        };
        let pod = member
            .and_then(|m| m.pod.as_ref())
            .ok_or_else(|| Error::Command {
                command: format!("cut the network of {role:?}"),
                reason: "the cluster has no network of its own (see ClusterBuilder::own_network)"
                    .to_owned(),
            })?;
        Ok((pod.netns.as_str(), pod.ip))
    }

    /// Drops every packet `from` sends to `to`, for each pair.
    pub async fn cut(&self, pairs: &[(Role, Role)]) -> Result<()> {
        for &(from, to) in pairs {
            let (netns, _) = self.netns_of(from)?;
            let (_, ip) = self.netns_of(to)?;
            let route = format!("{ip}/32");
            ip_netns(netns, &["route", "replace", "blackhole", &route]).await?;
        }
        Ok(())
    }

    /// Cuts every pair of processes on different sides, both ways. Processes on no side keep
    /// every link.
    pub async fn partition(&self, sides: &[Vec<Role>]) -> Result<()> {
        let mut pairs = Vec::new();
        for (i, a) in sides.iter().enumerate() {
            for b in sides.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        pairs.extend([(x, y), (y, x)]);
                    }
                }
            }
        }
        self.cut(&pairs).await
    }

    /// Slows everything `role` sends: its interface passes `kbit` kilobits a second, queueing
    /// the excess for up to `queue_ms` and dropping the rest (a token bucket, `tc tbf`). Under
    /// load its packets are delayed by a varying amount. (`tc netem`, which would add a fixed
    /// delay and jitter, is not in every kernel; this one has no `sch_netem`.)
    pub async fn throttle(&self, role: Role, kbit: u32, queue_ms: u32) -> Result<()> {
        let (netns, _) = self.netns_of(role)?;
        let (rate, latency) = (format!("{kbit}kbit"), format!("{queue_ms}ms"));
        let args = [
            "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", &rate, "burst", "16kbit",
            "latency", &latency,
        ];
        blocking("tc -n", netns, &args, crate::netns::tc_in).await
    }

    /// Removes every cut and throttle: each namespace's blackhole routes and queueing rules.
    pub async fn heal_network(&self) -> Result<()> {
        for role in self.roles() {
            let (netns, _) = self.netns_of(role)?;
            ip_netns(netns, &["route", "flush", "type", "blackhole"]).await?;
            // Fails when there is no rule to delete: nothing to heal then.
            let unthrottle = ["qdisc", "del", "dev", "eth0", "root"];
            let _ = blocking("tc -n", netns, &unthrottle, crate::netns::tc_in).await;
        }
        Ok(())
    }

    /// The process id of `role`'s running process.
    pub fn pid_of(&self, role: Role) -> Option<u32> {
        match role {
            Role::Placement(i) => self.placements.get(i)?.node.pid(),
            Role::Store(i) => self.stores.get(i)?.node.pid(),
        }
    }

    /// SIGSTOP: the process stops where it is, its sockets open, until [`Cluster::resume`].
    pub fn pause(&self, role: Role) -> Result<()> {
        self.signal(role, Signal::SIGSTOP)
    }

    /// SIGCONT a paused process (harmless on a running one).
    pub fn resume(&self, role: Role) -> Result<()> {
        self.signal(role, Signal::SIGCONT)
    }

    fn signal(&self, role: Role, signal: Signal) -> Result<()> {
        let pid = self
            .pid_of(role)
            .ok_or_else(|| Error::NotRunning(format!("{role:?}")))?;
        let pid = i32::try_from(pid).map_err(|_| Error::NotRunning(format!("{role:?}")))?;
        kill(Pid::from_raw(pid), signal).map_err(|e| Error::Command {
            command: format!("kill -{signal} {pid}"),
            reason: e.to_string(),
        })
    }
}

/// `ip -n netns args`, off the async runtime's threads (see [`crate::netns`]).
async fn ip_netns(netns: &str, args: &[&str]) -> Result<()> {
    blocking("ip -n", netns, args, crate::netns::ip_in).await
}

/// Runs `tool(netns, args)` (a setup command) off the async runtime's threads.
async fn blocking(
    what: &str,
    netns: &str,
    args: &[&str],
    tool: fn(&str, &[&str]) -> Result<String>,
) -> Result<()> {
    let netns = netns.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool(&netns, &args).map(drop)
    })
    .await
    .map_err(|e| Error::Command {
        command: what.to_owned(),
        reason: e.to_string(),
    })?
}
