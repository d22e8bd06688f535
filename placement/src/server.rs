//! Server wiring: [`start`] binds the client port and serves gRPC (`pdpb.PD`,
//! `keyspacepb.Keyspace`, etcd `KV`/`Cluster`) and PD's HTTP API on it, HTTP/1.1 and h2c
//! multiplexed by one axum server as PD does on 2379. [`run`] is what the binary calls.
//!
//! With `[topology] source = "kubernetes"` it also runs the store label sync task
//! ([`crate::topology::sync`]) against the Kubernetes API of the pod it runs in.

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

use crate::config::{Config, LabelSource};
use crate::error::Result;
use crate::gate::gate;
use crate::member::transport::MemberRaftService;
use crate::service::etcd::EtcdService;
use crate::service::keyspace::KeyspaceService;
use crate::service::pd::PdService;
use crate::state::{advertised_urls, Placement};
use crate::topology::{KubernetesTopology, NamespaceHint, TopologySource};
use proto::placementpb::member_raft_server::MemberRaftServer;

/// How long [`RunningServer::stop`] waits for connections to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A placement server running in this process.
pub struct RunningServer {
    addr: SocketAddr,
    state: Arc<Placement>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
    peer_shutdown: Option<oneshot::Sender<()>>,
    peer_task: Option<JoinHandle<std::io::Result<()>>>,
    /// The Kubernetes topology sync task, with `[topology] source = "kubernetes"`.
    topology: Option<JoinHandle<()>>,
}

/// gRPC services and HTTP routes on one router, behind the leader [`gate`].
pub fn router(state: Arc<Placement>) -> Router {
    let grpc = tonic::service::Routes::new(PdServer::new(PdService::new(state.clone())))
        .add_service(KeyspaceServer::new(KeyspaceService::new(state.clone())))
        .add_service(KvServer::new(EtcdService::new(state.clone())))
        .add_service(ClusterServer::new(EtcdService::new(state.clone())))
        // gRPC health, as PD's embedded etcd serves it: every member answers SERVING.
        .add_service(tonic_health::server::health_reporter().1);
    grpc.into_axum_router()
        .reset_fallback()
        .merge(crate::http::router(state.clone()))
        .layer(axum::middleware::from_fn_with_state(state, gate))
}

/// Serves the members' raft traffic on the peer URL.
async fn serve_peers(
    state: Arc<Placement>,
    listener: TcpListener,
    shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let service = MemberRaftService::new(
        state.member.clone(),
        state.writer.node_sender(),
        state.cluster_id,
    );
    let server = MemberRaftServer::new(service)
        .max_decoding_message_size(crate::member::transport::MAX_MESSAGE)
        .max_encoding_message_size(crate::member::transport::MAX_MESSAGE);
    let app = tonic::service::Routes::new(server)
        .into_axum_router()
        .reset_fallback();
    axum::serve(no_delay(listener), app)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await
}

/// `listener` with Nagle's algorithm off on every accepted connection: a
/// small answer held back for a delayed ACK costs a client ~40 ms.
fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
    })
}

/// Binds `client-urls` (port 0 picks one), opens the data directory and starts serving.
///
/// With `[topology] source = "kubernetes"` it connects to the Kubernetes API the way a pod
/// does (its service account, or a kubeconfig outside a cluster); the API itself is only
/// called later, by the sync task. Without either, placement still serves (store labels then
/// come from the stores) and says so in an error log line: losing topology labels must not
/// take the placement service down.
pub async fn start(config: Config) -> Result<RunningServer> {
    let topology = match config.topology.source {
        LabelSource::Static => None,
        LabelSource::Kubernetes => match kube::Client::try_default().await {
            Ok(client) => {
                let hint = NamespaceHint::from_config(&config.topology.namespace);
                Some(Arc::new(KubernetesTopology::new(client, hint)) as Arc<dyn TopologySource>)
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "[topology] source = \"kubernetes\" but no Kubernetes API is configured \
                     (no service account, no kubeconfig); store labels come from the stores"
                );
                None
            }
        },
    };
    start_with_topology(config, topology).await
}

/// [`start`] with the given topology source instead of one built from the config: with
/// `Some`, the label sync task runs against it whatever `[topology] source` says (tests use a
/// client of a mocked API server).
pub async fn start_with_topology(
    config: Config,
    topology: Option<Arc<dyn TopologySource>>,
) -> Result<RunningServer> {
    config.validate()?;
    let listener = TcpListener::bind(config.listen_addr()?).await?;
    let addr = listener.local_addr()?;
    // A member named in an `initial-cluster` (even one listing only itself, as a one-member
    // cluster on Kubernetes is) serves the peer port: members added later join through it. A
    // lone member started without one (the playground, tests) has no peers and binds none.
    let group = config
        .initial_cluster
        .as_deref()
        .map(crate::member::parse_initial_cluster)
        .transpose()?
        .is_some_and(|m| !m.is_empty());
    let state = Placement::open(config.clone(), advertised_urls(&config, addr)).await?;
    // Bound only now: while a member starts, its peers see "connection refused" at once
    // (not a hung call) and do not wait for it before forming the group.
    let peer_listener = if group {
        Some(TcpListener::bind(config.peer_listen_addr()?).await?)
    } else {
        None
    };
    let (peer_tx, peer_rx) = oneshot::channel::<()>();
    let peer_task = peer_listener.map(|l| tokio::spawn(serve_peers(state.clone(), l, peer_rx)));
    let app = router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(no_delay(listener), app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    let ticker = tokio::spawn(tso_ticker(state.clone(), config.tso_save_interval.0));
    let topology = topology.map(|source| {
        tracing::info!(
            refresh_interval = %config.topology.refresh_interval,
            "store topology labels come from Kubernetes"
        );
        crate::topology::spawn_sync(state.clone(), source, config.topology.refresh_interval.0)
    });
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
        peer_shutdown: Some(peer_tx),
        peer_task,
        topology,
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
        if !state.is_leader() {
            continue;
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
        if let Some(tx) = self.peer_shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.peer_task.take() {
            task.abort();
            let _ = task.await;
        }
        if let Some(mut sync) = self.topology.take() {
            // It stops after its current round; one stuck on the Kubernetes API is cut short
            // (the next start redoes its work).
            if tokio::time::timeout(Duration::from_secs(1), &mut sync)
                .await
                .is_err()
            {
                sync.abort();
                let _ = sync.await;
            }
        }
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
