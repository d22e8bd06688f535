//! Single-key linearizability through Porcupine, the checker etcd's robustness suite uses.
//!
//! The checker is the Go program under `porcupine/` (`porcupine-check`, its own Go module).
//! Its sources are compiled into this crate; [`Porcupine::locate`] writes them to a cache
//! directory outside the clone (`$FERROKV_TOOLS_DIR`, else `~/.cache/ferrokv-tools`) and runs
//! `go build` once into `porcupine-check-<hash of the sources and go.sum>`, reused until the
//! sources change. [`check_file`] and [`check_ops`] run it on a register history and parse its
//! verdict; where `go` is not on `PATH` they answer [`Verdict::Skipped`] with the reason, so the
//! suite can print `SKIPPED: <reason>` for this checker only. Everything here blocks (process
//! spawns, file writes): call it from a blocking thread, not an async runtime worker.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::history::{write_jsonl, RegisterOp};

/// The Go module's files, as (name, contents); the test file is not needed to build.
const SOURCES: [(&str, &str); 5] = [
    ("go.mod", include_str!("../porcupine/go.mod")),
    ("go.sum", include_str!("../porcupine/go.sum")),
    ("main.go", include_str!("../porcupine/main.go")),
    ("history.go", include_str!("../porcupine/history.go")),
    ("model.go", include_str!("../porcupine/model.go")),
];

/// The verdict line `porcupine-check` prints.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Summary {
    pub ok: bool,
    /// Keys in the history.
    pub keys: usize,
    /// Operations in the history file.
    pub ops: usize,
    /// Operations given to Porcupine (failed ones and indeterminate reads are left out).
    pub checked_ops: usize,
    /// Keys whose operations are not linearizable.
    pub failed_keys: Vec<String>,
    /// Keys left undecided by the timeout.
    pub unknown_keys: Vec<String>,
}

/// What the linearizability check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable(Summary),
    NotLinearizable(Summary),
    /// The timeout ran out before some key was decided (none failed).
    Unknown(Summary),
    /// The check could not run here (no Go toolchain); the reason says why.
    Skipped(String),
}

impl Verdict {
    /// Whether the history passed; a skipped check did not fail.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Linearizable(_) | Verdict::Skipped(_))
    }
}

/// A built `porcupine-check`.
#[derive(Debug, Clone)]
pub struct Porcupine {
    binary: PathBuf,
}

impl Porcupine {
    /// Finds or builds the checker: `Ok(Err(reason))` when Go is not available.
    pub fn locate() -> Result<std::result::Result<Porcupine, String>> {
        Self::locate_with(find_on_path("go"))
    }

    fn locate_with(go: Option<PathBuf>) -> Result<std::result::Result<Porcupine, String>> {
        static BUILT: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
        let Some(go) = go else {
            return Ok(Err("porcupine: `go` is not on PATH".to_owned()));
        };
        let mut built = BUILT
            .get_or_init(|| Mutex::new(None))
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(binary) = built.as_ref() {
            return Ok(Ok(Porcupine {
                binary: binary.clone(),
            }));
        }
        let binary = build(&go, &tools_dir())?;
        *built = Some(binary.clone());
        Ok(Ok(Porcupine { binary }))
    }

    /// Where the built program lives.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Checks the register history in `history`; `viz` also writes Porcupine's HTML view;
    /// `timeout` bounds the whole check (none by default).
    pub fn check(
        &self,
        history: &Path,
        viz: Option<&Path>,
        timeout: Option<Duration>,
    ) -> Result<Verdict> {
        let mut cmd = Command::new(&self.binary);
        cmd.arg(history);
        if let Some(viz) = viz {
            cmd.arg("--viz").arg(viz);
        }
        if let Some(timeout) = timeout {
            cmd.arg("--timeout")
                .arg(format!("{}ms", timeout.as_millis().max(1)));
        }
        let out = cmd.output().map_err(|source| Error::Spawn {
            command: format!("{} {}", self.binary.display(), history.display()),
            source,
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let failure = || Error::Checker {
            history: history.to_owned(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let verdict: fn(Summary) -> Verdict = match out.status.code() {
            Some(0) => Verdict::Linearizable,
            Some(1) => Verdict::NotLinearizable,
            Some(3) => Verdict::Unknown,
            _ => return Err(failure()),
        };
        let summary =
            serde_json::from_str(&stdout).map_err(|source| Error::Verdict { stdout, source })?;
        Ok(verdict(summary))
    }
}

/// Checks the register history file at `history` (see [`Porcupine::check`]); skipped without Go.
pub fn check_file(history: &Path, viz: Option<&Path>) -> Result<Verdict> {
    match Porcupine::locate()? {
        Ok(porcupine) => porcupine.check(history, viz, None),
        Err(reason) => Ok(Verdict::Skipped(reason)),
    }
}

/// Writes `ops` to `dir/register-history.jsonl` and checks it (with `dir/porcupine.html` as the
/// visualization when `viz`); skipped without Go.
pub fn check_ops(ops: &[RegisterOp], dir: &Path, viz: bool) -> Result<Verdict> {
    let history = dir.join("register-history.jsonl");
    write_jsonl(&history, ops)?;
    let viz_path = dir.join("porcupine.html");
    check_file(&history, viz.then_some(viz_path.as_path()))
}

/// `$FERROKV_TOOLS_DIR`, else `~/.cache/ferrokv-tools`, else a directory under the temp dir.
fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROKV_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("ferrokv-tools"),
        None => std::env::temp_dir().join("ferrokv-tools"),
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// FNV-1a over the sources: a stable name for the build that changes with any source byte.
fn sources_hash() -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, text) in SOURCES {
        for byte in name.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Builds `porcupine-check-<hash>` under `dir` unless it is there already. The sources go to
/// `src-<hash>/`; the binary is built under a per-process name and renamed into place, so
/// concurrent builders never see a half-written file.
fn build(go: &Path, dir: &Path) -> Result<PathBuf> {
    let hash = sources_hash();
    let binary = dir.join(format!("porcupine-check-{hash}"));
    if binary.is_file() {
        return Ok(binary);
    }
    let src = dir.join(format!("src-{hash}"));
    let io_err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&src).map_err(io_err("create", &src))?;
    for (name, text) in SOURCES {
        let path = src.join(name);
        std::fs::write(&path, text).map_err(io_err("write", &path))?;
    }
    let partial = dir.join(format!(
        "porcupine-check-{hash}.{}.partial",
        std::process::id()
    ));
    let out = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&partial)
        .arg(".")
        .current_dir(&src)
        .output()
        .map_err(|source| Error::Spawn {
            command: format!("{} build (in {})", go.display(), src.display()),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Build {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    std::fs::rename(&partial, &binary).map_err(io_err("rename into place", &binary))?;
    Ok(binary)
}

#[cfg(test)]
#[path = "porcupine_tests.rs"]
mod tests;
