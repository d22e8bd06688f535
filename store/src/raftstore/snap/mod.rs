//! Region snapshots built and installed off the raftstore thread, and moved
//! between stores as files.
//!
//! Raft carries only a small descriptor ([`SnapDescriptor`]: the region and
//! the file's size, checksum and pair count) in a snapshot message; the pairs
//! travel as a file ([`file`]) named by its [`SnapKey`] in the store's
//! [`SnapManager`] directory. A leader's replica builds the file on the
//! generation worker from an engine snapshot taken at exactly its applied
//! index ([`worker`]); the transport streams it to the receiving store,
//! which hands raft the message only once the file is complete and
//! verified; the receiving replica installs it on the apply worker, in
//! bounded batches, while the raftstore thread goes on serving every other
//! region.

pub mod file;
pub mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message as _;
use proto::metapb;

pub use file::{SnapFileError, SnapMeta, SnapReader, SnapWriter};

/// Why a snapshot could not be built or its descriptor read.
#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("not a snapshot descriptor")]
    NotDescriptor,
    #[error("snapshot descriptor truncated")]
    Truncated,
    #[error("snapshot descriptor's region: {0}")]
    Region(#[from] prost::DecodeError),
    #[error("the replica has no data to build from yet")]
    NoData,
    #[error(transparent)]
    File(#[from] SnapFileError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error("the snapshot task panicked")]
    Panicked,
}

/// Names one snapshot of one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapKey {
    pub region_id: u64,
    pub term: u64,
    pub index: u64,
}

impl SnapKey {
    fn file_name(&self, kind: &str) -> String {
        format!(
            "{kind}_{}_{}_{}.snap",
            self.region_id, self.term, self.index
        )
    }
}

/// The snapshot data raft carries in its message: the region and what
/// identifies the file holding its pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapDescriptor {
    pub region: metapb::Region,
    pub meta: SnapMeta,
}

const DESCRIPTOR_MAGIC: &[u8; 4] = b"FKSD";

impl SnapDescriptor {
    pub fn encode(&self) -> Vec<u8> {
        let region = self.region.encode_to_vec();
        let mut out = Vec::with_capacity(region.len() + 32);
        out.extend_from_slice(DESCRIPTOR_MAGIC);
        out.extend_from_slice(&(region.len() as u32).to_be_bytes());
        out.extend_from_slice(&region);
        out.extend_from_slice(&self.meta.size.to_be_bytes());
        out.extend_from_slice(&self.meta.crc32.to_be_bytes());
        out.extend_from_slice(&self.meta.count.to_be_bytes());
        out
    }

    pub fn decode(data: &[u8]) -> Result<Self, SnapError> {
        let rest = data
            .strip_prefix(DESCRIPTOR_MAGIC.as_slice())
            .ok_or(SnapError::NotDescriptor)?;
        let (len, rest) = rest.split_at_checked(4).ok_or(SnapError::Truncated)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| SnapError::Truncated)?) as usize;
        let (region, rest) = rest.split_at_checked(len).ok_or(SnapError::Truncated)?;
        let region = metapb::Region::decode(region)?;
        if rest.len() != 20 {
            return Err(SnapError::Truncated);
        }
        let u64_at = |i: usize| u64::from_be_bytes(rest[i..i + 8].try_into().unwrap_or_default());
        Ok(SnapDescriptor {
            region,
            meta: SnapMeta {
                size: u64_at(0),
                crc32: u32::from_be_bytes(rest[8..12].try_into().unwrap_or_default()),
                count: u64_at(12),
            },
        })
    }
}

/// The directory of a store's snapshot files: `gen_*` built here for other
/// stores, `recv_*` received from them (kept until installed).
#[derive(Debug)]
pub struct SnapManager {
    dir: PathBuf,
    generated: AtomicU64,
    received: AtomicU64,
}

impl SnapManager {
    /// Opens (creating) `dir`; half-written files of an earlier run go.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") || name.starts_with("gen_") {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(SnapManager {
            dir: dir.to_path_buf(),
            generated: AtomicU64::new(0),
            received: AtomicU64::new(0),
        })
    }

    pub fn gen_path(&self, key: &SnapKey) -> PathBuf {
        self.dir.join(key.file_name("gen"))
    }

    pub fn recv_path(&self, key: &SnapKey) -> PathBuf {
        self.dir.join(key.file_name("recv"))
    }

    /// Where a file being received is written before it is verified.
    pub fn recv_tmp_path(&self, key: &SnapKey) -> PathBuf {
        self.recv_path(key).with_extension("tmp")
    }

    /// Whether a received file is in place and matches `meta`.
    pub fn has_received(&self, key: &SnapKey, meta: &SnapMeta) -> bool {
        std::fs::metadata(self.recv_path(key)).is_ok_and(|m| m.len() == meta.size)
    }

    pub(crate) fn count_generated(&self) {
        self.generated.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Snapshots built on this store so far.
    pub fn generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    /// Snapshots received by this store so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Removes received files older than `min_age` except those in `keep`.
    pub fn remove_stale_received(&self, keep: &[PathBuf], min_age: std::time::Duration) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let old = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= min_age));
            if name.starts_with("recv_") && old && !keep.contains(&path) {
                self.remove(&path);
            }
        }
    }

    /// Removes a file that is no longer needed (a missing one is fine).
    pub fn remove(&self, path: &Path) {
        if let Err(e) = std::fs::remove_file(path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "removing snapshot file failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_round_trips_and_rejects_garbage() {
        let d = SnapDescriptor {
            region: metapb::Region {
                id: 9,
                start_key: b"a".to_vec(),
                ..Default::default()
            },
            meta: SnapMeta {
                size: 1 << 40,
                crc32: 0xdead_beef,
                count: 77,
            },
        };
        let bytes = d.encode();
        assert_eq!(SnapDescriptor::decode(&bytes).unwrap(), d);
        for cut in 0..bytes.len() {
            assert!(
                SnapDescriptor::decode(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        assert!(SnapDescriptor::decode(b"FKSX").is_err());
    }
}
