//! Heartbeats to placement: each region this store leads, periodically and
//! whenever leadership changes; and the store's own statistics.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use proto::{metapb, pdpb};
use tokio::sync::{mpsc, oneshot, Notify};

use super::pd::PdClient;
use crate::engine::{Engine, CF_DEFAULT, CF_WRITE};
use crate::raftstore::StoreMeta;

pub struct HeartbeatConfig {
    pub region_interval: Duration,
    pub store_interval: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Approximate bytes of a region's data (transactional keys, encoded bounds).
fn approximate_size(engine: &Engine, region: &metapb::Region) -> u64 {
    let mut start = vec![b't'];
    start.extend_from_slice(&region.start_key);
    let end = if region.end_key.is_empty() {
        vec![b'u']
    } else {
        let mut e = vec![b't'];
        e.extend_from_slice(&region.end_key);
        e
    };
    [CF_DEFAULT, CF_WRITE]
        .iter()
        .map(|cf| engine.approximate_size(cf, &start, &end).unwrap_or(0))
        .sum()
}

pub async fn run(
    pd: PdClient,
    store: metapb::Store,
    engine: Engine,
    meta: Arc<RwLock<StoreMeta>>,
    changed: Arc<Notify>,
    cfg: HeartbeatConfig,
    mut stop: oneshot::Receiver<()>,
) {
    let start_time = now_secs() as u32;
    let mut stream: Option<mpsc::Sender<pdpb::RegionHeartbeatRequest>> = None;
    let mut region_tick = tokio::time::interval(cfg.region_interval);
    let mut store_tick = tokio::time::interval(cfg.store_interval);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = region_tick.tick() => {}
            _ = changed.notified() => {}
            _ = store_tick.tick() => {
                let region_count = meta.read().regions.len() as u32;
                let stats = pdpb::StoreStats {
                    store_id: store.id,
                    region_count,
                    start_time,
                    ..Default::default()
                };
                if let Err(e) = pd.store_heartbeat(stats).await {
                    tracing::warn!(store_id = store.id, error = %e, "store heartbeat failed");
                }
                continue;
            }
        }
        if stream.as_ref().is_none_or(|s| s.is_closed()) {
            stream = match pd.region_heartbeat_stream().await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "opening region heartbeat stream failed");
                    continue;
                }
            };
        }
        let leaders: Vec<_> = meta
            .read()
            .regions
            .values()
            .filter(|r| r.is_leader)
            .map(|r| (r.region.clone(), r.leader_peer(), r.term))
            .collect();
        for (region, leader, term) in leaders {
            let req = pdpb::RegionHeartbeatRequest {
                header: pd.request_header(),
                approximate_size: approximate_size(&engine, &region),
                region: Some(region),
                leader,
                term,
                ..Default::default()
            };
            if let Some(s) = &stream {
                if s.send(req).await.is_err() {
                    stream = None;
                    break;
                }
            }
        }
    }
}
