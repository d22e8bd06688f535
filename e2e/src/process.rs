//! One child process of a cluster: where its binary is, how it is started, signalled and reaped.
//!
//! [`Binaries`] finds `placement` and `store` (next to the running executable, or in
//! `KV_BIN_DIR`), and other workspace binaries such as `kvcheck` the same way. [`Node`] owns one
//! child: it appends stdout and stderr to a log file in the node's directory, sends SIGKILL
//! ([`Node::kill`]) or SIGTERM with a grace period ([`Node::stop`]), notices an unexpected exit
//! ([`Node::exited`]) and reads the log tail for error messages. [`Node::set_env`] adds
//! environment variables (a pod's rendered env). Dropping a `Node` kills its child
//! (`kill_on_drop`).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::error::{Error, Result};

/// Env var naming the directory that holds the `placement` and `store` binaries.
pub const BIN_DIR_ENV: &str = "KV_BIN_DIR";

/// Paths of the binaries a cluster runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub placement: PathBuf,
    pub store: PathBuf,
}

impl Binaries {
    /// Finds the binaries in `KV_BIN_DIR`, else beside the current executable (a test binary in
    /// `target/debug/deps/` looks in `target/debug/`).
    pub fn locate() -> Result<Binaries> {
        let dir = bin_dir();
        Ok(Binaries {
            placement: existing(&dir, "placement")?,
            store: existing(&dir, "store")?,
        })
    }

    /// Finds another binary of the workspace (e.g. `kvcheck`) where [`Binaries::locate`] looks.
    pub fn other(name: &str) -> Result<PathBuf> {
        existing(&bin_dir(), name)
    }

    /// The binary a container command names, by its file name (`/usr/local/bin/store` is
    /// `store`), if it is one of these.
    pub fn for_command(&self, command: &str) -> Option<&Path> {
        match Path::new(command).file_name()?.to_str()? {
            "placement" => Some(&self.placement),
            "store" => Some(&self.store),
            _ => None,
        }
    }
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().map(Path::to_path_buf).unwrap_or(dir),
        _ => dir,
    }
}

fn existing(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::BinaryMissing {
            name: name.to_owned(),
            path,
        })
    }
}

/// One child process and its log.
#[derive(Debug)]
pub struct Node {
    name: String,
    program: PathBuf,
    log_path: PathBuf,
    own_process_group: bool,
    env: Vec<(String, String)>,
    /// The network namespace it runs in (through `ip netns exec`), if not the host's.
    netns: Option<String>,
    child: Option<Child>,
}

impl Node {
    /// A node named `name` (e.g. `store-0`) that runs `program` and logs to `log_path`.
    pub fn new(name: impl Into<String>, program: PathBuf, log_path: PathBuf) -> Node {
        Node {
            name: name.into(),
            program,
            log_path,
            own_process_group: false,
            env: Vec::new(),
            netns: None,
            child: None,
        }
    }

    /// Environment variables the child gets on top of the parent's, from the next spawn on.
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Runs the child inside network namespace `netns` from the next spawn on (`ip netns exec`
    /// execs the program, so the child's pid is the program's).
    pub fn set_netns(&mut self, netns: Option<String>) {
        self.netns = netns;
    }

    /// Runs the child in a process group of its own, so a terminal's Ctrl-C reaches only the
    /// parent, which then stops the child in order (the playground does this).
    pub fn set_own_process_group(&mut self, own: bool) {
        self.own_process_group = own;
    }

    /// The node's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The OS process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Whether a child has been started and not reaped.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the child with `args`, appending its output to the log.
    pub fn spawn(&mut self, args: &[String]) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| Error::io(&self.log_path, e))?;
        let err_log = log.try_clone().map_err(|e| Error::io(&self.log_path, e))?;
        let mut command = match &self.netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", ns]).arg(&self.program);
                command
            }
            None => Command::new(&self.program),
        };
        if self.own_process_group {
            command.process_group(0);
        }
        let child = command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                name: self.name.clone(),
                program: self.program.clone(),
                source,
            })?;
        tracing::info!(node = %self.name, pid = child.id(), ?args, "started");
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL and reap. A node that is not running is left alone.
    pub async fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // `start_kill` sends SIGKILL; it fails only when the child was already reaped.
        let _ = child.start_kill();
        let status = child
            .wait()
            .await
            .map_err(|e| Error::io(&self.log_path, e))?;
        tracing::info!(node = %self.name, %status, "killed");
        Ok(())
    }

    /// SIGKILL and reap without a runtime (for `Drop`), giving up after five seconds.
    pub fn kill_blocking(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.start_kill();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
    }

    /// SIGTERM, wait up to `grace` for a clean exit, then SIGKILL. Returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(pid) = child.id() {
            let pid = Pid::from_raw(pid as i32);
            kill(pid, Signal::SIGTERM).map_err(|source| Error::Signal {
                name: self.name.clone(),
                source,
            })?;
        }
        let status = match tokio::time::timeout(grace, child.wait()).await {
            Ok(status) => status.map_err(|e| Error::io(&self.log_path, e))?,
            Err(_) => {
                tracing::warn!(node = %self.name, ?grace, "no exit after SIGTERM; sending SIGKILL");
                let _ = child.start_kill();
                child
                    .wait()
                    .await
                    .map_err(|e| Error::io(&self.log_path, e))?
            }
        };
        tracing::info!(node = %self.name, %status, "stopped");
        Ok(Some(status))
    }

    /// The exit status if the child has exited on its own (it is then reaped and forgotten).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        Some(status)
    }

    /// The last `lines` lines of the log, headed by the node name.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        let start = all.len().saturating_sub(lines);
        format!(
            "----- {} ({}), last {} lines -----\n{}\n",
            self.name,
            self.log_path.display(),
            all.len() - start,
            all[start..].join("\n")
        )
    }

    /// An `Exited` error for `status`, with the log tail.
    pub fn exited_error(&self, status: ExitStatus) -> Error {
        Error::Exited {
            name: self.name.clone(),
            status: status.to_string(),
            log_tail: self.log_tail(40),
        }
    }
}

/// Whether a log tail says a port was taken.
pub(crate) fn mentions_addr_in_use(log: &str) -> bool {
    let lower = log.to_ascii_lowercase();
    lower.contains("address already in use") || lower.contains("addrinuse")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_build_command() {
        let err = existing(Path::new("/nonexistent"), "store").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cargo build --workspace --bins"), "{text}");
        assert!(text.contains("/nonexistent/store"), "{text}");
    }

    #[test]
    fn addr_in_use_is_recognised() {
        assert!(mentions_addr_in_use(
            "Error: Address already in use (os error 98)"
        ));
        assert!(mentions_addr_in_use("kind: AddrInUse"));
        assert!(!mentions_addr_in_use("listening"));
    }

    #[tokio::test]
    async fn node_logs_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let mut node = Node::new("sleeper", PathBuf::from("/bin/sh"), log);
        node.spawn(&["-c".into(), "echo hello; exec sleep 30".into()])
            .unwrap();
        assert!(node.is_running());
        crate::wait::must_eventually("the greeting in the log", Duration::from_secs(5), || {
            let tail = node.log_tail(5);
            async move {
                if tail.contains("hello") {
                    Ok(())
                } else {
                    Err(tail)
                }
            }
        })
        .await;
        let status = node.stop(Duration::from_secs(5)).await.unwrap().unwrap();
        assert!(!status.success());
        assert!(!node.is_running());
    }
}
