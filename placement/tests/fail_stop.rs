//! Fail-stop, against the real `placement` binary: a member whose raft thread is gone (its
//! metadata engine fails a write, as on a full disk, or the thread panics) ends its process
//! with a failure status and says why, instead of answering health checks as if it were fine.
//! Faults are injected through the `/debug/fail/...` routes that `[debug] fault-injection`
//! enables.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use testkit::wait;

struct Member {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a lone member with fault injection on and waits until it serves.
async fn must_start_member() -> Member {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pd.toml");
    std::fs::write(&config, "[debug]\nfault-injection = true\n").unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_placement"))
        .arg("--config")
        .arg(&config)
        .arg("--client-urls")
        .arg(&url)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--log-level")
        .arg("warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the placement binary starts");
    let member = Member {
        child,
        url,
        _dir: dir,
    };
    wait::for_("placement to serve")
        .within(Duration::from_secs(30))
        .every(Duration::from_millis(100))
        .until_async(|| async {
            let members = reqwest::get(format!("{}/pd/api/v1/leader", member.url)).await;
            members.is_ok_and(|r| r.status().is_success())
        })
        .await;
    member
}

/// Injects `fault`, then waits (at most 20 s) for the process to end; returns its status
/// and what it wrote to stderr.
async fn must_stop_after(mut member: Member, fault: &str) -> (ExitStatus, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}/debug/fail/{fault}", member.url))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let health = format!("{}/health", member.url);
    let status = wait::for_(format!("placement to exit after `{fault}`"))
        .within(Duration::from_secs(20))
        .every(Duration::from_millis(100))
        .until_ok(|| {
            let exited = member.child.try_wait().unwrap();
            let health = health.clone();
            async move {
                if let Some(status) = exited {
                    return Ok(status);
                }
                let health = reqwest::get(health).await;
                let answers = health.is_ok_and(|r| r.status().is_success());
                Err(format!("still runs (health answers: {answers})"))
            }
        })
        .await
        .unwrap_or_else(|timeout| panic!("{timeout}"));
    let mut stderr = String::new();
    if let Some(mut err) = member.child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    (status, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_disk_fails_stops_its_process() {
    let member = must_start_member().await;
    // The TSO window is persisted every few hundred milliseconds: the next such write fails.
    let (status, stderr) = must_stop_after(member, "meta-write").await;
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("fail-stop"), "{stderr}");
    assert!(stderr.contains("no space left"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_raft_thread_panics_stops_its_process() {
    let member = must_start_member().await;
    let (status, stderr) = must_stop_after(member, "raft-panic").await;
    assert!(!status.success(), "{status}");
    assert!(stderr.contains("fail-stop"), "{stderr}");
    assert!(stderr.contains("injected fault"), "{stderr}");
}
