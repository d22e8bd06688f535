//! Docker through its command-line client, for the image and kind suites.
//!
//! [`unavailable`] says why Docker cannot be used here (no client, no engine), so a suite can
//! print `SKIPPED` instead of failing. [`run`] runs one command under a timeout and returns its
//! stdout or an error naming the command and its stderr. [`build_images`] runs
//! `scripts/images.sh`; [`build_probe_image`] adds the test-only client image. [`Network`] and
//! [`Container`] remove what they name when dropped, so a failing test leaves nothing behind;
//! [`unique_name`] keeps concurrent runs apart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::process::Command;

/// Timeout of one quick Docker command (`version`, `run -d`, `port`, `rm`).
pub const QUICK: Duration = Duration::from_secs(60);

/// Repository of the image holding `placement` and `store`.
pub const FERROKV_REPO: &str = "ghcr.io/ferrokv/ferrokv";
/// Repository of the operator image.
pub const OPERATOR_REPO: &str = "ghcr.io/ferrokv/tikv-operator";

/// The checkout's root directory.
pub fn repo_root() -> PathBuf {
    let e2e = crate_dir();
    e2e.parent().map_or_else(|| e2e.clone(), Path::to_path_buf)
}

/// The `e2e` crate's directory in the checkout being tested: `CARGO_MANIFEST_DIR` as cargo sets
/// it when running the tests, else as it was at build time. The runtime value comes first
/// because a build directory shared between checkouts (CI's clone and a developer's) may reuse
/// binaries built in another checkout, whose compile-time path is elsewhere.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// A name no other run on this machine uses: `prefix-<pid>-<seconds>-<counter>`, lower case as
/// Docker and kind require.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{secs}-{n}", std::process::id())
}

/// Runs `program args...` for at most `timeout`; its trimmed stdout on success, else an error
/// naming the command, its exit status and stderr. The child is killed on timeout.
pub async fn run_program(
    program: &str,
    args: &[String],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<String, String> {
    let what = format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Err(format!("`{what}` did not finish within {timeout:?}")),
        Ok(Err(e)) => return Err(format!("`{what}` could not be run: {e}")),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let output = [stdout.as_str(), stderr.trim()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        Err(format!("`{what}` failed ({}): {output}", out.status))
    }
}

/// `docker args...` under `timeout`; see [`run_program`].
pub async fn run(args: &[&str], timeout: Duration) -> Result<String, String> {
    let args: Vec<String> = args.iter().map(|&a| a.to_owned()).collect();
    run_program("docker", &args, &[], timeout).await
}

/// Why Docker cannot be used here, or `None` when the client reaches an engine.
pub async fn unavailable() -> Option<String> {
    match run(&["version", "--format", "{{.Server.Version}}"], QUICK).await {
        Ok(_) => None,
        Err(e) if e.contains("could not be run") => Some(format!("docker is not installed: {e}")),
        Err(e) => Some(format!("no Docker engine answers: {e}")),
    }
}

/// The cargo target directory the running test binary was built in, and its profile
/// (`target/debug/deps/images-<hash>` gives `(target, "debug")`).
pub fn own_target_dir() -> Result<(PathBuf, String), String> {
    let exe = std::env::current_exe().map_err(|e| format!("no current executable: {e}"))?;
    let deps = exe.parent().filter(|d| d.ends_with("deps"));
    let profile_dir = deps.and_then(Path::parent);
    let target = profile_dir.and_then(Path::parent);
    match (profile_dir.and_then(Path::file_name), target) {
        (Some(profile), Some(target)) => {
            Ok((target.to_path_buf(), profile.to_string_lossy().into_owned()))
        }
        _ => Err(format!(
            "{} is not in <target>/<profile>/deps",
            exe.display()
        )),
    }
}

/// Runs `scripts/images.sh --debug <tag>` with the test's own target directory, so the images
/// hold the debug binaries this test run built (cargo rebuilds only what is stale). Returns the
/// image references the script printed.
pub async fn build_images(tag: &str, timeout: Duration) -> Result<Vec<String>, String> {
    let (target, profile) = own_target_dir()?;
    if profile != "debug" {
        return Err(format!(
            "the image suites package debug binaries; this test runs from a `{profile}` build"
        ));
    }
    let script = repo_root().join("scripts/images.sh");
    let target = target.to_string_lossy().into_owned();
    let out = run_program(
        "bash",
        &[
            script.to_string_lossy().into_owned(),
            "--debug".into(),
            tag.into(),
        ],
        &[("CARGO_TARGET_DIR", &target)],
        timeout,
    )
    .await?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Repository of the test-only image holding `raw-probe` (see [`build_probe_image`]).
pub const PROBE_REPO: &str = "ferrokv-e2e/raw-probe";

/// Builds `ferrokv-e2e/raw-probe:<tag>`: the `raw-probe` binary at `probe` (the official client
/// doing one raw put and get) on top of the operator image `base`, which already holds the
/// libraries the client links (libssl, libcrypto, libc) and the CA bundle. Only the suites use
/// it, to talk to a cluster from inside its network. Returns the image reference.
pub async fn build_probe_image(probe: &Path, base: &str, tag: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::copy(probe, dir.path().join("raw-probe"))
        .map_err(|e| format!("copy {}: {e}", probe.display()))?;
    let dockerfile = format!(
        "FROM {base}\n\
         COPY raw-probe /usr/local/bin/raw-probe\n\
         ENTRYPOINT [\"/usr/local/bin/raw-probe\"]\n"
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile)
        .map_err(|e| format!("write the probe Dockerfile: {e}"))?;
    let image = format!("{PROBE_REPO}:{tag}");
    let context = dir.path().to_string_lossy().into_owned();
    run(&["build", "--quiet", "-t", &image, &context], QUICK * 5).await?;
    Ok(image)
}

/// A Docker network, removed on drop (after the containers on it, if they are dropped first).
#[derive(Debug)]
pub struct Network {
    pub name: String,
}

impl Network {
    /// Creates a user-defined bridge network named `name` (its containers resolve each other
    /// by container name).
    pub async fn create(name: String) -> Result<Network, String> {
        run(&["network", "create", &name], QUICK).await?;
        Ok(Network { name })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        remove(&["network", "rm", &self.name]);
    }
}

/// A container, force-removed (with its anonymous volumes) on drop.
#[derive(Debug)]
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d --name <name> <run_args...> <image> <command...>`.
    pub async fn start(
        name: String,
        run_args: &[&str],
        image: &str,
        command: &[String],
    ) -> Result<Container, String> {
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(run_args);
        args.push(image);
        args.extend(command.iter().map(String::as_str));
        let result = run(&args, QUICK).await;
        // Own it even if `run` failed after creating it.
        let container = Container { name };
        result.map(|_| container)
    }

    /// The host address a published container port maps to (`docker port`), e.g.
    /// `127.0.0.1:49153`.
    pub async fn published(&self, port: &str) -> Result<String, String> {
        let out = run(&["port", &self.name, port], QUICK).await?;
        parse_published(&out)
            .ok_or_else(|| format!("`docker port {} {port}` said: {out}", self.name))
    }

    /// The last `lines` lines of the container's output, for failure messages.
    pub async fn logs(&self, lines: usize) -> String {
        let tail = lines.to_string();
        match run(&["logs", "--tail", &tail, &self.name], QUICK).await {
            Ok(out) => format!("--- {} ---\n{out}", self.name),
            Err(e) => format!("--- {} --- (no logs: {e})", self.name),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        remove(&["rm", "-f", "-v", &self.name]);
    }
}

/// The first IPv4 `host:port` of `docker port` output (one mapping a line, IPv6 ones too).
pub fn parse_published(out: &str) -> Option<String> {
    out.lines()
        .map(str::trim)
        .find(|l| !l.starts_with('[') && l.contains(':'))
        .map(|l| l.replace("0.0.0.0:", "127.0.0.1:"))
}

/// Best-effort removal from `Drop`: blocking (drop cannot await), at most [`QUICK`], and silent
/// about objects already gone.
fn remove(args: &[&str]) {
    run_blocking("docker", args, QUICK);
}

/// Runs `program args...` synchronously with its output discarded, killing it after
/// `timeout`: for `Drop`, which cannot await. Whether it exited successfully.
pub fn run_blocking(program: &str, args: &[&str], timeout: Duration) -> bool {
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Ok(Some(status)) => return status.success(),
            Err(_) => return false,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_prefer_ipv4_and_loopback() {
        assert_eq!(
            parse_published("[::]:49153\n0.0.0.0:49153\n").as_deref(),
            Some("127.0.0.1:49153")
        );
        assert_eq!(
            parse_published("127.0.0.1:32768").as_deref(),
            Some("127.0.0.1:32768")
        );
        assert_eq!(parse_published(""), None);
    }

    #[test]
    fn unique_names_differ_and_are_lower_case() {
        let a = unique_name("ferrokv-e2e");
        let b = unique_name("ferrokv-e2e");
        assert_ne!(a, b);
        assert_eq!(a, a.to_ascii_lowercase());
        assert!(a.starts_with("ferrokv-e2e-"));
    }
}
