//! The lost-writes workload: raw puts of write-once keys; at the end every acknowledged one must
//! read back with its value.

use std::collections::BTreeMap;
use std::time::Duration;

use tikv_client::RawClient;

use super::clock::{bounded, Ctx};
use crate::testing::kv_strings;
use crate::wait::wait_for;

/// Keys are `jr-lost-<process>-<n>`.
fn key(process: u64, n: u64) -> String {
    format!("jr-lost-{process:02}-{n:08}")
}

/// One writer: returns every acknowledged `(key, value)` and how many puts were not.
pub async fn process(client: RawClient, ctx: Ctx, process: u64) -> (Vec<(String, String)>, usize) {
    let (mut acked, mut unacked) = (Vec::new(), 0);
    let mut n = 0;
    while !ctx.stopped() {
        let (k, v) = (key(process, n), format!("v{n}"));
        n += 1;
        match bounded(client.put(k.clone(), v.clone())).await {
            Ok(()) => acked.push((k, v)),
            Err(_) => unacked += 1,
        }
        ctx.think().await;
    }
    (acked, unacked)
}

/// Reads back `keys` in batches, retrying each batch until it answers or `limit` passes.
pub async fn final_read(
    client: &RawClient,
    keys: &[String],
    limit: Duration,
) -> Result<BTreeMap<String, String>, String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut found = BTreeMap::new();
    for chunk in keys.chunks(256) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let read = || async {
            let pairs = bounded(client.batch_get(chunk.to_vec())).await;
            pairs.map(kv_strings).map_err(|e| e.to_string())
        };
        let what = "the final read of the lost-writes keys";
        let pairs = wait_for(what, left, read, String::new)
            .await
            .map_err(|e| e.to_string())?;
        found.extend(pairs);
    }
    Ok(found)
}
