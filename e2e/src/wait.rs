//! Waiting on conditions with a deadline, never on bare sleeps.
//!
//! The polling itself is [`testkit::wait`]'s; [`wait_for`] runs it at the harness's pace and
//! turns a timeout into the harness's [`Error::Timeout`] with process logs attached.
//! [`must_eventually`] is the panicking form for tests. [`with_deadline`] (a whole test body)
//! and [`must_within`] (a single call) are not condition waits: they bound a future that must
//! finish by itself.

use std::future::Future;
use std::time::Duration;

use testkit::wait::Wait;

use crate::error::{Error, Result};

/// Poll interval of [`wait_for`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `probe` every [`POLL_INTERVAL`] until it returns `Ok`, for at most `timeout`.
///
/// `probe` returns `Err(observation)` while the condition does not hold; the last observation
/// goes into the timeout error together with `what`. A probe still running at the deadline is
/// cut off. `logs` is called once on timeout to attach process logs.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    probe: F,
    logs: impl FnOnce() -> String,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    Wait::new(what)
        .within(timeout)
        .every(POLL_INTERVAL)
        .until_ok(probe)
        .await
        .map_err(|timeout| Error::Timeout {
            what: timeout.what,
            waited: timeout.waited,
            last: timeout.last.unwrap_or_else(|| "(none)".to_owned()),
            logs: logs(),
        })
}

/// Polls `probe` until it returns `Ok`, panicking after `timeout` with `what` and the last
/// observation.
pub async fn must_eventually<T, F, Fut>(what: &str, timeout: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    match wait_for(what, timeout, probe, String::new).await {
        Ok(value) => value,
        Err(err) => panic!("{err}"),
    }
}

/// Runs `body`, panicking if it takes longer than `limit`. Every end-to-end test runs under
/// one, so a hung server fails a test instead of hanging the suite.
pub async fn with_deadline<T>(limit: Duration, body: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, body).await {
        Ok(value) => value,
        Err(_) => panic!("test did not finish within its deadline of {limit:?}"),
    }
}

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`: for single client calls
/// that must answer, so a hang names the call instead of tripping the test deadline.
pub async fn must_within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what} did not return within {limit:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn returns_once_the_probe_succeeds() {
        let calls = AtomicU32::new(0);
        let value = wait_for(
            "three calls",
            Duration::from_secs(5),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= 3 {
                    Ok(n)
                } else {
                    Err(format!("call {n}"))
                }
            },
            String::new,
        )
        .await
        .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn times_out_naming_the_condition_and_last_observation() {
        let err = wait_for(
            "the impossible",
            Duration::from_millis(250),
            || async { Err::<(), _>("still impossible".to_owned()) },
            || "LOGS".to_owned(),
        )
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("the impossible"), "{text}");
        assert!(text.contains("still impossible"), "{text}");
        assert!(text.contains("LOGS"), "{text}");
    }

    #[tokio::test]
    #[should_panic(expected = "deadline")]
    async fn deadline_panics() {
        with_deadline(
            Duration::from_millis(50),
            tokio::time::sleep(Duration::from_secs(5)),
        )
        .await;
    }
}
