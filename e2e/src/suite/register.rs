//! The register workload: raw get, put and compare-and-swap on a few keys, each key a register
//! that must be linearizable (checked by Porcupine).
//!
//! Values come from a small set so that compare-and-swaps often match. Every write goes through
//! the client's atomic mode (`with_atomic_for_cas`), as TiKV requires when puts and
//! compare-and-swaps meet on one key. A read that fails did nothing (`fail`); a write or swap
//! that fails or times out may have taken effect (`info`).

use jepsen::{Outcome, RegisterOp};
use tikv_client::RawClient;

use super::clock::{bounded, text, Ctx};
use super::rng::Rng;

/// The registers: `jr-reg-0` ..
pub const KEYS: u64 = 3;
/// Values written: `0` .. `VALUES - 1`.
const VALUES: u64 = 5;

pub fn key(i: u64) -> String {
    format!("jr-reg-{i}")
}

/// One process: operations one after another until the run stops.
pub async fn process(client: RawClient, ctx: Ctx, process: u64, mut rng: Rng) -> Vec<RegisterOp> {
    let client = client.with_atomic_for_cas();
    let mut ops = Vec::new();
    while !ctx.stopped() {
        let key = key(rng.below(KEYS));
        let op = match rng.below(3) {
            0 => read(&client, &ctx, process, &key).await,
            1 => {
                let value = rng.below(VALUES).to_string();
                write(&client, &ctx, process, &key, &value).await
            }
            _ => {
                let expected = rng.below(VALUES + 1);
                let expected = (expected < VALUES).then(|| expected.to_string());
                let value = rng.below(VALUES).to_string();
                cas(&client, &ctx, process, &key, (expected, value)).await
            }
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
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Info
    };
    RegisterOp::write(process, (call, ctx.now()), key, value, outcome)
}

async fn cas(
    client: &RawClient,
    ctx: &Ctx,
    process: u64,
    key: &str,
    (expected, value): (Option<String>, String),
) -> RegisterOp {
    let call = ctx.now();
    let previous = expected.clone().map(String::into_bytes);
    let result = bounded(client.compare_and_swap(key.to_owned(), previous, value.clone())).await;
    let times = (call, ctx.now());
    let swap = (expected.as_deref(), value.as_str());
    match result {
        Ok((_, swapped)) => RegisterOp::cas(process, times, key, swap, Outcome::Ok, Some(swapped)),
        Err(_) => RegisterOp::cas(process, times, key, swap, Outcome::Info, None),
    }
}
