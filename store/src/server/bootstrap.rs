//! Joining the cluster: the store's identity, and bootstrapping a fresh
//! cluster with the first region.
//!
//! Order matters for crash safety: the store id is persisted before it is
//! used; the first region is written locally before placement is asked to
//! bootstrap with it, and dropped again if another store won the race.

use std::net::SocketAddr;

use proto::metapb;

use super::placement_client::{PlacementClient, PlacementError};
use super::ServerError;
use crate::config::Config;
use crate::engine::{Engine, Modify, CF_RAFT};
use crate::raftstore::{local_keys, peer_storage};

pub fn store_meta(cfg: &Config, status_addr: SocketAddr, id: u64) -> metapb::Store {
    let status = if cfg.status_addr.ends_with(":0") {
        status_addr.to_string()
    } else {
        cfg.status_addr.clone()
    };
    metapb::Store {
        id,
        address: cfg.advertise_addr.clone(),
        status_address: status,
        peer_address: cfg.advertise_addr.clone(),
        labels: cfg
            .labels
            .iter()
            .map(|(k, v)| metapb::StoreLabel {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        version: "8.5.0".into(),
        git_hash: env!("CARGO_PKG_VERSION").into(),
        start_timestamp: crate::clock::now_secs() as i64,
        state: metapb::StoreState::Up as i32,
        deploy_path: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.display().to_string()))
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn load_ident(engine: &Engine) -> Result<Option<(u64, u64)>, ServerError> {
    let Some(v) = engine.get_cf(CF_RAFT, local_keys::STORE_IDENT_KEY)? else {
        return Ok(None);
    };
    if v.len() != 16 {
        return Err(ServerError::CorruptIdent { len: v.len() });
    }
    let cluster_id = u64::from_be_bytes(v[..8].try_into().unwrap_or_default());
    let store_id = u64::from_be_bytes(v[8..].try_into().unwrap_or_default());
    Ok(Some((cluster_id, store_id)))
}

/// Registers the store (allocating its id on first start), bootstraps the
/// cluster if nobody has, and returns the store id.
pub async fn join_cluster(
    engine: &Engine,
    placement: &PlacementClient,
    mut store: metapb::Store,
) -> Result<u64, ServerError> {
    let store_id = match load_ident(engine)? {
        Some((cluster_id, store_id)) => {
            if cluster_id != placement.cluster_id() {
                return Err(ServerError::WrongCluster {
                    data_dir: cluster_id,
                    placement: placement.cluster_id(),
                });
            }
            store_id
        }
        None => {
            let store_id = placement.alloc_id().await?;
            let mut v = placement.cluster_id().to_be_bytes().to_vec();
            v.extend_from_slice(&store_id.to_be_bytes());
            let m = Modify::Put {
                cf: CF_RAFT,
                key: local_keys::STORE_IDENT_KEY.to_vec(),
                value: v,
            };
            engine.write(&[m], true)?;
            store_id
        }
    };
    store.id = store_id;
    if !placement.is_bootstrapped().await? {
        bootstrap_cluster(engine, placement, store.clone()).await?;
    }
    placement.put_store(store).await?;
    Ok(store_id)
}

async fn bootstrap_cluster(
    engine: &Engine,
    placement: &PlacementClient,
    store: metapb::Store,
) -> Result<(), ServerError> {
    let existing = peer_storage::load_regions(engine)?;
    let region = match existing.into_iter().next() {
        // Prepared by an earlier start that crashed before placement answered.
        Some(r) => r,
        None => {
            let region = metapb::Region {
                id: placement.alloc_id().await?,
                start_key: vec![],
                end_key: vec![],
                region_epoch: Some(metapb::RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers: vec![metapb::Peer {
                    id: placement.alloc_id().await?,
                    store_id: store.id,
                    ..Default::default()
                }],
                ..Default::default()
            };
            engine.write(&peer_storage::bootstrap_writes(&region)?, true)?;
            region
        }
    };
    match placement.bootstrap(store, region.clone()).await {
        Ok(()) => {
            tracing::info!(region_id = region.id, "bootstrapped the cluster");
            Ok(())
        }
        Err(PlacementError::Header {
            kind: proto::pdpb::ErrorType::AlreadyBootstrapped,
            ..
        }) => {
            // A bootstrap retried across a placement leader change can meet
            // its own earlier success: keep the region then.
            if placement
                .get_region(b"")
                .await?
                .is_some_and(|r| r.id == region.id)
            {
                tracing::info!(region_id = region.id, "bootstrapped the cluster");
                return Ok(());
            }
            tracing::info!("another store bootstrapped the cluster first");
            let undo: Vec<Modify> = [
                local_keys::region_state_key(region.id),
                local_keys::raft_state_key(region.id),
                local_keys::apply_state_key(region.id),
            ]
            .into_iter()
            .map(|key| Modify::Delete { cf: CF_RAFT, key })
            .collect();
            engine.write(&undo, true)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
