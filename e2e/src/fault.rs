//! Network partitions between real store processes, built from the stores' raft filters
//! (`/debug/raft/filters`, see [`crate::status`]).
//!
//! A filter only stops a store *sending* raft messages, so a full partition of store X is a
//! filter on X blocking every other store plus a filter on every other store blocking X:
//! [`Cluster::isolate`]. [`Cluster::heal`] clears every running store's filters. Traffic to
//! placement and from clients is untouched: an isolated store still heartbeats placement and
//! answers clients, which is what lets a test ask it for data it must refuse to serve.

use crate::cluster::Cluster;

impl Cluster {
    /// Cuts store `i` off from every other store, both ways, for raft traffic. The stores must
    /// have been started with [`FAULT_INJECTION_CONFIG`](crate::status::FAULT_INJECTION_CONFIG).
    pub async fn isolate(&self, i: usize) -> Result<(), String> {
        let ids = self.store_ids().await?;
        let isolated = ids[i];
        let others: Vec<u64> = ids.iter().copied().filter(|&id| id != isolated).collect();
        self.block_raft(i, &others).await?;
        for j in (0..ids.len()).filter(|&j| j != i && self.store_running(j)) {
            self.block_raft(j, &[isolated]).await?;
        }
        tracing::info!(store = i, store_id = isolated, "store isolated");
        Ok(())
    }

    /// [`isolate`](Self::isolate), panicking on failure.
    pub async fn must_isolate(&self, i: usize) {
        if let Err(e) = self.isolate(i).await {
            panic!("cannot isolate store {i}: {e}");
        }
    }

    /// Clears the raft filters of every running store.
    pub async fn heal(&self) -> Result<(), String> {
        for j in (0..self.store_count()).filter(|&j| self.store_running(j)) {
            self.clear_raft_filters(j).await?;
        }
        tracing::info!("partitions healed");
        Ok(())
    }

    /// [`heal`](Self::heal), panicking on failure.
    pub async fn must_heal(&self) {
        if let Err(e) = self.heal().await {
            panic!("cannot heal partitions: {e}");
        }
    }
}
