//! The on-disk form of a region snapshot: a stream of records, written and
//! read one at a time so no snapshot is ever held whole in memory.
//!
//! Layout: the magic `FKSNAP01`, then per pair `[cf index u8][key len u32]
//! [key][value len u32][value]`, then the trailer `[0xFF][pair count u64]
//! [crc32 of everything before the trailer]`. [`SnapWriter`] builds a file
//! under a temporary name and publishes it (fsync, rename) once complete;
//! [`SnapReader`] streams the pairs back and checks the count and checksum at
//! the end. [`SnapMeta`] (size, checksum, count) travels in the raft
//! message so the receiver can verify what arrived.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::engine::{CfName, ALL_CFS};

const MAGIC: &[u8; 8] = b"FKSNAP01";
const TRAILER_TAG: u8 = 0xFF;
/// Largest key or value a record may carry (far above any real pair).
const MAX_FIELD: usize = 256 << 20;

/// One pair of a snapshot: column family, key, value.
pub type SnapPair = (CfName, Vec<u8>, Vec<u8>);

/// What identifies a snapshot file's content: its size and the checksum of
/// all its bytes (what a receiver verifies), and its pair count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapMeta {
    pub size: u64,
    pub crc32: u32,
    pub count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapFileError {
    #[error("snapshot file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot file {path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapFileError + '_ {
    move |source| SnapFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` through the checksum into `out`.
struct Checked<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Checked<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
        self.inner.write_all(bytes)
    }
}

/// Builds one snapshot file; nothing is visible under `path` until
/// [`SnapWriter::finish`].
pub struct SnapWriter {
    out: Checked<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    count: u64,
}

impl SnapWriter {
    pub fn create(path: &Path) -> Result<Self, SnapFileError> {
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = Checked {
            inner: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            len: 0,
        };
        out.put(MAGIC).map_err(io_err(&tmp))?;
        Ok(SnapWriter {
            out,
            tmp,
            path: path.to_path_buf(),
            count: 0,
        })
    }

    pub fn put(&mut self, cf: CfName, key: &[u8], value: &[u8]) -> Result<(), SnapFileError> {
        let cf = ALL_CFS.iter().position(|c| *c == cf).unwrap_or(0) as u8;
        let tmp = self.tmp.clone();
        let w = &mut self.out;
        (|| {
            w.put(&[cf])?;
            w.put(&(key.len() as u32).to_be_bytes())?;
            w.put(key)?;
            w.put(&(value.len() as u32).to_be_bytes())?;
            w.put(value)
        })()
        .map_err(io_err(&tmp))?;
        self.count += 1;
        Ok(())
    }

    /// Seals the file (trailer, fsync) and moves it to its final name.
    pub fn finish(self) -> Result<SnapMeta, SnapFileError> {
        let SnapWriter {
            mut out,
            tmp,
            path,
            count,
        } = self;
        let body_crc = out.crc.clone().finalize();
        let mut trailer = vec![TRAILER_TAG];
        trailer.extend_from_slice(&count.to_be_bytes());
        trailer.extend_from_slice(&body_crc.to_be_bytes());
        out.put(&trailer).map_err(io_err(&tmp))?;
        let (size, crc) = (out.len, out.crc.clone().finalize());
        let file = out
            .inner
            .into_inner()
            .map_err(|e| io_err(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io_err(&tmp))?;
        publish(&tmp, &path)?;
        Ok(SnapMeta {
            size,
            crc32: crc,
            count,
        })
    }
}

/// Renames a complete file into place and makes the rename durable.
pub fn publish(tmp: &Path, path: &Path) -> Result<(), SnapFileError> {
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// Streams the pairs of a snapshot file back.
pub struct SnapReader {
    input: BufReader<File>,
    path: PathBuf,
    crc: crc32fast::Hasher,
    count: u64,
    done: bool,
}

impl SnapReader {
    pub fn open(path: &Path) -> Result<Self, SnapFileError> {
        let file = File::open(path).map_err(io_err(path))?;
        let mut r = SnapReader {
            input: BufReader::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            crc: crc32fast::Hasher::new(),
            count: 0,
            done: false,
        };
        let mut magic = [0u8; 8];
        r.read(&mut magic)?;
        if &magic != MAGIC {
            return Err(r.corrupt("bad magic"));
        }
        Ok(r)
    }

    fn corrupt(&self, what: impl Into<String>) -> SnapFileError {
        SnapFileError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<(), SnapFileError> {
        self.input.read_exact(buf).map_err(io_err(&self.path))?;
        self.crc.update(buf);
        Ok(())
    }

    fn read_field(&mut self) -> Result<Vec<u8>, SnapFileError> {
        let mut len = [0u8; 4];
        self.read(&mut len)?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FIELD {
            return Err(self.corrupt(format!("field of {len} bytes")));
        }
        let mut v = vec![0u8; len];
        self.read(&mut v)?;
        Ok(v)
    }

    /// The next pair, or None after the last one (the trailer checked).
    pub fn next_pair(&mut self) -> Result<Option<SnapPair>, SnapFileError> {
        if self.done {
            return Ok(None);
        }
        let expected_crc = self.crc.clone().finalize();
        let mut tag = [0u8; 1];
        self.read(&mut tag)?;
        if tag[0] == TRAILER_TAG {
            let mut tail = [0u8; 12];
            self.input
                .read_exact(&mut tail)
                .map_err(io_err(&self.path))?;
            let count = u64::from_be_bytes(tail[..8].try_into().unwrap_or_default());
            let crc = u32::from_be_bytes(tail[8..].try_into().unwrap_or_default());
            if count != self.count || crc != expected_crc {
                return Err(self.corrupt("count or checksum mismatch"));
            }
            self.done = true;
            return Ok(None);
        }
        let Some(&cf) = ALL_CFS.get(tag[0] as usize) else {
            return Err(self.corrupt(format!("column family {}", tag[0])));
        };
        let key = self.read_field()?;
        let value = self.read_field()?;
        self.count += 1;
        Ok(Some((cf, key, value)))
    }
}

/// The size and checksum of a whole file, for checking one that arrived.
pub fn measure(path: &Path) -> Result<(u64, u32), SnapFileError> {
    let mut file = BufReader::new(File::open(path).map_err(io_err(path))?);
    let mut crc = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, crc.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CF_DEFAULT, CF_WRITE};

    #[test]
    fn pairs_stream_back_and_corruption_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.snap");
        let mut w = SnapWriter::create(&path).unwrap();
        assert!(!path.exists(), "visible only once finished");
        w.put(CF_DEFAULT, b"a", b"1").unwrap();
        w.put(CF_WRITE, b"b", &[7; 1000]).unwrap();
        let meta = w.finish().unwrap();
        assert_eq!(meta.count, 2);
        assert_eq!(measure(&path).unwrap(), (meta.size, meta.crc32));
        let mut r = SnapReader::open(&path).unwrap();
        assert_eq!(
            r.next_pair().unwrap(),
            Some((CF_DEFAULT, b"a".to_vec(), b"1".to_vec()))
        );
        assert_eq!(r.next_pair().unwrap().unwrap().2, vec![7; 1000]);
        assert_eq!(r.next_pair().unwrap(), None);

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut r = SnapReader::open(&path).unwrap();
        let mut err = None;
        for _ in 0..4 {
            if let Err(e) = r.next_pair() {
                err = Some(e);
                break;
            }
        }
        assert!(err.is_some(), "a flipped bit went unnoticed");
    }
}
