//! The harness's one error type.
//!
//! Every variant names the process or the condition it is about and, where a child process is
//! involved, carries the tail of its log so that a failing test shows why without digging.
//! `must_*` helpers elsewhere turn these into panics.

use std::path::PathBuf;
use std::time::Duration;

/// Harness result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while starting, watching or stopping a cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary the harness runs is not built.
    #[error(
        "binary `{name}` not found at {}: run `cargo build --workspace --bins` first \
         (or point KV_BIN_DIR at the directory holding `placement` and `store`)",
        path.display()
    )]
    BinaryMissing { name: String, path: PathBuf },

    /// A child process could not be started.
    #[error("failed to spawn {name} ({}): {source}", program.display())]
    Spawn {
        name: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A child process exited while the harness expected it to run.
    #[error("{name} exited unexpectedly ({status})\n{log_tail}")]
    Exited {
        name: String,
        status: String,
        log_tail: String,
    },

    /// A condition did not become true before its deadline. The summary comes again after the
    /// logs, so it survives when only the head and tail of a long failure are kept.
    #[error(
        "timed out after {waited:?} waiting for {what}; last observation: {last}\n{logs}\n\
         (end of logs) timed out after {waited:?} waiting for {what}; last observation: {last}"
    )]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
        logs: String,
    },

    /// File-system work on the cluster directory failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Sending a signal to a child failed.
    #[error("cannot signal {name}: {source}")]
    Signal {
        name: String,
        #[source]
        source: nix::errno::Errno,
    },

    /// No free loopback port could be reserved.
    #[error("cannot reserve a free loopback port: {0}")]
    Ports(#[source] std::io::Error),

    /// A store index out of range.
    #[error("no store with index {index} (cluster has {count})")]
    NoSuchStore { index: usize, count: usize },

    /// A setup command (e.g. `ip link add`) could not run or failed.
    #[error("`{command}` failed: {reason}")]
    Command { command: String, reason: String },

    /// The operation needs a running process that is not running.
    #[error("{0} is not running")]
    NotRunning(String),
}

impl Error {
    /// An `Io` error about `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
