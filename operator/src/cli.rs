//! The operator binary's flags and its `run`, in the library so tests check the chart's
//! Deployment against the very parser the binary uses.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Parser;

use crate::lease::LeaseLock;
use crate::server::{self, Health};

/// How long a leader's lease lasts without renewal.
const LEASE_TTL: Duration = Duration::from_secs(15);

#[derive(Parser, Debug, Clone)]
#[command(
    name = "operator",
    version,
    about = "Kubernetes operator for ferrokv TikvClusters"
)]
pub struct Args {
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Watch TikvClusters in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Run only while holding the coordination Lease, so several replicas can run.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// ClusterRole (installed by the chart) each cluster's placement ServiceAccount is bound to,
    /// so placement can read pods and nodes for store topology. Unset: no binding is made.
    #[arg(long, env = "PLACEMENT_TOPOLOGY_CLUSTER_ROLE")]
    pub placement_topology_cluster_role: Option<String>,
    /// Log format: `json` or `text`.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    pub log_format: String,
}

/// Serves health and metrics, then runs the controller (once leading, with `--leader-elect`)
/// until a shutdown signal or the loss of the lease.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let health = Health::default();
    let server = server::serve(args.metrics_addr, health.clone());
    tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    let client = kube::Client::try_default().await?;
    let controller = crate::controller::run(
        client.clone(),
        args.watch_namespace,
        args.placement_topology_cluster_role,
        health.metrics.clone(),
    );
    if !args.leader_elect {
        health.ready.store(true, Ordering::Relaxed);
        controller.await;
        return Ok(());
    }
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| "tikv-operator".into());
    let lock = LeaseLock::new(
        client,
        &args.lease_namespace,
        "tikv-operator",
        &identity,
        LEASE_TTL,
    );
    lock.acquire().await?;
    health.ready.store(true, Ordering::Relaxed);
    tokio::select! {
        () = controller => Ok(()),
        () = lock.keep() => anyhow::bail!("lost the leader lease; exiting so a standby takes over"),
    }
}
