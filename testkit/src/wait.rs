//! Waiting on conditions with a deadline, never on bare sleeps.
//!
//! A wait is built from a description of what it waits for, optionally bounded and paced, and
//! then polls a probe until the condition holds:
//!
//! ```
//! # use std::time::Duration;
//! # use testkit::wait;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let mut calls = 0;
//! wait::for_("the third call")
//!     .within(Duration::from_secs(5))
//!     .every(Duration::from_millis(1))
//!     .until(|| {
//!         calls += 1;
//!         calls == 3
//!     })
//!     .await;
//! # }
//! ```
//!
//! The probe runs at once and then every [`Wait::every`] until it holds or [`Wait::within`] has
//! passed since the wait began; it runs one last time at the deadline. The terminal methods
//! differ only in the shape of the probe:
//!
//! | method                  | probe                                   | on timeout          |
//! |-------------------------|-----------------------------------------|---------------------|
//! | [`Wait::until`]         | `FnMut() -> bool`                       | panics              |
//! | [`Wait::until_some`]    | `FnMut() -> Option<T>`, yields the `T`  | panics              |
//! | [`Wait::until_async`]   | `FnMut() -> impl Future<Output = bool>` | panics              |
//! | [`Wait::until_ok`]      | `FnMut() -> impl Future<Output = Result<T, String>>`, yields the `T`; each `Err` is an observation | returns [`Timeout`] |
//!
//! A timeout names what was awaited, how long it waited and the last observation (the last
//! `Err` of an [`Wait::until_ok`] probe, or that an async probe was still running at the
//! deadline). An async probe that hangs is cut off at the deadline (but is given at least one
//! [`Wait::every`] to answer), so it cannot make the wait outlive its bound.
//!
//! Deadlines are measured on tokio's clock, which is the wall clock unless a test pauses time.
//! Every method must run inside a tokio runtime with its timer enabled (`#[tokio::test]`).

use std::fmt;
use std::future::{self, Future};
use std::time::Duration;

use tokio::time::Instant;

/// How long a wait lasts unless [`Wait::within`] says otherwise.
pub const DEFAULT_WITHIN: Duration = Duration::from_secs(20);

/// How often a wait probes unless [`Wait::every`] says otherwise.
pub const DEFAULT_EVERY: Duration = Duration::from_millis(20);

/// A wait for a condition: what it waits for, for how long, and how often it looks.
///
/// Built by [`for_`] (or [`Wait::new`]); consumed by one of its `until*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a wait does nothing until one of its `until*` methods is awaited"]
pub struct Wait {
    what: String,
    within: Duration,
    every: Duration,
}

/// A wait for `what`, a description that completes "timed out waiting for ...", e.g.
/// `"store 3 to drop its replica"`. Lasts [`DEFAULT_WITHIN`], probing every [`DEFAULT_EVERY`].
pub fn for_(what: impl Into<String>) -> Wait {
    Wait::new(what)
}

impl Wait {
    /// The same as [`for_`]: a wait for `what` with the default bound and pace.
    pub fn new(what: impl Into<String>) -> Self {
        Wait {
            what: what.into(),
            within: DEFAULT_WITHIN,
            every: DEFAULT_EVERY,
        }
    }

    /// Gives up once `limit` has passed since the wait began.
    pub fn within(mut self, limit: Duration) -> Self {
        self.within = limit;
        self
    }

    /// Probes every `interval` (measured from the end of one probe to the start of the next).
    pub fn every(mut self, interval: Duration) -> Self {
        self.every = interval;
        self
    }

    /// Polls `cond` until it returns `true`.
    ///
    /// # Panics
    ///
    /// When the deadline passes first, with "timed out after ... waiting for `what`".
    pub async fn until(self, mut cond: impl FnMut() -> bool) {
        self.until_some(|| cond().then_some(())).await
    }

    /// Polls `probe` until it returns `Some`, and returns what it holds.
    ///
    /// # Panics
    ///
    /// When the deadline passes first, with "timed out after ... waiting for `what`".
    pub async fn until_some<T>(self, mut probe: impl FnMut() -> Option<T>) -> T {
        let polled = self.poll(|| future::ready(probe().ok_or(None))).await;
        polled.unwrap_or_else(|timeout| panic!("{timeout}"))
    }

    /// Polls the async `cond` until it yields `true`.
    ///
    /// # Panics
    ///
    /// When the deadline passes first, with "timed out after ... waiting for `what`" (and,
    /// when the last probe was cut off at the deadline, that it was still running).
    pub async fn until_async<F, Fut>(self, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let polled = self
            .poll(|| {
                let holds = cond();
                async move {
                    if holds.await {
                        Ok(())
                    } else {
                        Err(None)
                    }
                }
            })
            .await;
        polled.unwrap_or_else(|timeout| panic!("{timeout}"))
    }

    /// Polls the async `probe` until it yields `Ok`, and returns the value.
    ///
    /// `probe` yields `Err(observation)` while the condition does not hold: what it saw
    /// instead, kept for the report should the wait time out.
    ///
    /// # Errors
    ///
    /// [`Timeout`] when the deadline passes first, carrying the last observation.
    pub async fn until_ok<T, F, Fut>(self, mut probe: F) -> Result<T, Timeout>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        self.poll(|| {
            let answer = probe();
            async move { answer.await.map_err(Some) }
        })
        .await
    }

    /// The polling loop behind every `until*` method. `probe` yields `Err(None)` when it has
    /// nothing to report beyond "not yet".
    async fn poll<T, F, Fut>(self, mut probe: F) -> Result<T, Timeout>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Option<String>>>,
    {
        let start = Instant::now();
        let deadline = start + self.within;
        let mut last = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // A probe that hangs must not outlive the deadline.
            match tokio::time::timeout(remaining.max(self.every), probe()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(observation)) => last = observation.or(last),
                Err(_) => {
                    last = Some(match last {
                        Some(before) => {
                            format!("probe still running at the deadline (before that: {before})")
                        }
                        None => "probe still running at the deadline".to_owned(),
                    })
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Timeout {
                    what: self.what,
                    waited: now - start,
                    last,
                });
            }
            tokio::time::sleep(self.every.min(deadline - now)).await;
        }
    }
}

/// A wait whose condition did not hold before its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeout {
    /// What the wait was for.
    pub what: String,
    /// How long it waited.
    pub waited: Duration,
    /// The last observation of the probe, when it made one.
    pub last: Option<String>,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.waited, self.what
        )?;
        if let Some(last) = &self.last {
            write!(f, "; last observation: {last}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Timeout {}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn quick(what: &str) -> Wait {
        for_(what)
            .within(Duration::from_millis(200))
            .every(Duration::from_millis(5))
    }

    #[test]
    fn defaults_and_setters() {
        let w = Wait::new("x");
        assert_eq!(w, for_("x"));
        assert_eq!((w.within, w.every), (DEFAULT_WITHIN, DEFAULT_EVERY));
        let w = w
            .within(Duration::from_secs(1))
            .every(Duration::from_secs(2));
        assert_eq!(
            (w.within, w.every),
            (Duration::from_secs(1), Duration::from_secs(2))
        );
    }

    #[tokio::test]
    async fn until_returns_once_the_condition_holds_after_n_polls() {
        let mut polls = 0;
        for_("the fifth poll")
            .every(Duration::from_millis(1))
            .until(|| {
                polls += 1;
                polls == 5
            })
            .await;
        assert_eq!(polls, 5);
    }

    #[tokio::test]
    async fn until_some_yields_the_value() {
        let mut polls = 0;
        let got = for_("three polls")
            .every(Duration::from_millis(1))
            .until_some(|| {
                polls += 1;
                (polls >= 3).then_some(polls * 10)
            })
            .await;
        assert_eq!(got, 30);
    }

    #[tokio::test]
    async fn a_condition_that_holds_at_once_is_probed_once_without_sleeping() {
        let polls = Cell::new(0);
        let started = Instant::now();
        for_("nothing")
            .every(Duration::from_secs(10))
            .until(|| {
                polls.set(polls.get() + 1);
                true
            })
            .await;
        assert_eq!(polls.get(), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the impossible")]
    async fn until_panics_naming_what_it_waited_for() {
        quick("the impossible").until(|| false).await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for nothing at all")]
    async fn until_some_panics_naming_what_it_waited_for() {
        quick("nothing at all").until_some(|| None::<()>).await;
    }

    #[tokio::test]
    async fn until_times_out_near_its_bound_probing_at_the_deadline() {
        let polls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = polls.clone();
        let started = std::time::Instant::now();
        let panicked = tokio::spawn(async move {
            for_("never")
                .within(Duration::from_millis(100))
                .every(Duration::from_millis(30))
                .until(|| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    false
                })
                .await
        })
        .await
        .unwrap_err();
        let took = started.elapsed();
        assert!(panicked.is_panic());
        assert!(took >= Duration::from_millis(100), "{took:?}");
        // At 0, 30, 60 and 90 ms (fewer on a loaded machine), then once more at the deadline.
        let polls = polls.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=5).contains(&polls), "{polls} polls");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn until_async_returns_once_the_condition_holds() {
        let polls = Cell::new(0);
        for_("the third async poll")
            .every(Duration::from_millis(1))
            .until_async(|| {
                polls.set(polls.get() + 1);
                let n = polls.get();
                async move {
                    tokio::task::yield_now().await;
                    n == 3
                }
            })
            .await;
        assert_eq!(polls.get(), 3);
    }

    #[tokio::test]
    async fn until_ok_returns_the_value_once_the_probe_succeeds() {
        let polls = Cell::new(0);
        let value = for_("three calls")
            .every(Duration::from_millis(1))
            .until_ok(|| {
                polls.set(polls.get() + 1);
                let n = polls.get();
                async move {
                    if n >= 3 {
                        Ok(n)
                    } else {
                        Err(format!("call {n}"))
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, 3);
    }

    #[tokio::test]
    async fn until_ok_times_out_with_what_and_the_last_observation() {
        let polls = Cell::new(0);
        let timeout = quick("the impossible")
            .until_ok(|| {
                polls.set(polls.get() + 1);
                let n = polls.get();
                async move { Err::<(), _>(format!("still impossible ({n})")) }
            })
            .await
            .unwrap_err();
        assert_eq!(timeout.what, "the impossible");
        assert!(timeout.waited >= Duration::from_millis(200), "{timeout:?}");
        let last = format!("still impossible ({})", polls.get());
        assert_eq!(timeout.last.as_deref(), Some(last.as_str()));
        let text = timeout.to_string();
        assert!(
            text.starts_with("timed out after ") && text.contains("waiting for the impossible"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("; last observation: {last}")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_timeout_without_observation_says_only_what_it_waited_for() {
        let timeout = Timeout {
            what: "x".to_owned(),
            waited: Duration::from_millis(5),
            last: None,
        };
        assert_eq!(timeout.to_string(), "timed out after 5ms waiting for x");
        let boxed: Box<dyn std::error::Error> = Box::new(timeout);
        assert!(boxed.to_string().contains("waiting for x"));
    }

    #[tokio::test]
    async fn a_hanging_probe_is_bounded_by_the_deadline() {
        let polls = Cell::new(0);
        let started = Instant::now();
        let timeout = for_("an answer")
            .within(Duration::from_millis(150))
            .every(Duration::from_millis(10))
            .until_ok(|| {
                polls.set(polls.get() + 1);
                let first = polls.get() == 1;
                async move {
                    if first {
                        Err::<(), _>("first answer".to_owned())
                    } else {
                        future::pending().await
                    }
                }
            })
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "{took:?}");
        assert_eq!(
            timeout.last.as_deref(),
            Some("probe still running at the deadline (before that: first answer)")
        );
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for a reply; last observation: probe still running")]
    async fn a_hanging_async_condition_panics_at_the_deadline() {
        quick("a reply").until_async(future::pending::<bool>).await;
    }
}
