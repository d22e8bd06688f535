//! `raw-probe <pd-endpoint> <key> <value>`: one raw put and get through the official
//! `tikv-client`, retried for up to a minute, from wherever the cluster's advertised addresses
//! resolve (a container on the cluster's Docker network, a pod in its Kubernetes cluster).
//!
//! Prints `ok <key>=<value>` and exits 0 when the get returns the value put; exits 1 with the
//! last error otherwise, 2 on bad usage. The container suites run it from a small image built
//! on the operator image, which already holds the libraries it links.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tikv_client::RawClient;

/// How long to keep retrying while regions elect leaders.
const DEADLINE: Duration = Duration::from_secs(60);
/// One attempt's bound, so a hung call still leaves time to retry.
const ATTEMPT: Duration = Duration::from_secs(15);

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pd, key, value] = args.as_slice() else {
        eprintln!("usage: raw-probe <pd-endpoint> <key> <value>");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let mut last = String::from("no attempt made");
    while start.elapsed() < DEADLINE {
        match tokio::time::timeout(ATTEMPT, put_get(pd, key, value)).await {
            Ok(Ok(())) => {
                println!("ok {key}={value}");
                return ExitCode::SUCCESS;
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("attempt did not finish within {ATTEMPT:?}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!("raw put/get through {pd} failed for {DEADLINE:?}: {last}");
    ExitCode::FAILURE
}

async fn put_get(pd: &str, key: &str, value: &str) -> Result<(), String> {
    let client = RawClient::new(vec![pd.to_owned()])
        .await
        .map_err(|e| format!("connect to {pd}: {e}"))?;
    client
        .put(key.to_owned(), value.to_owned())
        .await
        .map_err(|e| format!("put {key}: {e}"))?;
    match client.get(key.to_owned()).await {
        Ok(Some(got)) if got == value.as_bytes() => Ok(()),
        Ok(other) => Err(format!(
            "get {key} returned {:?}, want {value:?}",
            other.map(|v| String::from_utf8_lossy(&v).into_owned())
        )),
        Err(e) => Err(format!("get {key}: {e}")),
    }
}
