//! Glue for the end-to-end suites in `tests/`: tracing set-up, serial runs and the per-API test
//! macro.
//!
//! [`init_test_tracing`] installs a subscriber once per test process (library code never does).
//! [`serial`] lets the multi-store suites run their clusters one at a time within a test
//! binary, so that timings they measure and deadlines they assert do not depend on how many
//! other clusters share the machine's cores.
//! [`api_tests!`](crate::api_tests) turns `async fn name(api: Api)` into two tests,
//! `name::api_v1` and `name::api_v2`, each under a deadline, so every scenario runs against
//! both API versions.

use std::fmt::Debug;
use std::sync::Once;

use tikv_client::{Key, KvPair};

use crate::builder::ClusterBuilder;
use crate::cluster::Cluster;

/// Installs a `tracing` subscriber that writes through the test harness's capture, filtered by
/// `RUST_LOG` (default `info`). Safe to call from every test.
/// Env var that turns a suite's SKIPPED into a failure. `scripts/test.sh` sets it: the
/// project's machines have everything the suites need (Go, Java, Python, root for network
/// namespaces and mounts), so there a skip would hide a suite that should have run.
pub const REQUIRE_TOOLS_ENV: &str = "FERROKV_REQUIRE_TOOLS";

/// Whether [`REQUIRE_TOOLS_ENV`] is set (to anything but `0`).
pub fn tools_required() -> bool {
    std::env::var(REQUIRE_TOOLS_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Says why `test` cannot run here and lets it pass (`SKIPPED test: reason`), or fails it where
/// [`tools_required`].
pub fn skip(test: &str, reason: &str) {
    assert!(
        !tools_required(),
        "{test} cannot run here: {reason} ({REQUIRE_TOOLS_ENV} is set: this machine must have \
         what the suite needs; scripts/setup.sh installs it)"
    );
    eprintln!("SKIPPED {test}: {reason}");
}

pub fn init_test_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// Held for the whole of a heavy test (several stores, failures, measured timings) so that the
/// test binary runs one such test at a time. Take it before the test's deadline starts.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// A one-store cluster, ready: enough for every test that does not need replicas.
pub async fn must_single_store_cluster() -> Cluster {
    ClusterBuilder::default().stores(1).must_start().await
}

/// `(key, value)` pairs as lossy UTF-8 strings, for readable assertions.
pub fn kv_strings(pairs: impl IntoIterator<Item = KvPair>) -> Vec<(String, String)> {
    pairs
        .into_iter()
        .map(|pair| {
            let (key, value): (Key, Vec<u8>) = pair.into();
            (lossy(key.into()), lossy(value))
        })
        .collect()
}

/// Keys as lossy UTF-8 strings.
pub fn key_strings(keys: impl IntoIterator<Item = Key>) -> Vec<String> {
    keys.into_iter().map(|key| lossy(key.into())).collect()
}

/// `[("a", "1")]` as owned pairs, to compare with [`kv_strings`].
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// `["a", "b"]` as owned strings, to compare with [`key_strings`].
pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A value as a lossy UTF-8 string.
pub fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The `Debug` text of an error, lower-cased, for matching on error kinds such as
/// `raft_entry_too_large` or `already_exist` wherever the client nests them.
pub fn error_text(err: &impl Debug) -> String {
    format!("{err:?}").to_ascii_lowercase()
}

/// Expands `api_tests!(deadline_secs; name_a, name_b, ...)` into a module per name holding
/// `api_v1` and `api_v2` tokio tests that call `name(Api::V1)` / `name(Api::V2)` under a deadline.
#[macro_export]
macro_rules! api_tests {
    ($secs:expr; $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn api_v1() {
                    $crate::init_test_tracing();
                    $crate::with_deadline(
                        ::std::time::Duration::from_secs($secs),
                        super::$name($crate::Api::V1),
                    )
                    .await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn api_v2() {
                    $crate::init_test_tracing();
                    $crate::with_deadline(
                        ::std::time::Duration::from_secs($secs),
                        super::$name($crate::Api::V2),
                    )
                    .await
                }
            }
        )+
    };
}
