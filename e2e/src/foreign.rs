//! Clients in other languages: building them once, running them against a cluster.
//!
//! The Go and Java suites (`tests/go_client.rs`, `tests/java_client.rs`, `tests/ycsb.rs`) drive
//! the official clients as users would: a Go test binary built from `e2e/go`, a Maven project in
//! `e2e/java`, go-ycsb built from a wrapper module in `e2e/ycsb`. Builds are slow (client-go,
//! gRPC and etcd compile for minutes on two cores), so [`cached_build`] keeps each product in a
//! cache directory outside the checkout ([`cache_root`], default `~/.cache/ferrokv-clients`),
//! keyed by a hash of every source file of the project ([`source_hash`]): a run whose sources did
//! not change reuses the binary. [`tool_unavailable`] says why a suite must skip, and
//! [`run_bounded`] runs a built client under a deadline and returns its output.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result};

/// Env var naming the cache directory of built clients.
pub const CACHE_ENV: &str = "FERROKV_CLIENT_CACHE";

/// Directory names never hashed nor copied: build products.
const SKIPPED_DIRS: [&str; 2] = ["target", "bin"];

/// The cache directory of built clients: `$FERROKV_CLIENT_CACHE`, else
/// `~/.cache/ferrokv-clients`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache").join("ferrokv-clients")
}

/// The directory of a client project inside `e2e/` (`go`, `java`, `ycsb`).
pub fn project_dir(name: &str) -> PathBuf {
    crate::docker::crate_dir().join(name)
}

/// Why `program` cannot run here (it is missing, or `program args` fails), or `None`.
pub async fn tool_unavailable(program: &str, args: &[&str]) -> Option<String> {
    let probe = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await;
    match probe {
        Err(err) => Some(format!("`{program}` cannot be run: {err}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

/// FNV-1a over every file under `dir` (relative path and contents, in path order), skipping
/// build products: the cache key of what is built from `dir`.
pub fn source_hash(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for rel in files {
        let path = dir.join(&rel);
        let contents = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        feed(rel.to_string_lossy().as_bytes());
        feed(&[0]);
        feed(&(contents.len() as u64).to_le_bytes());
        feed(&contents);
    }
    Ok(format!("{hash:016x}"))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let file_type = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if file_type.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                collect_files(root, &path, out)?;
            }
        } else if file_type.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.push(rel);
        }
    }
    Ok(())
}

/// Returns the product `product` built from project `name` (a directory under `e2e/`),
/// building it first when the cache holds none for the current sources.
///
/// `build` gets the project directory and the path the product must be written to, and runs
/// the build command(s). The product lands in `cache_root()/<name>-<hash>/<product>`; a build
/// writes to a temporary path and renames it into place, so an interrupted build never leaves
/// a half-written product behind. Builds of one test binary are serialised.
pub async fn cached_build<F, Fut>(name: &str, product: &str, build: F) -> Result<PathBuf>
where
    F: FnOnce(PathBuf, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = BUILDS.lock().await;
    let project = project_dir(name);
    let hash = source_hash(&project)?;
    let dir = cache_root().join(format!("{name}-{hash}"));
    let target = dir.join(product);
    if target.exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let partial = dir.join(format!("{product}.partial-{}", std::process::id()));
    build(project, partial.clone()).await?;
    std::fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
    Ok(target)
}

/// Runs `command` to completion within `limit`, killing it if it takes longer; returns its
/// output, or an error naming `what` when it cannot start or overruns.
pub async fn run_bounded(what: &str, mut command: Command, limit: Duration) -> Result<Output> {
    command.stdin(Stdio::null()).kill_on_drop(true);
    let run = command.output();
    match tokio::time::timeout(limit, run).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(err)) => Err(Error::Command {
            command: what.to_owned(),
            reason: err.to_string(),
        }),
        Err(_) => Err(Error::Command {
            command: what.to_owned(),
            reason: format!("did not finish within {limit:?}"),
        }),
    }
}

/// Runs a build step within `limit`; fails with its output unless it succeeds.
pub async fn must_succeed(what: &str, command: Command, limit: Duration) -> Result<()> {
    let out = run_bounded(what, command, limit).await?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        command: what.to_owned(),
        reason: format!("{}\n{}", out.status, output_text(&out)),
    })
}

/// A finished command's stdout, then its stderr, as text.
pub fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_hash_follows_contents_and_names_but_not_build_products() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.go"), "package a").unwrap();
        let first = source_hash(dir.path()).unwrap();
        assert_eq!(first, source_hash(dir.path()).unwrap());
        std::fs::create_dir(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("target/out"), "built").unwrap();
        assert_eq!(
            first,
            source_hash(dir.path()).unwrap(),
            "build products ignored"
        );
        std::fs::write(dir.path().join("a.go"), "package b").unwrap();
        let changed = source_hash(dir.path()).unwrap();
        assert_ne!(first, changed);
        std::fs::rename(dir.path().join("a.go"), dir.path().join("b.go")).unwrap();
        assert_ne!(
            changed,
            source_hash(dir.path()).unwrap(),
            "a rename changes the key"
        );
    }
}
