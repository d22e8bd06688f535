//! The results directory a fault-suite run leaves behind, so a failure can be studied and
//! replayed: the recorded histories (JSON lines), the nemesis schedule and the checkers'
//! reports (JSON), every process's log under `logs/`, and `REPRODUCE`, one line holding the
//! command (with its seed) that runs the same test again. All writes are blocking file I/O:
//! call from a blocking thread, not an async runtime worker.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::history::write_jsonl;

/// The placeholder [`ResultsDir::write_reproducer`] replaces with the seed.
pub const SEED_PLACEHOLDER: &str = "{seed}";

/// One run's results directory.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    root: PathBuf,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

impl ResultsDir {
    /// Creates (or reuses) `base/run` and its `logs/` directory.
    pub fn create(base: &Path, run: &str) -> Result<Self> {
        if run.is_empty() || run.contains(['/', '\\']) || run == ".." {
            return Err(Error::InvalidArgument(format!(
                "run name {run:?} must be one path component"
            )));
        }
        let root = base.join(run);
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs).map_err(io_err("create", &logs))?;
        Ok(ResultsDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes `ops` to `<name>.jsonl`.
    pub fn write_history<T: Serialize>(&self, name: &str, ops: &[T]) -> Result<PathBuf> {
        let path = self.root.join(format!("{name}.jsonl"));
        write_jsonl(&path, ops)?;
        Ok(path)
    }

    /// Writes `value` as pretty JSON to `<name>.json` (nemesis schedule, checker reports).
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<PathBuf> {
        let path = self.root.join(format!("{name}.json"));
        let text = serde_json::to_string_pretty(value).map_err(Error::Encode)?;
        std::fs::write(&path, text + "\n").map_err(io_err("write", &path))?;
        Ok(path)
    }

    /// Copies a process's log to `logs/<process>.log`.
    pub fn copy_log(&self, process: &str, log: &Path) -> Result<PathBuf> {
        let path = self.root.join("logs").join(format!("{process}.log"));
        std::fs::copy(log, &path).map_err(io_err("copy log", log))?;
        Ok(path)
    }

    /// Writes `REPRODUCE`: `command` with [`SEED_PLACEHOLDER`] replaced by `seed`, on one line.
    /// The placeholder is required, so the line always carries the seed.
    pub fn write_reproducer(&self, seed: u64, command: &str) -> Result<PathBuf> {
        if !command.contains(SEED_PLACEHOLDER) || command.contains('\n') {
            return Err(Error::InvalidArgument(format!(
                "reproducer {command:?} must be one line holding {SEED_PLACEHOLDER}"
            )));
        }
        let path = self.root.join("REPRODUCE");
        let line = command.replace(SEED_PLACEHOLDER, &seed.to_string());
        std::fs::write(&path, line + "\n").map_err(io_err("write", &path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{read_jsonl, Outcome, RegisterOp};
    use crate::testdir::TestDir;

    #[test]
    fn failing_run_leaves_history_schedule_logs_and_reproducer() {
        let base = TestDir::new("results");
        let results = ResultsDir::create(base.path(), "bank-partition-42").unwrap();
        let ops = vec![RegisterOp::write(1, (0, 1), "k", "v", Outcome::Ok)];
        let history = results.write_history("register", &ops).unwrap();
        assert_eq!(read_jsonl::<RegisterOp>(&history).unwrap(), ops);

        let schedule = serde_json::json!([{"at_ms": 100, "fault": "partition", "stores": [1, 2]}]);
        let path = results.write_json("nemesis", &schedule).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(back, schedule);

        let log = base.path().join("store-1.log");
        std::fs::write(&log, "started\n").unwrap();
        let copied = results.copy_log("store-1", &log).unwrap();
        assert_eq!(std::fs::read_to_string(copied).unwrap(), "started\n");

        let command = "FERROKV_JEPSEN_SEED={seed} cargo test -p e2e --test jepsen bank";
        let repro = results.write_reproducer(42, command).unwrap();
        assert_eq!(
            std::fs::read_to_string(repro).unwrap(),
            "FERROKV_JEPSEN_SEED=42 cargo test -p e2e --test jepsen bank\n"
        );
    }

    #[test]
    fn reproducer_without_the_seed_and_odd_run_names_are_refused() {
        let base = TestDir::new("results-bad");
        let results = ResultsDir::create(base.path(), "run").unwrap();
        let err = results
            .write_reproducer(7, "cargo test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("{seed}"), "{err}");
        assert!(ResultsDir::create(base.path(), "../escape").is_err());
        assert!(ResultsDir::create(base.path(), "").is_err());
    }
}
