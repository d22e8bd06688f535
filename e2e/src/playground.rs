//! The `playground` command: a local cluster on the default ports for trying the clients.
//!
//! [`PlaygroundOptions`] are the command-line choices; [`run`] starts one placement and N stores
//! through the same [`ClusterBuilder`] the tests use (fixed ports, a kept directory whose data is
//! reused on the next run), waits until the cluster serves raw reads and timestamps for both API
//! versions, prints one `ready` line with the placement endpoint, and then watches: SIGINT or
//! SIGTERM stops every child cleanly (SIGTERM, wait) and returns `Ok`; a store or placement
//! member that dies on its own is reported and the others go on (that is what replication is
//! for), unless no placement member is left, which is reported as an error after the others
//! are stopped.

use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::builder::ClusterBuilder;
use crate::client::wait_serving;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::ports::PortPlan;

/// How often the playground checks that its children are alive.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// What the playground runs.
#[derive(Clone, Debug)]
pub struct PlaygroundOptions {
    /// Number of stores.
    pub stores: usize,
    /// Number of placement members (1, or 3 for a highly available group).
    pub placements: usize,
    /// Directory for every process's data, config and log; reused across runs.
    pub dir: PathBuf,
    /// Placement client port.
    pub pd_port: u16,
    /// Port of store 0; store i listens on `store_port + i`.
    pub store_port: u16,
    /// Status port of store 0; store i serves status on `status_port + i`.
    pub status_port: u16,
    /// How long to wait for the cluster to serve requests.
    pub ready_timeout: Duration,
    /// Spread the stores round-robin over this many zones ([`store_labels`]); 0 = no labels.
    pub zones: usize,
}

impl Default for PlaygroundOptions {
    fn default() -> Self {
        PlaygroundOptions {
            stores: 3,
            placements: 1,
            dir: PathBuf::from("./playground-data"),
            pd_port: 2379,
            store_port: 20160,
            status_port: 20180,
            ready_timeout: Duration::from_secs(120),
            zones: 0,
        }
    }
}

/// Store `i`'s `--labels` with `zones` zones: `zone=zone-<(i % zones) + 1>,host=host-<i + 1>`;
/// none without zones.
pub fn store_labels(i: usize, zones: usize) -> Option<String> {
    (zones > 0).then(|| format!("zone=zone-{},host=host-{}", i % zones + 1, i + 1))
}

/// Placement's config with zones: location labels `zone`, then `host`.
pub const ZONED_PLACEMENT_CONFIG: &str = "location-labels = [\"zone\", \"host\"]\n";

/// The line printed once the cluster serves requests: the placement endpoints (comma
/// separated when there are several members) and the store count.
pub fn ready_line(pd_endpoint: &str, stores: usize) -> String {
    format!("playground ready: pd endpoint {pd_endpoint} ({stores} stores)")
}

/// Runs the playground until a signal (`Ok`) or the death of every placement member (`Err`).
pub async fn run(opts: PlaygroundOptions) -> Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| Error::io(&opts.dir, e))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| Error::io(&opts.dir, e))?;
    let mut builder = ClusterBuilder::default()
        .placements(opts.placements)
        .stores(opts.stores)
        .dir(&opts.dir)
        .own_process_groups(true)
        .ports(PortPlan::Fixed {
            pd: opts.pd_port,
            store_base: opts.store_port,
            status_base: opts.status_port,
        });
    if opts.zones > 0 {
        builder = builder.placement_config(ZONED_PLACEMENT_CONFIG);
        for i in 0..opts.stores {
            if let Some(labels) = store_labels(i, opts.zones) {
                builder = builder.store_labels(i, labels);
            }
        }
    }
    // A signal during start drops the half-started cluster, which kills its children.
    let mut cluster = tokio::select! {
        started = builder.start() => started?,
        _ = sigint.recv() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let ready = async {
        cluster.wait_ready(opts.ready_timeout).await?;
        wait_serving(&cluster, opts.ready_timeout).await
    };
    let outcome = tokio::select! {
        ready = ready => ready.map(|()| true),
        _ = sigint.recv() => Ok(false),
        _ = sigterm.recv() => Ok(false),
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => return shut_down(&mut cluster, Ok(())).await,
        Err(err) => return shut_down(&mut cluster, Err(err)).await,
    }
    println!(
        "{}",
        ready_line(&cluster.pd_endpoints().join(","), cluster.store_count())
    );
    let result = watch(&mut cluster, &mut sigint, &mut sigterm).await;
    shut_down(&mut cluster, result).await
}

/// Returns `Ok` on SIGINT/SIGTERM and the child's error if one exits on its own.
async fn watch(cluster: &mut Cluster, sigint: &mut Signal, sigterm: &mut Signal) -> Result<()> {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            _ = sigint.recv() => {
                tracing::info!("SIGINT: stopping the cluster");
                return Ok(());
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping the cluster");
                return Ok(());
            }
            _ = tick.tick() => {
                // Stores and placement members are replicated: one that dies (or is killed to
                // see failover) is reported and the rest go on; without any placement member
                // the cluster cannot serve, and the playground stops.
                let mut exited = cluster.reap_exited();
                if !cluster.any_placement_running() {
                    if let Some(err) = exited.pop() {
                        return Err(err);
                    }
                }
                for err in exited {
                    tracing::warn!(%err, "a playground process exited; the cluster goes on without it");
                    eprintln!("playground: {err}");
                }
            }
        }
    }
}

/// Stops every child and returns `result`, or the stop error if `result` was `Ok`.
async fn shut_down(cluster: &mut Cluster, result: Result<()>) -> Result<()> {
    if result.is_err() {
        tracing::error!("a process failed; stopping the cluster");
    }
    let stopped = cluster.stop_all().await;
    result.and(stopped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_names_the_endpoint() {
        let line = ready_line("127.0.0.1:2379", 3);
        assert!(line.contains("ready"));
        assert!(line.contains("127.0.0.1:2379"));
    }

    #[test]
    fn zones_round_robin() {
        let labels: Vec<Option<String>> = (0..4).map(|i| store_labels(i, 3)).collect();
        assert_eq!(
            labels,
            [
                Some("zone=zone-1,host=host-1".to_owned()),
                Some("zone=zone-2,host=host-2".to_owned()),
                Some("zone=zone-3,host=host-3".to_owned()),
                Some("zone=zone-1,host=host-4".to_owned()),
            ]
        );
        assert_eq!(store_labels(0, 0), None);
        assert_eq!(
            ZONED_PLACEMENT_CONFIG.trim(),
            r#"location-labels = ["zone", "host"]"#
        );
    }

    #[test]
    fn defaults_are_tikvs() {
        let opts = PlaygroundOptions::default();
        assert_eq!(
            (opts.pd_port, opts.store_port, opts.status_port),
            (2379, 20160, 20180)
        );
        assert_eq!(opts.stores, 3);
        assert_eq!(opts.dir, PathBuf::from("./playground-data"));
    }
}
