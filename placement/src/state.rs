//! [`Placement`]: the state one placement server shares between its gRPC, HTTP and etcd
//! front ends, and its startup from the data directory.
//!
//! It wires the pure core (the [`ClusterView`], TSO, id allocator) to the [`MetaWriter`].
//! [`Placement::commit`] is the one path for durable changes: plan against the view, persist,
//! then apply, all under a lock so that changes are applied in the order they were persisted.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use proto::pdpb;
use tokio::sync::watch;

use crate::cluster::ClusterView;
use crate::config::{split_urls, Config};
use crate::error::{Error, Result};
use crate::heartbeat::HeartbeatStreams;
use crate::id::IdAllocator;
use crate::meta::MetaWrite;
use crate::metrics::Metrics;
use crate::schedule::{Scheduler, Settings};
use crate::storage::MetaStore;
use crate::tso::TimestampOracle;
use crate::writer::MetaWriter;

/// Version reported as `binary_version` and `cluster_version` (PD-compatible numbering).
pub const VERSION: &str = "8.5.0";

/// Shared state of one placement server.
pub struct Placement {
    pub config: Config,
    pub cluster_id: u64,
    pub member_id: u64,
    /// Advertised client URLs (with the real port when listening on port 0).
    pub client_urls: Vec<String>,
    pub peer_urls: Vec<String>,
    pub view: RwLock<ClusterView>,
    pub tso: TimestampOracle,
    pub ids: IdAllocator,
    pub writer: Arc<MetaWriter>,
    pub metrics: Metrics,
    pub streams: HeartbeatStreams,
    /// Scheduling settings from the config.
    pub schedule: Settings,
    /// Running operators. Lock order: `view` first, then this.
    pub scheduler: parking_lot::Mutex<Scheduler>,
    /// Unix milliseconds at startup.
    pub started_ms: u64,
    write_lock: tokio::sync::Mutex<()>,
    revision: AtomicI64,
    shutdown: watch::Sender<bool>,
}

impl Placement {
    /// Opens the data directory, loads the metadata and starts the writer thread.
    pub async fn open(config: Config, client_urls: Vec<String>) -> Result<Arc<Self>> {
        let dir = config.data_dir();
        let open_dir = dir.clone();
        let (store, stored) = tokio::task::spawn_blocking(move || {
            let store = MetaStore::open(&open_dir)?;
            let stored = store.load()?;
            Ok::<_, Error>((store, stored))
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        let mut first_writes = Vec::new();
        let cluster_id = match (stored.cluster_id, config.cluster_id) {
            (Some(stored), 0) => stored,
            (Some(stored), configured) if stored == configured => stored,
            (Some(stored), configured) => {
                return Err(Error::ClusterIdConflict { stored, configured })
            }
            (None, configured) => {
                let id = if configured == 0 {
                    new_cluster_id()
                } else {
                    configured
                };
                first_writes.push(MetaWrite::ClusterId(id));
                id
            }
        };
        let member_id = stored.member_id.unwrap_or_else(|| {
            let id = random_u64() | 1;
            first_writes.push(MetaWrite::MemberId(id));
            id
        });
        let writer = Arc::new(MetaWriter::spawn(store)?);
        if !first_writes.is_empty() {
            writer.write(first_writes).await?;
        }
        let view = ClusterView::load(cluster_id, &stored);
        let tso =
            TimestampOracle::start(stored.tso_limit, config.tso_save_interval.0, writer.clone())
                .await?;
        let ids = IdAllocator::new(stored.id_limit, writer.clone());
        tracing::info!(
            cluster_id,
            member_id,
            bootstrapped = view.is_bootstrapped(),
            stores = view.stores().count(),
            regions = view.regions().len(),
            data_dir = %dir.display(),
            "placement metadata loaded"
        );
        Ok(Arc::new(Placement {
            peer_urls: config.peer_urls(),
            schedule: Settings::from_config(&config),
            scheduler: parking_lot::Mutex::new(Scheduler::default()),
            config,
            cluster_id,
            member_id,
            client_urls,
            view: RwLock::new(view),
            tso,
            ids,
            writer,
            metrics: Metrics::new(),
            streams: HeartbeatStreams::default(),
            started_ms: now_ms(),
            write_lock: tokio::sync::Mutex::new(()),
            revision: AtomicI64::new(1),
            shutdown: watch::channel(false).0,
        }))
    }

    /// Plans a change against the view, persists it, then applies it. `plan` runs under the
    /// write lock with the view read-locked; its writes are durable before anyone sees them.
    pub async fn commit<T>(
        &self,
        plan: impl FnOnce(&ClusterView) -> Result<(T, Vec<MetaWrite>)>,
    ) -> Result<T> {
        let _guard = self.write_lock.lock().await;
        let (out, writes) = plan(&self.view.read())?;
        if !writes.is_empty() {
            self.writer.write(writes.clone()).await?;
            let mut view = self.view.write();
            for w in &writes {
                view.apply(w);
            }
            self.revision.fetch_add(1, Ordering::Relaxed);
        }
        Ok(out)
    }

    /// Applies heartbeat-driven writes already applied in memory: persist them behind.
    pub fn persist_behind(&self, writes: Vec<MetaWrite>) {
        if !writes.is_empty() {
            self.revision.fetch_add(1, Ordering::Relaxed);
            self.writer.write_behind(writes);
        }
    }

    /// The scheduling settings in force: the config file's with runtime overrides.
    pub fn settings(&self, view: &ClusterView) -> Settings {
        self.schedule.with_overrides(view.config_override())
    }

    /// Turns Offline stores left without replicas into tombstones; returns how many.
    pub async fn tombstone_drained(&self) -> Result<usize> {
        if self.view.read().plan_tombstones().is_empty() {
            return Ok(0);
        }
        let stores = self
            .commit(|view| {
                let writes = view.plan_tombstones();
                let ids: Vec<u64> = writes
                    .iter()
                    .filter_map(|w| match w {
                        MetaWrite::Store(s) => Some(s.id),
                        _ => None,
                    })
                    .collect();
                Ok((ids, writes))
            })
            .await?;
        for store_id in &stores {
            tracing::info!(store_id, "drained store is now tombstone");
        }
        Ok(stores.len())
    }

    /// A counter that grows with every metadata change (the etcd `revision`).
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Relaxed)
    }

    /// This member as GetMembers reports it.
    pub fn member(&self) -> pdpb::Member {
        pdpb::Member {
            name: self.config.name.clone(),
            member_id: self.member_id,
            peer_urls: self.peer_urls.clone(),
            client_urls: self.client_urls.clone(),
            deploy_path: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            binary_version: VERSION.to_owned(),
            ..Default::default()
        }
    }

    /// Tells long-lived streams to end (graceful shutdown).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// The advertised URLs for a server bound to `bound`.
pub fn advertised_urls(config: &Config, bound: std::net::SocketAddr) -> Vec<String> {
    match &config.advertise_client_urls {
        Some(urls) => split_urls(urls),
        None if bound.ip().is_unspecified() => {
            vec![format!("http://127.0.0.1:{}", bound.port())]
        }
        None => vec![format!("http://{bound}")],
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    (now_ms() / 1000) as i64
}

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A new cluster id as PD makes them: Unix seconds in the high 32 bits, random low bits.
fn new_cluster_id() -> u64 {
    let secs = (now_ms() / 1000) << 32;
    secs | (random_u64() & 0xFFFF_FFFF)
}
