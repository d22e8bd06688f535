//! The snapshot workers: one thread builds snapshot files for other stores,
//! one installs received ones, so neither job ever runs on the raftstore
//! thread.
//!
//! Consistency with raft rests on the [`ApplyGate`]: the raftstore writes
//! each apply batch and publishes the new applied state of its replicas
//! ([`SnapSource`]) under the gate's write side; the generation worker reads
//! a replica's published state and takes its engine snapshot under the read
//! side, so the file holds exactly the data at the index it is labelled
//! with. Installation deletes the replica's old and new ranges, streams the
//! pairs in write batches of [`APPLY_BATCH_BYTES`], and finally (synced)
//! clears the replica's pending-install marker; the raftstore hears of the
//! outcome through a [`ControlMsg`].

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use proto::metapb;
use raft::prelude::Snapshot;
use rocksdb::WriteBatch;

use super::{SnapDescriptor, SnapError, SnapKey, SnapManager, SnapReader, SnapWriter};
use crate::data_keys::region_data_ranges;
use crate::engine::{Engine, Modify, CF_RAFT, DATA_CFS};
use crate::raftstore::driver::ControlMsg;
use crate::raftstore::local_keys;
use crate::raftstore::peer_storage::conf_state_of;

/// Most bytes one write batch of a snapshot install carries.
pub const APPLY_BATCH_BYTES: usize = 4 << 20;

/// Held (write side) by the raftstore while it writes applied data and
/// publishes applied states; (read side) by the generation worker while it
/// reads a published state and takes its engine snapshot.
pub type ApplyGate = Arc<RwLock<()>>;

/// A replica's applied state as last published under the [`ApplyGate`]:
/// the engine holds exactly this region's data at `applied_index`.
#[derive(Debug, Clone, Default)]
pub struct SnapSource {
    pub region: metapb::Region,
    pub applied_index: u64,
    pub applied_term: u64,
    /// A received snapshot is being installed: nothing to build from.
    pub installing: bool,
}

/// Where a replica's outgoing snapshot stands.
#[derive(Debug, Clone, Default)]
pub enum GenState {
    #[default]
    Idle,
    Generating,
    /// Built: raft may send it while it is recent enough.
    Ready(Box<Snapshot>, SnapKey),
}

pub struct GenTask {
    pub source: Arc<Mutex<SnapSource>>,
    pub state: Arc<Mutex<GenState>>,
}

pub struct ApplyTask {
    pub key: SnapKey,
    pub old: Option<metapb::Region>,
    pub desc: SnapDescriptor,
}

/// Senders of the two workers' queues; dropping them stops the workers.
#[derive(Clone)]
pub struct SnapWorkers {
    pub gen: Sender<GenTask>,
    pub apply: Sender<ApplyTask>,
}

impl SnapWorkers {
    /// Starts both workers; outcomes of installs go to `ctl`.
    pub fn start(
        engine: Engine,
        mgr: Arc<SnapManager>,
        gate: ApplyGate,
        ctl: Sender<ControlMsg>,
    ) -> std::io::Result<Self> {
        let (gen, gen_rx) = crossbeam_channel::unbounded::<GenTask>();
        let (apply, apply_rx) = crossbeam_channel::unbounded::<ApplyTask>();
        let (e, m) = (engine.clone(), mgr.clone());
        std::thread::Builder::new()
            .name("snap-gen".into())
            .spawn(move || run_gen(e, m, gate, gen_rx))?;
        std::thread::Builder::new()
            .name("snap-apply".into())
            .spawn(move || run_apply(engine, mgr, ctl, apply_rx))?;
        Ok(SnapWorkers { gen, apply })
    }
}

/// Runs `f`, turning a panic into an error (a worker must outlive any one
/// task: a replica whose task died would wait for it forever).
fn guarded<T, E>(f: impl FnOnce() -> Result<T, E>, panicked: E) -> Result<T, E> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(Err(panicked))
}

fn run_gen(engine: Engine, mgr: Arc<SnapManager>, gate: ApplyGate, rx: Receiver<GenTask>) {
    for task in rx {
        let region_id = task.source.lock().region.id;
        match guarded(
            || generate(&engine, &mgr, &gate, &task.source),
            SnapError::Panicked,
        ) {
            Ok((snap, key)) => {
                let old = std::mem::replace(
                    &mut *task.state.lock(),
                    GenState::Ready(Box::new(snap), key),
                );
                if let GenState::Ready(_, old_key) = old {
                    mgr.remove(&mgr.gen_path(&old_key));
                }
                mgr.count_generated();
                crate::metrics::SNAPSHOTS
                    .with_label_values(&["generated"])
                    .inc();
            }
            Err(e) => {
                tracing::error!(region_id, error = %e, "building snapshot failed");
                *task.state.lock() = GenState::Idle;
            }
        }
    }
}

/// Builds the snapshot file of a replica at its published applied index.
fn generate(
    engine: &Engine,
    mgr: &SnapManager,
    gate: &ApplyGate,
    source: &Mutex<SnapSource>,
) -> Result<(Snapshot, SnapKey), SnapError> {
    let (src, snap) = {
        let _gate = gate.read();
        let src = source.lock().clone();
        (src, engine.snapshot())
    };
    if src.installing || src.region.peers.is_empty() {
        return Err(SnapError::NoData);
    }
    let key = SnapKey {
        region_id: src.region.id,
        term: src.applied_term,
        index: src.applied_index,
    };
    let mut w = SnapWriter::create(&mgr.gen_path(&key))?;
    for (start, end) in region_data_ranges(&src.region) {
        for cf in DATA_CFS {
            let mut c = snap.cursor(cf, Some(start.clone()), Some(end.clone()))?;
            c.seek_to_first();
            while c.valid()? {
                w.put(cf, c.key(), c.value())?;
                c.next();
            }
        }
    }
    let meta = w.finish()?;
    let desc = SnapDescriptor {
        region: src.region.clone(),
        meta,
    };
    let mut out = Snapshot {
        data: desc.encode().into(),
        ..Default::default()
    };
    let m = out.mut_metadata();
    m.index = key.index;
    m.term = key.term;
    m.set_conf_state(conf_state_of(&src.region));
    tracing::info!(
        region_id = key.region_id,
        index = key.index,
        bytes = meta.size,
        pairs = meta.count,
        "snapshot built"
    );
    Ok((out, key))
}

/// Tests set it to keep installs waiting (and entries committing meanwhile).
#[cfg(test)]
pub static INSTALL_PAUSED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn run_apply(
    engine: Engine,
    mgr: Arc<SnapManager>,
    ctl: Sender<ControlMsg>,
    rx: Receiver<ApplyTask>,
) {
    for task in rx {
        #[cfg(test)]
        while INSTALL_PAUSED.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let result = guarded(|| install(&engine, &mgr, &task), InstallError::Panicked);
        if result.is_ok() {
            mgr.remove(&mgr.recv_path(&task.key));
            crate::metrics::SNAPSHOTS
                .with_label_values(&["applied"])
                .inc();
        }
        let _ = ctl.send(ControlMsg::SnapshotInstalled {
            region_id: task.key.region_id,
            index: task.key.index,
            result,
        });
    }
}

/// Replaces a replica's data with a received snapshot's, in bounded batches.
pub fn install(engine: &Engine, mgr: &SnapManager, task: &ApplyTask) -> Result<(), InstallError> {
    let mut clear = Vec::new();
    for r in task.old.iter().chain(std::iter::once(&task.desc.region)) {
        for (start, end) in region_data_ranges(r) {
            for cf in DATA_CFS {
                clear.push(Modify::DeleteRange {
                    cf,
                    start: start.clone(),
                    end: end.clone(),
                });
            }
        }
    }
    engine.write(&clear, false)?;
    let mut reader = SnapReader::open(&mgr.recv_path(&task.key))?;
    let mut wb = WriteBatch::default();
    let mut count = 0;
    while let Some((cf, key, value)) = reader.next_pair()? {
        if !DATA_CFS.contains(&cf) {
            return Err(InstallError::Foreign(cf));
        }
        engine.fill_batch(&mut wb, &[Modify::Put { cf, key, value }])?;
        count += 1;
        if wb.size_in_bytes() >= APPLY_BATCH_BYTES {
            engine.write_batch(std::mem::take(&mut wb), false)?;
        }
    }
    if count != task.desc.meta.count {
        return Err(InstallError::Count {
            want: task.desc.meta.count,
            got: count,
        });
    }
    engine.fill_batch(
        &mut wb,
        &[Modify::Delete {
            cf: CF_RAFT,
            key: local_keys::snapshot_install_key(task.key.region_id),
        }],
    )?;
    engine.write_batch(wb, true)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    File(#[from] super::file::SnapFileError),
    #[error("snapshot carries pairs of column family {0}")]
    Foreign(&'static str),
    #[error("snapshot should hold {want} pairs, holds {got}")]
    Count { want: u64, got: u64 },
    #[error("the snapshot install panicked")]
    Panicked,
}
