//! The disk monitor: a thread that looks at the data directory's file system
//! every `storage.disk-check-interval-ms`, publishes the result in the
//! shared [`DiskState`], and keeps the placeholder file: created (at a fifth
//! of the reserve) while the disk is normal, released as soon as it is not.
//!
//! All of its I/O (statvfs, walking the data directory, writing and removing
//! the placeholder) happens on its own thread, never on the async runtime.
//! [`DiskMonitor::start`] makes the first look before it returns, so the
//! store never serves a write on a disk it has not looked at; call it from a
//! blocking context.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::{
    effective_reserve, human, placeholder_size, DiskSample, DiskState, DiskStats, DiskUsage,
    PLACEHOLDER_FILE,
};
use std::sync::Arc;

/// What the monitor watches and how.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub data_dir: PathBuf,
    /// `storage.reserve-space`, bytes (0: no protection, no placeholder).
    pub reserve_space: u64,
    /// `raftstore.capacity`, bytes (0: the file system's size).
    pub capacity_limit: u64,
    pub interval: Duration,
}

/// The running monitor; dropping it stops the thread.
pub struct DiskMonitor {
    _stop: Sender<()>,
}

impl DiskMonitor {
    /// Looks once, publishes, then keeps looking on a `disk-monitor` thread.
    pub fn start(cfg: MonitorConfig, state: Arc<DiskState>) -> io::Result<DiskMonitor> {
        let mut watcher = Watcher { cfg, state };
        watcher.look()?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("disk-monitor".into())
            .spawn(move || watcher.run(stopped))?;
        Ok(DiskMonitor { _stop: stop })
    }
}

struct Watcher {
    cfg: MonitorConfig,
    state: Arc<DiskState>,
}

impl Watcher {
    fn run(mut self, stopped: Receiver<()>) {
        loop {
            match stopped.recv_timeout(self.cfg.interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            if let Err(e) = self.look() {
                tracing::warn!(error = %e, dir = %self.cfg.data_dir.display(), "disk check failed");
            }
        }
    }

    fn placeholder_path(&self) -> PathBuf {
        self.cfg.data_dir.join(PLACEHOLDER_FILE)
    }

    /// One look: sample, classify, keep the placeholder, publish.
    fn look(&mut self) -> io::Result<()> {
        let sample = self.sample()?;
        let capacity = DiskStats::compute(sample, self.cfg.capacity_limit, 0).capacity;
        let reserve = effective_reserve(self.cfg.reserve_space, capacity);
        let target = placeholder_size(reserve);
        let stats = DiskStats::compute(sample, self.cfg.capacity_limit, target);
        let usage = DiskUsage::classify(stats.available, reserve);
        self.keep_placeholder(usage, sample.placeholder, target);
        let before = self.state.publish(stats, reserve, usage);
        let gauge = &crate::metrics::DISK_USAGE;
        gauge
            .with_label_values(&["usage"])
            .set(i64::from(usage.to_u8()));
        gauge
            .with_label_values(&["available"])
            .set(i64::try_from(stats.available).unwrap_or(i64::MAX));
        if before != usage {
            let level_warn = usage != DiskUsage::Normal;
            let (available, capacity) = (human(stats.available), human(stats.capacity));
            if level_warn {
                tracing::warn!(from = before.name(), to = usage.name(), %available, %capacity, reserve = %human(reserve), "disk usage changed: writes adding data are refused");
            } else {
                tracing::info!(from = before.name(), to = usage.name(), %available, %capacity, "disk usage back to normal");
            }
        }
        Ok(())
    }

    // `fsblkcnt_t` and `c_ulong` are `u64` here but not on every platform.
    #[allow(clippy::unnecessary_cast)]
    fn sample(&self) -> io::Result<DiskSample> {
        let vfs = nix::sys::statvfs::statvfs(&self.cfg.data_dir).map_err(io::Error::from)?;
        let frag = vfs.fragment_size() as u64;
        let placeholder = match std::fs::metadata(self.placeholder_path()) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(DiskSample {
            fs_total: (vfs.blocks() as u64).saturating_mul(frag),
            fs_available: (vfs.blocks_available() as u64).saturating_mul(frag),
            dir_size: dir_size(&self.cfg.data_dir),
            placeholder,
        })
    }

    /// Releases the placeholder on a disk that is not normal; on a normal one
    /// makes sure it exists at `target` bytes.
    fn keep_placeholder(&self, usage: DiskUsage, current: u64, target: u64) {
        let path = self.placeholder_path();
        if usage != DiskUsage::Normal || target == 0 {
            if current > 0 {
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::warn!(bytes = current, "space placeholder released"),
                    Err(e) => tracing::warn!(error = %e, "releasing the space placeholder failed"),
                }
            }
            return;
        }
        if current == target {
            return;
        }
        if let Err(e) = create_placeholder(&path, target) {
            tracing::warn!(error = %e, bytes = target, "creating the space placeholder failed");
            let _ = std::fs::remove_file(&path);
        } else {
            tracing::info!(bytes = target, "space placeholder in place");
        }
    }
}

/// Writes the placeholder file with `size` bytes really allocated.
fn create_placeholder(path: &Path, size: u64) -> io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let len = i64::try_from(size).map_err(|_| io::Error::other("placeholder too large"))?;
    if nix::fcntl::posix_fallocate(&file, 0, len).is_err() {
        // A file system without fallocate: write zeros instead.
        let chunk = vec![0u8; 1 << 20];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n])?;
            left -= n as u64;
        }
    }
    file.sync_all()
}

/// Bytes allocated to the files under `dir` (files that vanish meanwhile,
/// as RocksDB's do, are skipped).
fn dir_size(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0u64;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        total = total.saturating_add(if meta.is_dir() {
            dir_size(&entry.path())
        } else {
            meta.blocks().saturating_mul(512)
        });
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn monitor_in(dir: &Path, reserve: u64, capacity_limit: u64) -> (DiskMonitor, Arc<DiskState>) {
        let state = Arc::new(DiskState::default());
        let cfg = MonitorConfig {
            data_dir: dir.to_path_buf(),
            reserve_space: reserve,
            capacity_limit,
            interval: Duration::from_secs(3600),
        };
        (DiskMonitor::start(cfg, state.clone()).unwrap(), state)
    }

    #[test]
    fn first_look_publishes_and_places_the_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db").join("f"), vec![1u8; 64 << 10]).unwrap();
        let (_m, state) = monitor_in(dir.path(), 10 * MIB, 0);
        let stats = state.stats();
        assert!(stats.capacity > 0 && stats.available > 0, "{stats:?}");
        assert!(stats.used >= 64 << 10, "{stats:?}");
        let placeholder = dir.path().join(PLACEHOLDER_FILE);
        // The temp dir's disk is normal unless nearly full (then no placeholder).
        if state.usage() == DiskUsage::Normal {
            let len = std::fs::metadata(&placeholder).unwrap().len();
            assert_eq!(len, placeholder_size(state.reserve()));
        }
    }

    #[test]
    fn a_capacity_limit_below_use_makes_the_disk_full_and_releases_the_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PLACEHOLDER_FILE), vec![0u8; MIB as usize]).unwrap();
        std::fs::write(dir.path().join("data"), vec![1u8; 4 * MIB as usize]).unwrap();
        // 5 MiB of capacity, 5 MiB used: nothing available, reserve 0.5 MiB.
        let (_m, state) = monitor_in(dir.path(), 10 * MIB, 5 * MIB);
        assert_eq!(state.usage(), DiskUsage::AlreadyFull);
        assert_eq!(state.stats().capacity, 5 * MIB);
        assert!(!dir.path().join(PLACEHOLDER_FILE).exists());
    }

    #[test]
    fn no_reserve_means_no_placeholder_and_always_normal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PLACEHOLDER_FILE), b"old").unwrap();
        let (_m, state) = monitor_in(dir.path(), 0, 1);
        assert_eq!(state.usage(), DiskUsage::Normal);
        assert!(!dir.path().join(PLACEHOLDER_FILE).exists());
    }
}
