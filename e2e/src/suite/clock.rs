//! What every workload process shares: the run's clock, the stop flag and the bound on one
//! client call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tikv_client::{CheckLevel, TransactionOptions};

/// How long one client call may take before the process gives up on it. Past this the call's
/// outcome is unknown (indeterminate for writes).
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two operations of one process: keeps a two-core machine responsive.
pub const THINK: Duration = Duration::from_millis(10);

/// The shared context of the workload processes of one run.
#[derive(Clone, Debug)]
pub struct Ctx {
    start: Instant,
    stop: Arc<AtomicBool>,
    client_crashes: bool,
}

impl Ctx {
    /// `client_crashes`: whether some transactions abandon their commit midway.
    pub fn new(client_crashes: bool) -> Ctx {
        Ctx {
            start: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            client_crashes,
        }
    }

    /// Whether clients may die in the middle of two-phase commit in this run.
    pub fn client_crashes(&self) -> bool {
        self.client_crashes
    }

    /// Nanoseconds since the run started, on one monotonic clock.
    pub fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Asks every process to finish its current operation and return its history.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits [`THINK`] between operations.
    pub async fn think(&self) {
        tokio::time::sleep(THINK).await;
    }
}

/// Why a bounded call did not return a value.
#[derive(Debug)]
pub enum CallError {
    /// The client answered with an error.
    Client(tikv_client::Error),
    /// No answer within [`OP_TIMEOUT`].
    Timeout,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Client(e) => write!(f, "{e}"),
            CallError::Timeout => write!(f, "no answer within {OP_TIMEOUT:?}"),
        }
    }
}

/// Runs one client call under [`OP_TIMEOUT`].
pub async fn bounded<T>(
    call: impl Future<Output = tikv_client::Result<T>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(OP_TIMEOUT, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Client(e)),
        Err(_) => Err(CallError::Timeout),
    }
}

/// Options of the workloads' transactions: optimistic or pessimistic, and no panic when one
/// abandoned on a timeout is dropped unfinished (its locks expire).
pub fn txn_options(pessimistic: bool) -> TransactionOptions {
    let options = if pessimistic {
        TransactionOptions::new_pessimistic()
    } else {
        TransactionOptions::new_optimistic()
    };
    options.drop_check(CheckLevel::None)
}

/// A value's bytes as text (the workloads only write UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
