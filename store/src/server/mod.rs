//! The store process: wires engine, raftstore and storage together, joins the
//! cluster through placement, and serves gRPC and the status HTTP port.
//!
//! [`start`] is what the binary and the tests run: it opens the engine,
//! registers (and, on a fresh cluster, bootstraps) through placement, starts
//! the raftstore thread, the `tikvpb.Tikv` + `deadlock.Deadlock` + health gRPC
//! server, the status server, the heartbeat task and the disk monitor, and
//! returns a [`RunningStore`].

mod bootstrap;
mod deadlock;
#[cfg(test)]
mod fake_placement;
mod heartbeat;
#[cfg(test)]
mod leader_change_tests;
pub use crate::metrics;
pub mod placement_client;
mod raft_transport;
mod respond;
mod service;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio_stream::wrappers::TcpListenerStream;

use crate::config::Config;
use crate::disk::monitor::{DiskMonitor, MonitorConfig};
use crate::disk::DiskState;
use crate::engine::{Engine, EngineError};
use crate::lock_manager::LockManager;
use crate::percolator::ConcurrencyManager;
use crate::raftstore::peer_storage::RaftStateError;
use crate::raftstore::snap::SnapManager;
use crate::raftstore::transport::{FilteredTransport, Filters};
use crate::raftstore::{
    abort_on_fatal, FatalHandler, RaftStore, RaftStoreParts, Router, StoreMeta,
};
use crate::storage::{Storage, TsoSource};
use placement_client::{PlacementClient, PlacementError};
use proto::deadlock::deadlock_server::DeadlockServer;
use proto::storepb::store_raft_server::StoreRaftServer;
use proto::tikvpb::tikv_server::TikvServer;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("engine: {0}")]
    Engine(#[from] EngineError),
    #[error("raft storage: {0}")]
    RaftStorage(#[from] RaftStateError),
    #[error("placement: {0}")]
    Placement(#[from] PlacementError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    /// The data directory, its disk or the snapshot directory could not be prepared.
    #[error("{what} {}: {source}", .path.display())]
    DataDir {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("spawning the {thread} thread: {source}")]
    Spawn {
        thread: &'static str,
        source: std::io::Error,
    },
    /// A start-up step run on the blocking pool panicked or was cancelled.
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The data directory's store identity is unreadable.
    #[error("corrupt store identity in data dir: {len} bytes, expected 16")]
    CorruptIdent { len: usize },
    /// The data directory belongs to another cluster than the one placement serves.
    #[error("data dir belongs to cluster {data_dir}, placement serves cluster {placement}")]
    WrongCluster { data_dir: u64, placement: u64 },
}

/// A started store; dropping it does not stop it, call [`RunningStore::stop`].
pub struct RunningStore {
    pub store_id: u64,
    pub addr: SocketAddr,
    pub status_addr: SocketAddr,
    router: Router,
    stop_tx: Vec<oneshot::Sender<()>>,
    raft_thread: Option<std::thread::JoinHandle<()>>,
    /// Stops looking at the disk when dropped.
    _disk_monitor: DiskMonitor,
    engine: crate::engine::Engine,
}

impl RunningStore {
    /// Stops serving, then stops the raftstore and waits for it.
    pub async fn stop(mut self) {
        for tx in self.stop_tx.drain(..) {
            let _ = tx.send(());
        }
        self.router.shutdown();
        if let Some(t) = self.raft_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // RocksDB's flushes and compactions must be idle before the process exits: one still
        // running when exit tears down RocksDB's statics aborts the process ("pthread lock:
        // Invalid argument", seen once on a clean SIGTERM), and a clean stop must exit 0.
        let engine = self.engine.clone();
        let _ = tokio::task::spawn_blocking(move || engine.stop_background_work()).await;
    }
}

async fn bind(addr: &str) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })
}

/// The connections `listener` accepts, with Nagle's algorithm off: tonic
/// applies its own `tcp_nodelay` only to listeners it binds itself, and a
/// small response held back for a delayed ACK costs a client ~40 ms.
fn no_delay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Runs the raftstore loop; a panic in it (raft-rs reports broken
/// invariants by panicking) is fatal for the store, as an engine error is.
fn run_or_die(raftstore: RaftStore, fatal: FatalHandler) {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| raftstore.run()));
    if let Err(panic) = run {
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        fatal(&format!("the raftstore thread panicked: {what}"));
    }
}

/// Starts the store described by `cfg` (already validated).
pub async fn start(cfg: Config) -> Result<RunningStore, ServerError> {
    let listener = bind(&cfg.addr).await?;
    let status_listener = bind(&cfg.status_addr).await?;
    let addr = local_addr(&listener, &cfg.addr)?;
    let status_addr = local_addr(&status_listener, &cfg.status_addr)?;
    let mut cfg = cfg;
    if cfg.advertise_addr.is_empty() || cfg.advertise_addr.ends_with(":0") {
        cfg.advertise_addr = addr.to_string();
    }

    let local = open_local(&cfg).await?;
    let placement = PlacementClient::connect(&cfg.pd_endpoints, Duration::from_secs(60)).await?;
    let store = bootstrap::store_meta(&cfg, status_addr, 0);
    let store_id = bootstrap::join_cluster(&local.engine, &placement, store).await?;
    let store = bootstrap::store_meta(&cfg, status_addr, store_id);
    tracing::info!(store_id, addr = %cfg.advertise_addr, "store joined the cluster");

    let meta = Arc::new(RwLock::new(StoreMeta::default()));
    let filters = Filters::default();
    let changed = Arc::new(Notify::new());
    // Reads served before a restart may have pushed max_ts up to now; start
    // above any of them so async-commit and 1PC timestamps stay safe.
    let cm = ConcurrencyManager::new(placement.get_ts().await?);
    let shared = Shared {
        store_id,
        meta: meta.clone(),
        changed: changed.clone(),
        filters: filters.clone(),
        cm,
    };
    let (router, raft_thread) = start_raftstore(&cfg, &placement, &local, &shared).await?;

    let grpc_stop = serve_grpc(listener, &cfg, &placement, &local, &router, &shared).await?;
    let (status_stop, status_stop_rx) = oneshot::channel::<()>();
    let debug = cfg
        .debug
        .fault_injection
        .then(|| (filters.clone(), local.engine.clone()));
    tokio::spawn(status::serve(
        status_listener,
        meta.clone(),
        debug,
        status_stop_rx,
    ));

    let hb = heartbeat::Heartbeat {
        placement,
        store,
        engine: local.engine.clone(),
        router: router.clone(),
        meta,
        changed,
        cfg: heartbeat::HeartbeatConfig::of(&cfg),
        reporting_splits: Default::default(),
        disk: local.disk,
    };
    let (hb_stop, hb_stop_rx) = oneshot::channel::<()>();
    tokio::spawn(hb.run(hb_stop_rx));

    Ok(RunningStore {
        store_id,
        addr,
        status_addr,
        router,
        stop_tx: vec![grpc_stop, status_stop, hb_stop],
        raft_thread: Some(raft_thread),
        _disk_monitor: local.disk_monitor,
        engine: local.engine,
    })
}

/// What the raftstore and the gRPC services of one store share.
struct Shared {
    store_id: u64,
    meta: Arc<RwLock<StoreMeta>>,
    changed: Arc<Notify>,
    filters: Filters,
    cm: ConcurrencyManager,
}

/// Loads this store's replicas and starts the raftstore thread.
async fn start_raftstore(
    cfg: &Config,
    placement: &PlacementClient,
    local: &Local,
    shared: &Shared,
) -> Result<(Router, std::thread::JoinHandle<()>), ServerError> {
    let fatal = abort_on_fatal();
    let parts = RaftStoreParts {
        store_id: shared.store_id,
        cfg: cfg.raftstore_config(),
        meta: shared.meta.clone(),
        changed: shared.changed.clone(),
        transport: Box::new(FilteredTransport::new(
            raft_transport::GrpcTransport::start(placement.clone(), local.snaps.clone()),
            shared.filters.clone(),
        )),
        snap_mgr: local.snaps.clone(),
        fatal: fatal.clone(),
        cm: shared.cm.clone(),
    };
    let raft_engine = local.engine.clone();
    let (raftstore, router) =
        tokio::task::spawn_blocking(move || RaftStore::new(raft_engine, parts)).await??;
    let raft_thread = std::thread::Builder::new()
        .name("raftstore".into())
        .spawn(move || run_or_die(raftstore, fatal))
        .map_err(|source| ServerError::Spawn {
            thread: "raftstore",
            source,
        })?;
    Ok((router, raft_thread))
}

fn local_addr(listener: &TcpListener, configured: &str) -> Result<SocketAddr, ServerError> {
    listener.local_addr().map_err(|source| ServerError::Bind {
        addr: configured.to_owned(),
        source,
    })
}

/// What a store opens on its own machine before it talks to anybody.
struct Local {
    engine: Engine,
    disk: Arc<DiskState>,
    disk_monitor: DiskMonitor,
    snaps: Arc<SnapManager>,
}

/// Opens the engine, starts watching the data directory's disk and opens the
/// snapshot directory (all blocking work, run off the async threads).
async fn open_local(cfg: &Config) -> Result<Local, ServerError> {
    let data_dir = cfg.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(|source| ServerError::DataDir {
        what: "creating the data directory",
        path: data_dir.clone(),
        source,
    })?;
    let path = data_dir.join("db");
    let engine = tokio::task::spawn_blocking(move || Engine::open(&path)).await??;
    let disk = Arc::new(DiskState::default());
    let monitor_cfg = MonitorConfig {
        data_dir: data_dir.clone(),
        reserve_space: cfg.storage.reserve_space,
        capacity_limit: cfg.raftstore.capacity,
        interval: Duration::from_millis(cfg.storage.disk_check_interval_ms),
    };
    let state = disk.clone();
    let disk_monitor = tokio::task::spawn_blocking(move || DiskMonitor::start(monitor_cfg, state))
        .await?
        .map_err(|source| ServerError::DataDir {
            what: "checking the disk of",
            path: data_dir.clone(),
            source,
        })?;
    let snap_dir = data_dir.join("snap");
    let open_dir = snap_dir.clone();
    let snaps = tokio::task::spawn_blocking(move || SnapManager::open(&open_dir))
        .await?
        .map_err(|source| ServerError::DataDir {
            what: "opening the snapshot directory",
            path: snap_dir,
            source,
        })?;
    Ok(Local {
        engine,
        disk,
        disk_monitor,
        snaps: Arc::new(snaps),
    })
}

/// Builds the transactional storage and serves `tikvpb.Tikv`, `deadlock.Deadlock`,
/// the raft service and gRPC health on `listener`; the sender stops the server.
async fn serve_grpc(
    listener: TcpListener,
    cfg: &Config,
    placement: &PlacementClient,
    local: &Local,
    router: &Router,
    shared: &Shared,
) -> Result<oneshot::Sender<()>, ServerError> {
    let (meta, store_id) = (&shared.meta, shared.store_id);
    let cm = Arc::new(shared.cm.clone());
    let tso: Arc<dyn TsoSource> = Arc::new(placement.clone());
    let lock_manager = LockManager::new(cfg.pessimistic_txn.clone(), meta.clone());
    lock_manager
        .detector()
        .set_link(Arc::new(deadlock::GrpcLeaderLink::start(
            placement.clone(),
            store_id,
            lock_manager.clone(),
        )));
    let storage = Storage::new(
        local.engine.clone(),
        router.clone(),
        meta.clone(),
        cm,
        cfg.storage.clone(),
        tso,
        lock_manager.clone(),
    );
    storage.set_disk_state(local.disk.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<TikvServer<service::KvService>>()
        .await;
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let (grpc_stop, grpc_stop_rx) = oneshot::channel::<()>();
    let (resolver_stop, resolver_stop_rx) = oneshot::channel::<()>();
    tokio::spawn(resolve_regions(storage.clone(), resolver_stop_rx));
    let kv = TikvServer::new(service::KvService::new(storage))
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
        // Requests a client chose to gzip are read; answers go out uncompressed, as TiKV's do
        // by default (`server.grpc-compression-type = "none"`): most are a few bytes, and
        // gzipping each one (a fresh deflate state per message) cost the store more CPU than
        // any other single thing under a put load.
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let raft = raft_transport::RaftService::new(router.clone(), local.snaps.clone());
    let grpc = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(kv)
        .add_service(DeadlockServer::new(deadlock::DeadlockService::new(
            lock_manager,
        )))
        .add_service(
            StoreRaftServer::new(raft)
                .max_decoding_message_size(raft_transport::MAX_RAFT_MESSAGE)
                .max_encoding_message_size(raft_transport::MAX_RAFT_MESSAGE),
        )
        .serve_with_incoming_shutdown(no_delay(listener), async {
            let _ = grpc_stop_rx.await;
            let _ = resolver_stop.send(());
        });
    tokio::spawn(async move {
        if let Err(e) = grpc.await {
            tracing::error!(error = %e, "gRPC server failed");
        }
    });
    Ok(grpc_stop)
}

/// The resolver of the regions this store leads (stale reads, `storage::resolved_ts`), a
/// round every `RESOLVED_TS_INTERVAL` until `stop` fires.
async fn resolve_regions(storage: Storage, mut stop: oneshot::Receiver<()>) {
    let mut every = tokio::time::interval(crate::raftstore::read_progress::RESOLVED_TS_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = every.tick() => {}
        }
        if let Err(e) = storage.resolve_round().await {
            tracing::warn!(error = %e, "resolving the regions led here failed");
        }
    }
}
