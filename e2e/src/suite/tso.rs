//! The monotonic workload: timestamps from placement's TSO, taken through the client, must grow
//! strictly per process and in real time, across placement failovers.

use jepsen::checks::monotonic::TsRead;
use tikv_client::{TimestampExt, TransactionClient};

use super::clock::{bounded, Ctx};

/// One process: returns every timestamp it got.
pub async fn process(client: TransactionClient, ctx: Ctx, process: u64) -> Vec<TsRead> {
    let mut out = Vec::new();
    while !ctx.stopped() {
        let call = ctx.now();
        if let Ok(ts) = bounded(client.current_timestamp()).await {
            out.push(TsRead {
                process,
                call_ns: call,
                return_ns: ctx.now(),
                ts: ts.version(),
            });
        }
        ctx.think().await;
    }
    out
}
