//! The register workload: raw get, put and compare-and-swap on a few keys, each key a register
//! that must be linearizable (checked by Porcupine).
//!
//! Every value written is unique (`<process>-<n>`), and a compare-and-swap usually expects the
//! value its process last saw on that key, so that many of them swap. Writes and
//! compare-and-swaps are sent once, never retried by the client: after a transport error or a
//! request timeout `tikv-client` resends, and a resend may find the first attempt's effect, or a
//! later write over it, and answer "not swapped" for a swap that happened; a resent put applies a
//! second time after later writes, so a read sees an older value come back (the fault suite
//! caught all three: seeds 1796621310, 20261389 and, for a put under a bridge partition whose
//! first attempt was applied 1.5 s in and answered after 2.2 s, 1796635212). TiKV behaves the
//! same: it does not deduplicate requests. Every write goes through the client's atomic mode
//! (`with_atomic_for_cas`), as TiKV requires when puts and compare-and-swaps meet on one key. A
//! read that fails did nothing (`fail`); so did a write or swap refused with a region error (the
//! store refuses before applying); one that fails otherwise or times out may have taken effect
//! (`info`).

use std::collections::HashMap;

use jepsen::{Outcome, RegisterOp};
use tikv_client::{Backoff, RawClient};

use super::clock::{bounded, text, CallError, Ctx};
use super::rng::Rng;

/// The registers: `jr-reg-0` ..
pub const KEYS: u64 = 3;

pub fn key(i: u64) -> String {
    format!("jr-reg-{i}")
}

/// One process: operations one after another until the run stops.
pub async fn process(client: RawClient, ctx: Ctx, process: u64, mut rng: Rng) -> Vec<RegisterOp> {
    let client = client.with_atomic_for_cas();
    let once = client.with_backoff(Backoff::no_backoff());
    let mut ops = Vec::new();
    // The value this process last saw on each key (read, written or reported by a swap).
    let mut seen: HashMap<String, Option<String>> = HashMap::new();
    let mut written = 0u64;
    while !ctx.stopped() {
        let key = key(rng.below(KEYS));
        let last = seen.get(&key).cloned().flatten();
        // What the operation shows the key holds afterwards, when it tells.
        let (op, now) = match rng.below(3) {
            0 => {
                let op = read(&client, &ctx, process, &key).await;
                let now = op.read.clone();
                (op, Some(now))
            }
            1 => {
                written += 1;
                let value = format!("{process}-{written}");
                let op = write(&once, &ctx, process, &key, &value).await;
                (op, Some(Some(value)))
            }
            _ => {
                written += 1;
                // Mostly the value last seen (it may have changed since); sometimes "absent",
                // which fails once the key exists.
                let expected = if rng.chance(1, 4) { None } else { last };
                let value = format!("{process}-{written}");
                cas(&once, &ctx, process, &key, (expected, value)).await
            }
        };
        match now {
            Some(now) if op.outcome == Outcome::Ok => seen.insert(key, now),
            _ => seen.remove(&key),
        };
        ops.push(op);
        ctx.think().await;
    }
    ops
}

async fn read(client: &RawClient, ctx: &Ctx, process: u64, key: &str) -> RegisterOp {
    let call = ctx.now();
    let result = bounded(client.get(key.to_owned())).await;
    let times = (call, ctx.now());
    match result {
        Ok(value) => {
            let value = value.map(|v| text(&v));
            RegisterOp::read(process, times, key, Outcome::Ok, value.as_deref())
        }
        Err(_) => RegisterOp::read(process, times, key, Outcome::Fail, None),
    }
}

async fn write(client: &RawClient, ctx: &Ctx, process: u64, key: &str, value: &str) -> RegisterOp {
    let call = ctx.now();
    let result = bounded(client.put(key.to_owned(), value.to_owned())).await;
    let outcome = match &result {
        Ok(()) => Outcome::Ok,
        Err(e) => failed_or_unknown(e),
    };
    RegisterOp::write(process, (call, ctx.now()), key, value, outcome)
}

async fn cas(
    client: &RawClient,
    ctx: &Ctx,
    process: u64,
    key: &str,
    (expected, value): (Option<String>, String),
) -> (RegisterOp, Option<Option<String>>) {
    let call = ctx.now();
    let previous = expected.clone().map(String::into_bytes);
    let result = bounded(client.compare_and_swap(key.to_owned(), previous, value.clone())).await;
    let times = (call, ctx.now());
    let swap = (expected.as_deref(), value.as_str());
    match result {
        Ok((previous, swapped)) => {
            let now = if swapped {
                Some(value.clone())
            } else {
                previous.map(|v| text(&v))
            };
            let op = RegisterOp::cas(process, times, key, swap, Outcome::Ok, Some(swapped));
            (op, Some(now))
        }
        Err(e) => (
            RegisterOp::cas(process, times, key, swap, failed_or_unknown(&e), None),
            None,
        ),
    }
}

/// What a write or swap that returned `error` did: nothing for certain when the store refused
/// it with a region error (not leader, epoch changed, stale command, busy, disk full: the
/// request was never applied, which is why clients may retry those freely), else unknown (a
/// transport error or timeout may hide an applied write). Unknown writes cost Porcupine dearly:
/// each may take effect at any later point, so they are kept to the ones that need it.
fn failed_or_unknown(error: &CallError) -> Outcome {
    if let CallError::Client(e) = error {
        if not_applied(e) {
            return Outcome::Fail;
        }
    }
    Outcome::Info
}

fn not_applied(e: &tikv_client::Error) -> bool {
    match e {
        tikv_client::Error::RegionError(_) => true,
        tikv_client::Error::ExtractedErrors(all) | tikv_client::Error::MultipleKeyErrors(all) => {
            !all.is_empty() && all.iter().all(not_applied)
        }
        _ => false,
    }
}
