//! Disk-full protection: how full this store's disk is, and which writes it
//! still takes.
//!
//! The pure part lives here: [`effective_reserve`] (how much space
//! `storage.reserve-space` keeps back on a disk of a given size),
//! [`DiskStats::compute`] (capacity / available / used as placement sees
//! them), [`DiskUsage::classify`] (the TiKV thresholds), [`allows`] (which
//! [`WriteKind`] passes in which state) and [`disk_full_error`] (the errorpb
//! answer). [`DiskState`] is what the periodic [`monitor`] publishes and the
//! storage layer and the heartbeats read; the monitor does the file-system
//! I/O (statvfs, the data directory's size, the placeholder file) on its own
//! thread.
//!
//! Semantics, after TiKV: with a reserve `R`, the disk is *almost full*
//! when at most `R` bytes are available and *already full* at `R / 2`. Then
//! client writes that add data (raw puts, CAS, prewrites, pessimistic locks)
//! are refused with `errorpb.disk_full`, unless the request's
//! `disk_full_opt` allows the state. Deletes and whatever finishes a
//! transaction already under way (commit, rollback, cleanup, resolve-lock,
//! heartbeats, GC) always pass, as do reads and raft admin work (leader
//! transfers, conf changes, splits), which never come through here. The
//! placeholder file (`R / 5`, TiKV's ratio) counts as used while it exists
//! and is released when the disk stops being normal, giving the raft log
//! and applies of writes already accepted room to finish.

pub mod monitor;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use proto::{errorpb, kvrpcpb::DiskFullOpt};

/// Name of the placeholder file in the data directory (TiKV's name).
pub const PLACEHOLDER_FILE: &str = "space_placeholder_file";

/// On a disk smaller than this many times the configured reserve, the
/// reserve is this fraction of the disk instead (`capacity / 10`).
pub const SMALL_DISK_FACTOR: u64 = 10;

/// The reserve actually kept on a disk of `capacity` bytes: the configured
/// one, but at most a tenth of the disk, so that on a disk smaller than ten
/// times the configured reserve the store can still fill 90% of it. 0 (the
/// configured value) turns the protection off.
pub fn effective_reserve(configured: u64, capacity: u64) -> u64 {
    configured.min(capacity / SMALL_DISK_FACTOR)
}

/// Size of the placeholder file for a reserve: a fifth of it (TiKV's ratio).
pub fn placeholder_size(reserve: u64) -> u64 {
    reserve / 5
}

/// How full the disk is, in TiKV's three steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskUsage {
    Normal,
    /// At most the reserve is available: writes adding data are refused.
    AlmostFull,
    /// At most half the reserve is available.
    AlreadyFull,
}

impl DiskUsage {
    /// The state with `available` bytes left under a reserve of `reserve`
    /// bytes (0: protection off, always normal).
    pub fn classify(available: u64, reserve: u64) -> DiskUsage {
        if reserve == 0 || available > reserve {
            DiskUsage::Normal
        } else if available > reserve / 2 {
            DiskUsage::AlmostFull
        } else {
            DiskUsage::AlreadyFull
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            DiskUsage::Normal => 0,
            DiskUsage::AlmostFull => 1,
            DiskUsage::AlreadyFull => 2,
        }
    }

    fn from_u8(v: u8) -> DiskUsage {
        match v {
            0 => DiskUsage::Normal,
            1 => DiskUsage::AlmostFull,
            _ => DiskUsage::AlreadyFull,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskUsage::Normal => "normal",
            DiskUsage::AlmostFull => "almost full",
            DiskUsage::AlreadyFull => "already full",
        }
    }
}

/// What a write does to the disk, for [`allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Adds data: raw put / batch put / CAS, prewrite, pessimistic lock.
    Grow,
    /// Removes data or finishes a transaction already under way: deletes,
    /// delete-range, commit, rollbacks, cleanup, resolve-lock, heartbeat, GC.
    Settle,
}

/// Whether a write of `kind`, sent with `opt`, may go ahead in `usage`.
pub fn allows(usage: DiskUsage, kind: WriteKind, opt: DiskFullOpt) -> bool {
    match (kind, usage) {
        (WriteKind::Settle, _) | (WriteKind::Grow, DiskUsage::Normal) => true,
        (WriteKind::Grow, DiskUsage::AlmostFull) => opt != DiskFullOpt::NotAllowedOnFull,
        (WriteKind::Grow, DiskUsage::AlreadyFull) => opt == DiskFullOpt::AllowedOnAlreadyFull,
    }
}

/// The store's disk as placement sees it, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskStats {
    pub capacity: u64,
    pub available: u64,
    pub used: u64,
}

/// One look at the file system, the input of [`DiskStats::compute`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskSample {
    /// Size of the file system holding the data directory.
    pub fs_total: u64,
    /// Bytes of it available to this process.
    pub fs_available: u64,
    /// Bytes of the data directory (engine, snapshots, placeholder).
    pub dir_size: u64,
    /// The placeholder file's size now (0 while released).
    pub placeholder: u64,
}

impl DiskStats {
    /// TiKV's computation: capacity is the file system's size, capped by a
    /// configured `capacity_limit` (0: none); used is what the data
    /// directory holds; available is what is left of capacity after used,
    /// no more than the file system has. A placeholder of `placeholder_target`
    /// bytes counts as used even while released, so releasing it does not
    /// make the disk look normal again.
    pub fn compute(s: DiskSample, capacity_limit: u64, placeholder_target: u64) -> DiskStats {
        let capacity = match capacity_limit {
            0 => s.fs_total,
            limit => s.fs_total.min(limit),
        };
        let missing = placeholder_target.saturating_sub(s.placeholder);
        let available = capacity
            .saturating_sub(s.dir_size)
            .min(s.fs_available)
            .saturating_sub(missing);
        DiskStats {
            capacity,
            available,
            used: s.dir_size,
        }
    }
}

/// The latest disk state, shared by the monitor (writer), the storage layer
/// and the heartbeats (readers). Before the first look: normal, all zero.
#[derive(Debug, Default)]
pub struct DiskState {
    usage: AtomicU8,
    capacity: AtomicU64,
    available: AtomicU64,
    used: AtomicU64,
    reserve: AtomicU64,
}

impl DiskState {
    pub fn usage(&self) -> DiskUsage {
        DiskUsage::from_u8(self.usage.load(Ordering::Acquire))
    }

    pub fn stats(&self) -> DiskStats {
        DiskStats {
            capacity: self.capacity.load(Ordering::Relaxed),
            available: self.available.load(Ordering::Relaxed),
            used: self.used.load(Ordering::Relaxed),
        }
    }

    /// The reserve in force (bytes; 0: protection off).
    pub fn reserve(&self) -> u64 {
        self.reserve.load(Ordering::Relaxed)
    }

    /// Publishes a new look; returns the previous usage.
    pub fn publish(&self, stats: DiskStats, reserve: u64, usage: DiskUsage) -> DiskUsage {
        self.capacity.store(stats.capacity, Ordering::Relaxed);
        self.available.store(stats.available, Ordering::Relaxed);
        self.used.store(stats.used, Ordering::Relaxed);
        self.reserve.store(reserve, Ordering::Relaxed);
        DiskUsage::from_u8(self.usage.swap(usage.to_u8(), Ordering::AcqRel))
    }
}

/// Bytes as a short human-readable size (`12.5 MiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The region error refusing a write on a full disk: `errorpb.disk_full`
/// naming this store, with the reason in both `reason` and `message`.
pub fn disk_full_error(store_id: u64, state: &DiskState) -> errorpb::Error {
    let stats = state.stats();
    let reason = format!(
        "disk full: store {store_id} is {} ({} available of {}, reserve {}); \
         writes that add data are refused until space is freed",
        state.usage().name(),
        human(stats.available),
        human(stats.capacity),
        human(state.reserve()),
    );
    errorpb::Error {
        message: reason.clone(),
        disk_full: Some(errorpb::DiskFull {
            store_id: vec![store_id],
            reason,
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
