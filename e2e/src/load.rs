//! A bounded client write load, for failure tests that must show no acknowledged write is lost.
//!
//! [`WriteLoad`] describes it: how many writer tasks, each putting unique raw keys one after
//! another through the official `RawClient`, for at most so many attempts and so long.
//! [`WriteLoad::start`] returns a [`RunningLoad`] that a test watches while it breaks things
//! ([`RunningLoad::wait_acked_since`]) and then stops, getting a [`LoadReport`]: every
//! acknowledged `(key, value)` with the time it was acknowledged, and the failures.
//! [`longest_gap_after`] turns acknowledgement times into the unavailability window around a
//! fault.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tikv_client::RawClient;
use tokio::task::JoinHandle;

use crate::wait::wait_for;

/// Pause after a failed write, so an outage does not turn into a busy loop.
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// What load to run. Keys are `{prefix}/w{writer}/{seq:06}`, values `v{writer}-{seq}`.
#[derive(Clone, Debug)]
pub struct WriteLoad {
    /// Concurrent writer tasks (each writes sequentially).
    pub writers: usize,
    /// Attempts per writer, successful or not.
    pub max_ops_per_writer: usize,
    /// Wall-clock bound for the whole load.
    pub max_duration: Duration,
    /// Bound on one put; a put that takes longer counts as failed.
    pub op_timeout: Duration,
    /// Key prefix.
    pub prefix: String,
}

impl Default for WriteLoad {
    fn default() -> Self {
        WriteLoad {
            writers: 2,
            max_ops_per_writer: 2000,
            max_duration: Duration::from_secs(20),
            op_timeout: Duration::from_secs(10),
            prefix: "load".to_owned(),
        }
    }
}

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    pub key: String,
    pub value: String,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    acks: Mutex<Vec<Ack>>,
    errors: Mutex<Vec<(Instant, String)>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A load in progress. Dropping it without [`stop`](Self::stop) aborts the writers.
pub struct RunningLoad {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    started: Instant,
}

/// What a finished load did.
#[derive(Debug)]
pub struct LoadReport {
    /// Acknowledged writes, in acknowledgement order per writer.
    pub acks: Vec<Ack>,
    /// Failed attempts: when, and the client's error.
    pub errors: Vec<(Instant, String)>,
    /// From start to stop.
    pub elapsed: Duration,
}

impl WriteLoad {
    /// Spawns the writers on the current runtime, each with a clone of `client`.
    pub fn start(self, client: RawClient) -> RunningLoad {
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let tasks = (0..self.writers)
            .map(|w| {
                let (load, client, shared) = (self.clone(), client.clone(), shared.clone());
                tokio::spawn(async move { load.writer(w, client, shared, started).await })
            })
            .collect();
        RunningLoad {
            shared,
            tasks,
            started,
        }
    }

    async fn writer(&self, w: usize, client: RawClient, shared: Arc<Shared>, started: Instant) {
        for seq in 0..self.max_ops_per_writer {
            if shared.stop.load(Ordering::SeqCst) || started.elapsed() >= self.max_duration {
                return;
            }
            let key = format!("{}/w{w}/{seq:06}", self.prefix);
            let value = format!("v{w}-{seq}");
            let put = client.put(key.clone(), value.clone());
            let error = match tokio::time::timeout(self.op_timeout, put).await {
                Ok(Ok(())) => {
                    let at = Instant::now();
                    locked(&shared.acks).push(Ack { key, value, at });
                    continue;
                }
                Ok(Err(e)) => format!("put {key}: {e:?}"),
                Err(_) => format!("put {key}: no answer within {:?}", self.op_timeout),
            };
            locked(&shared.errors).push((Instant::now(), error));
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

impl RunningLoad {
    /// When the load started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Writes acknowledged at or after `t`.
    pub fn acked_since(&self, t: Instant) -> usize {
        locked(&self.shared.acks)
            .iter()
            .filter(|a| a.at >= t)
            .count()
    }

    /// Waits until at least `n` writes were acknowledged at or after `t`.
    pub async fn wait_acked_since(
        &self,
        t: Instant,
        n: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let probe = || async move {
            let acked = self.acked_since(t);
            if acked >= n {
                return Ok(());
            }
            let errors = locked(&self.shared.errors);
            let last = errors.last().map(|(_, e)| e.as_str()).unwrap_or("none");
            Err(format!(
                "{acked} acknowledged since then; {} errors, last: {last}",
                errors.len()
            ))
        };
        let what = format!("{n} writes acknowledged");
        wait_for(&what, timeout, probe, String::new)
            .await
            .map_err(|e| e.to_string())
    }

    /// Tells the writers to stop after their current write, waits for them and reports.
    pub async fn stop(mut self) -> LoadReport {
        self.shared.stop.store(true, Ordering::SeqCst);
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                panic!("a writer task failed: {e}");
            }
        }
        LoadReport {
            acks: std::mem::take(&mut *locked(&self.shared.acks)),
            errors: std::mem::take(&mut *locked(&self.shared.errors)),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for RunningLoad {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl LoadReport {
    /// Acknowledgement times of every writer, in order.
    pub fn ack_times(&self) -> Vec<Instant> {
        let mut times: Vec<Instant> = self.acks.iter().map(|a| a.at).collect();
        times.sort();
        times
    }
}

/// The longest gap between consecutive times in `sorted` whose later end is after `t`: how
/// long the load saw no acknowledgement around a fault at `t`. `None` when nothing was
/// acknowledged after `t`.
pub fn longest_gap_after(sorted: &[Instant], t: Instant) -> Option<Duration> {
    let first_after = sorted.iter().position(|&x| x > t)?;
    let from = first_after.saturating_sub(1);
    sorted[from..]
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(std::iter::once(
            sorted[first_after].saturating_duration_since(t),
        ))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_spans_the_fault_and_later_stalls() {
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let times = [at(0), at(10), at(20), at(900), at(910), at(1500)];
        // Fault at 15 ms: the 20..900 gap is the longest one after it.
        assert_eq!(
            longest_gap_after(&times, at(15)),
            Some(Duration::from_millis(880))
        );
        // Fault at 905 ms: 910..1500 is later and longer than the gap the fault fell in.
        assert_eq!(
            longest_gap_after(&times, at(905)),
            Some(Duration::from_millis(590))
        );
        assert_eq!(longest_gap_after(&times, at(2000)), None);
        assert_eq!(longest_gap_after(&[], at(0)), None);
        // A single acknowledgement after the fault: the gap is measured from the fault.
        assert_eq!(
            longest_gap_after(&[at(300)], at(100)),
            Some(Duration::from_millis(200))
        );
    }
}
