//! [`MetaWriter`]: how the server makes metadata durable. Every write is proposed to the
//! member group's raft log ([`crate::member`]) and applied to RocksDB by the raft thread on
//! every member, so RocksDB never blocks an async worker thread.
//!
//! [`MetaWriter::write`] waits until the change is committed by a majority and applied here
//! (bootstrap, stores, TSO and id marks, safe points); [`MetaWriter::write_behind`] returns at
//! once (region heartbeats, which the stores re-send anyway). Only the leader proposes: on any
//! other member both fail with [`Error::NotLeader`]. The thread owns the raft state, so
//! [`MetaWriter::close`] releases the directory for a restart in the same process. A raft
//! thread that fails (its state can no longer be persisted) or panics stops the whole process
//! (fail-stop): the other members then elect a leader that can serve.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use prost::Message as _;
use proto::placementpb::MemberInfo;
use raft::eraftpb::ConfChangeType;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::member::filter::Filters;
use crate::member::log::Restored;
use crate::member::node::{Msg, Node};
use crate::member::transport::Transport;
use crate::member::{Event, Shared};
use crate::meta::MetaWrite;
use crate::storage::{to_ops, MetaStore};

/// How long a write waits for its entry to commit before giving up.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to the member's raft thread.
pub struct MetaWriter {
    tx: Sender<Msg>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    filters: Filters,
}

impl MetaWriter {
    /// Starts the raft thread; it owns the raft state from now on. Role changes come out of
    /// the returned receiver.
    pub fn spawn(
        store: MetaStore,
        restored: Restored,
        shared: Arc<Shared>,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Event>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let filters = Filters::default();
        let transport = Transport::new(
            tokio::runtime::Handle::current(),
            shared.clone(),
            tx.clone(),
            filters.clone(),
        );
        let logger = crate::member::raft_logger();
        let node = Node::new(
            restored,
            store,
            shared.clone(),
            transport,
            events_tx,
            &logger,
        )?;
        let thread = std::thread::Builder::new()
            .name("meta-raft".into())
            .spawn(move || {
                let run = std::panic::catch_unwind(AssertUnwindSafe(move || node.run(rx)));
                match run {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => fail_stop(&format!("the raft loop failed: {e}")),
                    Err(panic) => fail_stop(&format!(
                        "the raft thread panicked: {}",
                        panic_message(panic.as_ref())
                    )),
                }
            })?;
        Ok((
            MetaWriter {
                tx,
                shared,
                thread: Mutex::new(Some(thread)),
                filters,
            },
            events_rx,
        ))
    }

    /// The filters on this member's outgoing raft messages (empty unless a test adds some).
    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    /// The channel peers' messages go into.
    pub fn node_sender(&self) -> Sender<Msg> {
        self.tx.clone()
    }

    /// Replicates durably and waits for it.
    pub async fn write(&self, writes: Vec<MetaWrite>) -> Result<()> {
        if !self.shared.is_raft_leader() {
            return Err(self.shared.not_leader());
        }
        let (ack, done) = oneshot::channel();
        let data = to_ops(&writes).encode_to_vec();
        self.tx
            .send(Msg::Propose {
                data,
                ack: Some(ack),
            })
            .map_err(|_| Error::WriterStopped)?;
        match tokio::time::timeout(COMMIT_TIMEOUT, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::WriterStopped),
            Err(_) => Err(Error::CommitTimeout {
                waited: COMMIT_TIMEOUT,
            }),
        }
    }

    /// Replicates without waiting. Dropped (with a debug log) when this member does not lead.
    pub fn write_behind(&self, writes: Vec<MetaWrite>) {
        if writes.is_empty() {
            return;
        }
        if !self.shared.is_raft_leader() {
            tracing::debug!("not the placement leader; dropping a region update");
            return;
        }
        let data = to_ops(&writes).encode_to_vec();
        if self.tx.send(Msg::Propose { data, ack: None }).is_err() {
            tracing::warn!("metadata writer stopped; dropping a region update");
        }
    }

    /// Asks raft to hand leadership to `to`.
    pub fn transfer_leader(&self, to: u64) -> Result<()> {
        self.tx
            .send(Msg::TransferLeader { to })
            .map_err(|_| Error::WriterStopped)
    }

    /// Removes a voter and waits until the change is applied here.
    pub async fn remove_member(&self, member: MemberInfo) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::ConfChange {
                change: ConfChangeType::RemoveNode,
                member,
                ack,
            })
            .map_err(|_| Error::WriterStopped)?;
        match tokio::time::timeout(COMMIT_TIMEOUT, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::WriterStopped),
            Err(_) => Err(Error::Membership(
                "the change did not commit in time".into(),
            )),
        }
    }

    /// Stops the thread (after it persists what is in flight). Idempotent.
    pub fn close(&self) {
        let _ = self.tx.send(Msg::Close);
        if let Some(thread) = self.thread.lock().take() {
            if thread.join().is_err() {
                tracing::error!("placement raft thread panicked");
            }
        }
    }
}

/// Ends the process. A member whose raft thread is gone can neither persist nor apply: it
/// must not go on answering health checks and `GetMembers` as if it could. Its peers elect
/// another leader; a supervisor restarts it from its data directory.
fn fail_stop(reason: &str) -> ! {
    tracing::error!(
        reason,
        "placement member stops the process: its raft thread is gone (fail-stop)"
    );
    std::process::abort()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "a non-text panic"
    }
}

impl Drop for MetaWriter {
    fn drop(&mut self) {
        self.close();
    }
}
