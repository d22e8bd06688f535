//! Region helpers of the `pdpb.PD` service: response shapes for region lookups and scans,
//! id allocation for splits (AskSplit / AskBatchSplit) and applying split reports.

use proto::metapb;
use proto::pdpb::{GetRegionResponse, Region, SplitId};

use crate::cluster::{ClusterView, Observed, RegionInfo};
use crate::error::{Error, Result};
use crate::state::Placement;

/// Largest `split_count` accepted by AskBatchSplit.
const MAX_SPLIT_COUNT: u32 = 4096;

/// Runs a read against a bootstrapped view (`NotBootstrapped` otherwise).
pub fn read<T>(state: &Placement, f: impl FnOnce(&ClusterView) -> Result<T>) -> Result<T> {
    let view = state.view();
    view.meta()?;
    f(&view)
}

/// The response for a found (or not found) region.
pub fn region_response(info: Option<&RegionInfo>) -> GetRegionResponse {
    match info {
        None => GetRegionResponse::default(),
        Some(r) => GetRegionResponse {
            region: Some(r.meta.clone()),
            leader: r.leader,
            down_peers: r.down_peers.clone(),
            pending_peers: r.pending_peers.clone(),
            ..Default::default()
        },
    }
}

/// A region in ScanRegions/BatchScanRegions form (leader defaults to an empty peer, as PD).
pub fn scan_entry(r: &RegionInfo) -> Region {
    Region {
        region: Some(r.meta.clone()),
        leader: Some(r.leader.unwrap_or_default()),
        down_peers: r.down_peers.clone(),
        pending_peers: r.pending_peers.clone(),
        buckets: None,
    }
}

/// New region and peer ids for `count` splits of `region`: one region id plus one peer id per
/// existing peer each. A request older than the known region is refused as stale.
pub async fn split_ids(
    state: &Placement,
    region: Option<metapb::Region>,
    count: u32,
) -> Result<Vec<SplitId>> {
    let region = region.ok_or_else(|| Error::invalid("missing region for split"))?;
    if count == 0 || count > MAX_SPLIT_COUNT {
        return Err(Error::invalid(format!(
            "split_count must be in 1..={MAX_SPLIT_COUNT}, got {count}"
        )));
    }
    read(state, |view| match view.regions().get(region.id) {
        Some(known) => {
            let asked = region.region_epoch.unwrap_or_default();
            if asked.version < known.epoch().version {
                return Err(Error::StaleRegion {
                    region_id: region.id,
                    reported: format!("version {}", asked.version),
                    known: format!("version {}", known.epoch().version),
                });
            }
            Ok(())
        }
        None => Ok(()),
    })?;
    let per_split = 1 + region.peers.len() as u64;
    let ids = state.ids.alloc_n(u64::from(count) * per_split).await?;
    let ids: Vec<u64> = ids.collect();
    Ok(ids
        .chunks(per_split as usize)
        .map(|c| SplitId {
            new_region_id: c[0],
            new_peer_ids: c[1..].to_vec(),
        })
        .collect())
}

/// Applies a split report to the view at once; the records are persisted behind.
pub fn apply_split(state: &Placement, regions: &[metapb::Region]) -> Result<()> {
    state.observe(Observed::Split(regions.to_vec()), |_| ())?;
    tracing::info!(regions = regions.len(), "split reported");
    Ok(())
}
