//! [`MetaWriter`]: the one thread that writes metadata to disk, so RocksDB never blocks an
//! async worker thread.
//!
//! Writes are applied in the order they are submitted. [`MetaWriter::write`] waits until its
//! batch is synced (bootstrap, stores, TSO and id marks, safe points);
//! [`MetaWriter::write_behind`] returns at once (region heartbeats, which the stores re-send
//! anyway). Pending batches are coalesced into one RocksDB write. The thread owns the database,
//! so [`MetaWriter::close`] releases the directory lock for a restart in the same process.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::meta::MetaWrite;
use crate::storage::MetaStore;

type Ack = oneshot::Sender<Result<()>>;

enum Msg {
    Write(Vec<MetaWrite>, Option<Ack>),
    Close,
}

/// Handle to the writer thread.
pub struct MetaWriter {
    tx: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl MetaWriter {
    /// Starts the writer thread; it owns `store` from now on.
    pub fn spawn(store: MetaStore) -> Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("meta-writer".into())
            .spawn(move || run(store, rx))?;
        Ok(MetaWriter {
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Writes durably and waits for it.
    pub async fn write(&self, writes: Vec<MetaWrite>) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Write(writes, Some(ack)))
            .map_err(|_| Error::WriterStopped)?;
        done.await.map_err(|_| Error::WriterStopped)?
    }

    /// Queues a write without waiting.
    pub fn write_behind(&self, writes: Vec<MetaWrite>) {
        if writes.is_empty() {
            return;
        }
        if self.tx.send(Msg::Write(writes, None)).is_err() {
            tracing::warn!("metadata writer stopped; dropping a region update");
        }
    }

    /// Flushes what is queued, stops the thread and closes the database. Idempotent.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!("metadata writer thread panicked");
            }
        }
    }
}

impl Drop for MetaWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn run(store: MetaStore, rx: Receiver<Msg>) {
    while let Ok(first) = rx.recv() {
        let mut msgs = vec![first];
        msgs.extend(rx.try_iter());
        let closing = msgs.iter().any(|m| matches!(m, Msg::Close));
        let mut writes = Vec::new();
        let mut acks = Vec::new();
        for msg in msgs {
            if let Msg::Write(w, ack) = msg {
                writes.extend(w);
                acks.extend(ack);
            }
        }
        if !writes.is_empty() {
            let sync = !acks.is_empty() || closing;
            let result = store.write(&writes, sync);
            if let Err(e) = &result {
                tracing::error!(error = %e, "metadata write failed");
            }
            for ack in acks {
                let _ = ack.send(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(Error::WriteFailed(e.to_string())),
                });
            }
        }
        if closing {
            break;
        }
    }
}
