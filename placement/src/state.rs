//! [`Placement`]: the state one placement server shares between its gRPC, HTTP and etcd
//! front ends, and its startup from the data directory.
//!
//! It wires the pure core (the [`ClusterView`], TSO, id allocator) to the [`MetaWriter`].
//! The view is private: readers take [`Placement::view`], and it changes in two ways only.
//! [`Placement::commit`] is the one path for durable changes: plan against the view, persist,
//! then apply, all under a lock so that changes are applied in the order they were persisted.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use proto::pdpb;
use tokio::sync::watch;

use crate::cluster::ClusterView;
use crate::config::{split_urls, Config};
use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::id::IdAllocator;
use crate::member::log::Restored;
use crate::member::transport::Entry;
use crate::member::{self, Event, Setup, Shared};
use crate::meta::{MetaWrite, StoredMeta};
use crate::metrics::Metrics;
use crate::schedule::{Scheduler, Settings};
use crate::storage::MetaStore;
use crate::stream_registry::HeartbeatStreams;
use crate::tso::{Timestamp, TimestampOracle};
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
    /// Read through [`Placement::view`]; changed only by [`Placement::commit`],
    /// [`Placement::observe`] and a new leader's reload.
    view: RwLock<ClusterView>,
    pub tso: TimestampOracle,
    pub ids: IdAllocator,
    pub writer: Arc<MetaWriter>,
    /// Role and membership of this member in the placement group.
    pub member: Arc<Shared>,
    /// Failures tests inject into the metadata engine and the raft thread.
    pub faults: Arc<Faults>,
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
    /// Opens the data directory, starts this member's raft thread and, for a lone member,
    /// waits until it leads. Members of a group serve once elected (see [`crate::member`]).
    pub async fn open(config: Config, client_urls: Vec<String>) -> Result<Arc<Self>> {
        let dir = config.data_dir();
        let setup = Setup::from_config(&config, client_urls.clone())?;
        let (store, stored) = open_meta_store(dir.clone()).await?;
        let entry = entry_point(&store, &setup).await?;
        let (voters, joined_cluster) = initial_voters(entry, &setup);
        let (cluster_id, mut first_writes) = settle_cluster_id(
            stored.cluster_id,
            joined_cluster.unwrap_or(config.cluster_id),
            &setup,
        )?;
        let member_id = setup.me.id;
        if stored.member_id != Some(member_id) {
            first_writes.push(MetaWrite::MemberId(member_id));
        }
        let restored = restore_raft(store.clone(), first_writes, voters).await?;
        let shared = Arc::new(Shared::new(&setup));
        let faults = store.faults().clone();
        let (writer, events) = MetaWriter::spawn(store, restored, shared.clone())?;
        let placement = Arc::new(Self::assemble(
            config,
            client_urls,
            cluster_id,
            member_id,
            Arc::new(writer),
            shared,
            faults,
        ));
        tracing::info!(
            cluster_id,
            member_id,
            name = %placement.config.name,
            members = %member::describe(&setup.initial),
            data_dir = %dir.display(),
            "placement member started"
        );
        tokio::spawn(follow_role(placement.clone(), events));
        if !setup.is_group() {
            placement.wait_until_serving().await?;
        }
        Ok(placement)
    }

    /// Builds the shared state of a member around its started metadata writer.
    fn assemble(
        config: Config,
        client_urls: Vec<String>,
        cluster_id: u64,
        member_id: u64,
        writer: Arc<MetaWriter>,
        member: Arc<Shared>,
        faults: Arc<Faults>,
    ) -> Self {
        let tso = TimestampOracle::new(config.tso_save_interval.0, writer.clone());
        let ids = IdAllocator::new(0, writer.clone());
        Placement {
            peer_urls: config.peer_urls(),
            schedule: Settings::from_config(&config),
            scheduler: parking_lot::Mutex::new(Scheduler::default()),
            view: RwLock::new(ClusterView::load(cluster_id, &StoredMeta::default())),
            config,
            cluster_id,
            member_id,
            client_urls,
            tso,
            ids,
            writer,
            member,
            faults,
            metrics: Metrics::new(),
            streams: HeartbeatStreams::default(),
            started_ms: now_ms(),
            write_lock: tokio::sync::Mutex::new(()),
            revision: AtomicI64::new(1),
            shutdown: watch::channel(false).0,
        }
    }

    /// Waits until a lone member has elected itself and serves, for at most 30 seconds.
    async fn wait_until_serving(&self) -> Result<()> {
        // A lone member elects itself at once; serve only once it has.
        let deadline = std::time::Duration::from_secs(30);
        let mut rx = self.member.serving_watch();
        tokio::time::timeout(deadline, rx.wait_for(|t| *t != 0))
            .await
            .map_err(|_| Error::TakeOverTimeout { waited: deadline })?
            .map_err(|_| Error::WriterStopped)?;
        Ok(())
    }

    /// Takes over as leader of `term` from the metadata committed before it: reloads the
    /// view, resumes the TSO above the replicated high-water mark and ids above the id
    /// mark, and starts serving.
    async fn lead(&self, term: u64, stored: StoredMeta) -> Result<()> {
        {
            let _guard = self.write_lock.lock().await;
            *self.view.write() = ClusterView::load(self.cluster_id, &stored);
            *self.scheduler.lock() = Scheduler::default();
            self.tso.reset(term, stored.tso_limit);
            self.ids.reset(stored.id_limit);
            self.revision.fetch_add(1, Ordering::Relaxed);
        }
        self.tso.tick().await?;
        if self.member.start_serving(term) {
            let view = self.view.read();
            tracing::info!(
                term,
                bootstrapped = view.is_bootstrapped(),
                stores = view.stores().count(),
                regions = view.regions().len(),
                "placement leader serving"
            );
        }
        Ok(())
    }

    /// Allocates `count` timestamps for a client and returns the largest. Only a member
    /// serving as leader hands them out, and only under its lease, checked again right where
    /// each timestamp is made (after any wait for the window to be replicated), against the
    /// term the request was taken in: so no timestamp handed out after a successor was
    /// elected is below the successor's.
    pub async fn allocate_timestamps(&self, count: u32) -> Result<Timestamp> {
        let term = self.member.serving_term();
        if term == 0 {
            return Err(self.member.not_leader());
        }
        self.wait_for_lease(term).await?;
        let may_serve = || self.may_hand_out_timestamps(term);
        self.tso.get(count, term, &may_serve).await
    }

    fn may_hand_out_timestamps(&self, term: u64) -> Result<()> {
        if self.member.may_hand_out_timestamps(term) {
            Ok(())
        } else if self.member.is_handing_over() {
            Err(Error::NoTsoLease(
                "leadership is being handed over".to_owned(),
            ))
        } else {
            Err(Error::NoTsoLease(self.member.not_leader().to_string()))
        }
    }

    /// A new leader gets its lease within one probe round: requests wait that long (up to
    /// 1 s) before failing, unless this member stopped leading or is handing over.
    async fn wait_for_lease(&self, term: u64) -> Result<()> {
        let settled = |m: &Shared| {
            m.may_hand_out_timestamps(term)
                || !m.is_raft_leader()
                || m.is_handing_over()
                || m.serving_term() != term
        };
        self.member
            .wait_for(std::time::Duration::from_secs(1), settled)
            .await;
        self.may_hand_out_timestamps(term)
    }

    /// True while this member serves as leader.
    pub fn is_leader(&self) -> bool {
        self.member.is_serving()
    }

    /// `Ok` while this member serves as leader, else the error naming the leader.
    pub fn check_leader(&self) -> Result<()> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(self.member.not_leader())
        }
    }

    /// The cluster view, read-locked. Lock order: the view first, then `scheduler`.
    pub fn view(&self) -> parking_lot::RwLockReadGuard<'_, ClusterView> {
        self.view.read()
    }

    /// Applies what a store reported at once, then runs `then` on the view it made (still
    /// locked, so it sees exactly this change); the records the change made are persisted
    /// behind, never waited for.
    pub fn observe<T>(
        &self,
        change: crate::cluster::Observed,
        then: impl FnOnce(&ClusterView) -> T,
    ) -> Result<T> {
        let mut view = self.view.write();
        let writes = view.observe(change)?;
        let view = parking_lot::RwLockWriteGuard::downgrade(view);
        let out = then(&view);
        drop(view);
        self.persist_behind(writes);
        Ok(out)
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

    /// Persists records of changes already applied in memory, without waiting.
    fn persist_behind(&self, writes: Vec<MetaWrite>) {
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
            deploy_path: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            ..member::to_pd_member(self.member.me(), VERSION)
        }
    }

    /// Every member of the group's configuration.
    pub fn members(&self) -> Vec<pdpb::Member> {
        self.member
            .members()
            .iter()
            .map(|m| {
                if m.id == self.member_id {
                    self.member()
                } else {
                    member::to_pd_member(m, VERSION)
                }
            })
            .collect()
    }

    /// The leader as GetMembers reports it, when known.
    pub fn leader_member(&self) -> Option<pdpb::Member> {
        let leader = self.member.leader()?;
        Some(if leader.id == self.member_id {
            self.member()
        } else {
            member::to_pd_member(&leader, VERSION)
        })
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

/// Runs `work` on the blocking thread pool, reporting a task that failed as an I/O error.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// Opens the metadata store in `dir` and loads the metadata it holds.
async fn open_meta_store(dir: PathBuf) -> Result<(MetaStore, StoredMeta)> {
    run_blocking(move || {
        let store = MetaStore::open(&dir)?;
        let stored = store.load()?;
        Ok((store, stored))
    })
    .await
}

/// Decides whom to start with, when this directory holds no raft state yet.
async fn entry_point(store: &MetaStore, setup: &Setup) -> Result<Entry> {
    let has_raft_state = {
        let store = store.clone();
        run_blocking(move || member::log::has_state(&store)).await?
    };
    if has_raft_state || !setup.is_group() {
        Ok(Entry::NewGroup)
    } else {
        member::transport::try_join(setup).await
    }
}

/// The voters a new raft state starts with, and the cluster id of the group joined, if any.
fn initial_voters(entry: Entry, setup: &Setup) -> (Vec<u64>, Option<u64>) {
    match entry {
        Entry::Added { cluster_id } => {
            tracing::info!(name = %setup.me.name, "joined a running placement group");
            (Vec::new(), Some(cluster_id))
        }
        Entry::Member { cluster_id } => (
            setup.initial.iter().map(|m| m.id).collect(),
            Some(cluster_id),
        ),
        Entry::NewGroup => (setup.initial.iter().map(|m| m.id).collect(), None),
    }
}

/// The cluster id to serve, checked against the stored one, and the write recording a new one.
fn settle_cluster_id(
    stored: Option<u64>,
    configured: u64,
    setup: &Setup,
) -> Result<(u64, Vec<MetaWrite>)> {
    match (stored, configured) {
        (Some(stored), 0) => Ok((stored, Vec::new())),
        (Some(stored), configured) if stored == configured => Ok((stored, Vec::new())),
        (Some(stored), configured) => Err(Error::ClusterIdConflict { stored, configured }),
        (None, configured) => {
            let id = match configured {
                0 if setup.is_group() => member::derived_cluster_id(&setup.initial),
                0 => new_cluster_id(),
                configured => configured,
            };
            Ok((id, vec![MetaWrite::ClusterId(id)]))
        }
    }
}

/// Persists `first_writes`, then loads the raft state (or starts one with `voters`).
async fn restore_raft(
    store: MetaStore,
    first_writes: Vec<MetaWrite>,
    voters: Vec<u64>,
) -> Result<Restored> {
    run_blocking(move || {
        store.write(&first_writes, true)?;
        member::log::restore(&store, &voters)
    })
    .await
}

/// Applies role changes from the raft thread: reload and serve on leadership, stop serving
/// (streams end, see [`Shared::stopped_serving`]) when it is lost.
async fn follow_role(
    state: Arc<Placement>,
    mut events: tokio::sync::mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Lead { term, stored } => {
                if let Err(e) = state.lead(term, *stored).await {
                    tracing::warn!(term, error = %e, "taking over as placement leader failed");
                }
            }
            Event::Follow => {
                tracing::info!(leader = ?state.member.leader().map(|m| m.name), "placement member follows");
            }
        }
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
