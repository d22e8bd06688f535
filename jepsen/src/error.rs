//! The checkers' one error type.
//!
//! Checkers answer "valid" or "here are the anomalies" in their reports; an [`Error`] means the
//! check itself could not be carried out: a history file that cannot be read or parsed, a history
//! that breaks the workload's contract (an appended value used twice), or the Porcupine program
//! failing to build or run. Every variant names the file, line or command it is about.

use std::path::PathBuf;

/// Checker result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can stop a check from running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// One line of a JSON-lines history is not a valid operation.
    #[error("{}:{line}: not a valid history operation: {source}", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },

    /// An operation could not be encoded as JSON.
    #[error("cannot encode a history operation as JSON: {0}")]
    Encode(#[source] serde_json::Error),

    /// The history breaks a rule its workload promises (e.g. unique appended values).
    #[error("invalid history: {0}")]
    InvalidHistory(String),

    /// A caller passed an argument the function cannot use.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A tool the checker runs could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// `go build` of the Porcupine program failed.
    #[error("building porcupine-check failed ({status}):\n{stderr}")]
    Build { status: String, stderr: String },

    /// The Porcupine program refused its input or ended in an unexpected way.
    #[error("porcupine-check {}: {status}:\n{stderr}", history.display())]
    Checker {
        history: PathBuf,
        status: String,
        stderr: String,
    },

    /// The Porcupine program's verdict line is not the JSON it promises.
    #[error("porcupine-check printed an unreadable verdict {stdout:?}: {source}")]
    Verdict {
        stdout: String,
        #[source]
        source: serde_json::Error,
    },
}
