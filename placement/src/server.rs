//! Server wiring: [`start`] binds the client port and serves gRPC (`pdpb.PD`,
//! `keyspacepb.Keyspace`, etcd `KV`/`Cluster`) and PD's HTTP API on it, HTTP/1.1 and h2c
//! multiplexed by one axum server as PD does on 2379. [`run`] is what the binary calls.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use proto::etcdserverpb::cluster_server::ClusterServer;
use proto::etcdserverpb::kv_server::KvServer;
use proto::keyspacepb::keyspace_server::KeyspaceServer;
use proto::pdpb::pd_server::PdServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::Result;
use crate::service::etcd::EtcdService;
use crate::service::keyspace::KeyspaceService;
use crate::service::pd::PdService;
use crate::state::{advertised_urls, Placement};

/// How long [`RunningServer::stop`] waits for connections to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A placement server running in this process.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<Placement>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
}

/// gRPC services and HTTP routes on one router.
pub fn router(state: Arc<Placement>) -> Router {
    let grpc = tonic::service::Routes::new(PdServer::new(PdService::new(state.clone())))
        .add_service(KeyspaceServer::new(KeyspaceService::new(state.clone())))
        .add_service(KvServer::new(EtcdService::new(state.clone())))
        .add_service(ClusterServer::new(EtcdService::new(state.clone())));
    grpc.into_axum_router()
        .reset_fallback()
        .merge(crate::http::router(state))
}

/// Binds `client-urls` (port 0 picks one), opens the data directory and starts serving.
pub async fn start(config: Config) -> Result<RunningServer> {
    config.validate()?;
    let listener = TcpListener::bind(config.listen_addr()?).await?;
    let addr = listener.local_addr()?;
    let state = Placement::open(config.clone(), advertised_urls(&config, addr)).await?;
    let app = router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    let ticker = tokio::spawn(tso_ticker(state.clone(), config.tso_save_interval.0));
    tracing::info!(
        %addr,
        client_urls = ?state.client_urls,
        cluster_id = state.cluster_id,
        name = %config.name,
        "placement ready"
    );
    Ok(RunningServer {
        addr,
        state,
        shutdown: Some(tx),
        task,
        ticker,
    })
}

/// Keeps the persisted TSO window ahead of the clock so requests rarely wait for the disk,
/// and turns drained stores into tombstones.
async fn tso_ticker(state: Arc<Placement>, interval: Duration) {
    let period = (interval / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = state.shutting_down() => return,
        }
        if let Err(e) = state.tso.tick().await {
            tracing::warn!(error = %e, "extending the tso window failed");
        }
        if let Err(e) = state.tombstone_drained().await {
            tracing::warn!(error = %e, "marking drained stores tombstone failed");
        }
    }
}

impl RunningServer {
    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`, what clients and stores are given as the PD endpoint.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn cluster_id(&self) -> u64 {
        self.state.cluster_id
    }

    /// The shared state, for in-process inspection.
    pub fn state(&self) -> &Arc<Placement> {
        &self.state
    }

    /// Ends streams, drains connections (at most [`DRAIN_TIMEOUT`]) and closes the database,
    /// so the data directory can be reopened at once.
    pub async fn stop(mut self) -> Result<()> {
        self.state.begin_shutdown();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = match tokio::time::timeout(DRAIN_TIMEOUT, &mut self.task).await {
            Ok(joined) => joined.unwrap_or(Ok(())),
            Err(_) => {
                tracing::warn!("connections did not drain in time; closing them");
                self.task.abort();
                Ok(())
            }
        };
        let _ = (&mut self.ticker).await;
        let writer = self.state.writer.clone();
        // Joining the writer thread waits for its last fsync: keep it off the async workers.
        let _ = tokio::task::spawn_blocking(move || writer.close()).await;
        tracing::info!(addr = %self.addr, "placement stopped");
        served.map_err(Into::into)
    }
}

/// Runs a placement server until `shutdown` resolves, then stops it gracefully.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let server = start(config).await?;
    shutdown.await;
    server.stop().await
}
