//! The PyPI `tikv-client` (the Python client, API V1 only) against a real
//! three-store cluster (regions replicated three ways).
//!
//! Runs `e2e/python/test_client.py` with `python3` and `PD_ENDPOINT` set. Where `python3` or the
//! `tikv_client` module is missing (`pip install tikv-client==0.0.4`), the test prints why it
//! skipped and passes. The script exits with pytest's codes: 0 passed, 1 failed, 4 usage, 5 none.

use std::process::Stdio;
use std::time::Duration;

use e2e::{must_serve, with_deadline, ClusterBuilder};
use tokio::process::Command;

/// Why the Python client cannot run here, or `None` if it can.
async fn python_unavailable() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import tikv_client"])
        .stdin(Stdio::null())
        .output()
        .await;
    match probe {
        Err(err) => Some(format!("python3 cannot be run: {err}")),
        Ok(out) if !out.status.success() => Some(format!(
            "`import tikv_client` failed (install it with `pip install tikv-client==0.0.4`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_raw_and_transactions() {
    e2e::init_test_tracing();
    if let Some(reason) = python_unavailable().await {
        e2e::testing::skip("python_client_raw_and_transactions", &reason);
        return;
    }
    with_deadline(Duration::from_secs(180), async {
        // Three stores: the client must follow leaders of replicated regions.
        let cluster = ClusterBuilder::default().stores(3).must_start().await;
        // As a user would: start once the cluster has finished forming.
        cluster.must_settled(3, Duration::from_secs(60)).await;
        must_serve(&cluster, Duration::from_secs(60)).await;
        let script = e2e::docker::crate_dir().join("python/test_client.py");
        let run = Command::new("python3")
            .arg(&script)
            .env("PD_ENDPOINT", cluster.pd_endpoint())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("the Python client test did not finish within 120 s")
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("{stdout}\n{stderr}");
        assert!(
            out.status.success(),
            "Python client test failed ({}):\n{stdout}\n{stderr}\n{}",
            out.status,
            cluster.log_tails()
        );
    })
    .await
}
