//! Recorded histories: the operation shapes the fault-suite runner writes and the checkers read.
//!
//! Two workloads share [`Outcome`]: single-key registers ([`RegisterOp`], checked for
//! linearizability by Porcupine) and list-append transactions ([`TxnOp`] made of [`Mop`]s,
//! checked by the Elle-style checker). Times are nanoseconds on one monotonic clock of the
//! runner; `call_ns` is taken before the request is sent and `return_ns` after its answer came
//! back. Histories travel as JSON lines, one operation per line ([`write_jsonl`],
//! [`read_jsonl`]); the Go checker under `porcupine/` reads the same register shape.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Took effect; its results are known.
    Ok,
    /// Certainly did not take effect (refused, rolled back, conflict).
    Fail,
    /// Indeterminate (timeout, connection lost): may or may not have taken effect, at any time
    /// after its call; its return time is meaningless (treat it as +infinity).
    Info,
}

/// What a register operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegisterF {
    /// Read the key; `read` holds the result when ok (`None` = not found).
    Read,
    /// Put `value`.
    Write,
    /// Compare-and-swap: put `value` if the key currently holds `expected`
    /// (`None` = the key must not exist).
    Cas,
}

/// One operation on a single-key register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: u64,
    pub key: String,
    pub f: RegisterF,
    /// Write: the value written; cas: the new value.
    #[serde(default)]
    pub value: Option<String>,
    /// Cas: the value required before the swap (`None` = must not exist).
    #[serde(default)]
    pub expected: Option<String>,
    pub outcome: Outcome,
    /// Read result when ok (`None` = not found).
    #[serde(default)]
    pub read: Option<String>,
    /// Cas, when ok: whether the swap happened.
    #[serde(default)]
    pub cas_ok: Option<bool>,
}

impl RegisterOp {
    fn new(process: u64, times: (u64, u64), key: &str, f: RegisterF, outcome: Outcome) -> Self {
        RegisterOp {
            process,
            call_ns: times.0,
            return_ns: times.1,
            key: key.to_owned(),
            f,
            value: None,
            expected: None,
            outcome,
            read: None,
            cas_ok: None,
        }
    }

    /// A read that ended with `outcome`; `read` is its result (meaningful when ok).
    pub fn read(
        process: u64,
        times: (u64, u64),
        key: &str,
        outcome: Outcome,
        read: Option<&str>,
    ) -> Self {
        let mut op = Self::new(process, times, key, RegisterF::Read, outcome);
        op.read = read.map(str::to_owned);
        op
    }

    /// A write of `value` that ended with `outcome`.
    pub fn write(
        process: u64,
        times: (u64, u64),
        key: &str,
        value: &str,
        outcome: Outcome,
    ) -> Self {
        let mut op = Self::new(process, times, key, RegisterF::Write, outcome);
        op.value = Some(value.to_owned());
        op
    }

    /// A compare-and-swap `expected -> value`; `cas_ok` says whether it swapped (when ok).
    pub fn cas(
        process: u64,
        times: (u64, u64),
        key: &str,
        swap: (Option<&str>, &str),
        outcome: Outcome,
        cas_ok: Option<bool>,
    ) -> Self {
        let mut op = Self::new(process, times, key, RegisterF::Cas, outcome);
        op.expected = swap.0.map(str::to_owned);
        op.value = Some(swap.1.to_owned());
        op.cas_ok = cas_ok;
        op
    }
}

/// One micro-operation of a list-append transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f")]
pub enum Mop {
    /// Append `value` to the list at `key`; values are unique per key over the whole history.
    #[serde(rename = "append")]
    Append { key: String, value: u64 },
    /// Read the list at `key`. Known only in ok transactions, where `None` and `[]` both mean
    /// the key holds nothing yet.
    #[serde(rename = "r")]
    Read {
        key: String,
        #[serde(default)]
        value: Option<Vec<u64>>,
    },
}

impl Mop {
    /// An append of `value` to `key`.
    pub fn append(key: &str, value: u64) -> Self {
        Mop::Append {
            key: key.to_owned(),
            value,
        }
    }

    /// A read of `key` that returned `value`.
    pub fn read(key: &str, value: Option<Vec<u64>>) -> Self {
        Mop::Read {
            key: key.to_owned(),
            value,
        }
    }

    /// The key this micro-operation touches.
    pub fn key(&self) -> &str {
        match self {
            Mop::Append { key, .. } | Mop::Read { key, .. } => key,
        }
    }
}

/// One list-append transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOp {
    pub process: u64,
    pub call_ns: u64,
    pub return_ns: u64,
    pub outcome: Outcome,
    pub mops: Vec<Mop>,
}

impl TxnOp {
    /// A transaction of `mops` that ended with `outcome`.
    pub fn new(process: u64, times: (u64, u64), outcome: Outcome, mops: Vec<Mop>) -> Self {
        TxnOp {
            process,
            call_ns: times.0,
            return_ns: times.1,
            outcome,
            mops,
        }
    }
}

/// Writes `ops` to `path` as JSON lines, replacing the file.
pub fn write_jsonl<T: Serialize>(path: &Path, ops: &[T]) -> Result<()> {
    let io_err = |source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut out = BufWriter::new(file);
    for op in ops {
        serde_json::to_writer(&mut out, op).map_err(Error::Encode)?;
        out.write_all(b"\n").map_err(io_err)?;
    }
    out.flush().map_err(io_err)?;
    out.get_ref().sync_all().map_err(io_err)
}

/// Reads a JSON-lines history from `path`; blank lines are skipped.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        action: "open",
        path: path.to_owned(),
        source,
    })?;
    parse_jsonl(BufReader::new(file), path)
}

/// Parses JSON lines from `reader`; `path` only names the source in errors.
pub fn parse_jsonl<T: DeserializeOwned>(reader: impl BufRead, path: &Path) -> Result<Vec<T>> {
    let mut ops = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| Error::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|source| Error::BadLine {
            path: path.to_owned(),
            line: index + 1,
            source,
        })?;
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    #[test]
    fn register_op_uses_the_agreed_json_shape() {
        let op = RegisterOp::cas(3, (10, 20), "k", (None, "v1"), Outcome::Ok, Some(true));
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"process": 3, "call_ns": 10, "return_ns": 20, "key": "k",
                "f": "cas", "value": "v1", "expected": null, "outcome": "ok", "read": null,
                "cas_ok": true})
        );
        let missing_options: RegisterOp = serde_json::from_str(
            r#"{"process":1,"call_ns":1,"return_ns":2,"key":"k","f":"read","outcome":"info"}"#,
        )
        .unwrap();
        assert_eq!(missing_options.read, None);
        assert_eq!(missing_options.outcome, Outcome::Info);
    }

    #[test]
    fn txn_op_uses_the_agreed_json_shape() {
        let op = TxnOp::new(
            1,
            (5, 6),
            Outcome::Ok,
            vec![Mop::append("x", 7), Mop::read("y", Some(vec![1, 2]))],
        );
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"process": 1, "call_ns": 5, "return_ns": 6, "outcome": "ok",
                "mops": [{"f": "append", "key": "x", "value": 7},
                         {"f": "r", "key": "y", "value": [1, 2]}]})
        );
        let unknown_read: Mop = serde_json::from_str(r#"{"f":"r","key":"y"}"#).unwrap();
        assert_eq!(unknown_read, Mop::read("y", None));
    }

    #[test]
    fn jsonl_round_trips_and_names_the_bad_line() {
        let dir = TestDir::new("jsonl");
        let path = dir.path().join("history.jsonl");
        let ops = vec![
            RegisterOp::write(1, (1, 2), "a", "1", Outcome::Ok),
            RegisterOp::read(2, (3, 4), "a", Outcome::Ok, Some("1")),
        ];
        write_jsonl(&path, &ops).unwrap();
        assert_eq!(read_jsonl::<RegisterOp>(&path).unwrap(), ops);

        std::fs::write(&path, "\n{\"process\": 1}\n").unwrap();
        let err = read_jsonl::<RegisterOp>(&path).unwrap_err().to_string();
        assert!(err.contains("history.jsonl:2:"), "{err}");
    }
}
