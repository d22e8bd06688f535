//! [`HeartbeatStreams`]: the open `RegionHeartbeat` response streams, one per store.
//!
//! A store's region heartbeats arrive on one bidirectional stream; placement answers on it and,
//! once scheduling exists, pushes operators (add/remove peer, transfer leader, split) down the
//! same stream. The stream of the most recent heartbeat from a store wins, as in PD's
//! `HeartbeatStreams::BindStream`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use proto::pdpb::RegionHeartbeatResponse;
use tokio::sync::mpsc;
use tonic::Status;

/// Sender half of one heartbeat response stream.
pub type ResponseSender = mpsc::Sender<Result<RegionHeartbeatResponse, Status>>;

/// Open heartbeat streams by store id.
#[derive(Default)]
pub struct HeartbeatStreams {
    next_stream: AtomicU64,
    by_store: Mutex<HashMap<u64, (u64, ResponseSender)>>,
}

impl HeartbeatStreams {
    /// A fresh id for a newly opened stream.
    pub fn new_stream_id(&self) -> u64 {
        self.next_stream.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes `stream_id` the stream for `store_id`.
    pub fn bind(&self, store_id: u64, stream_id: u64, tx: &ResponseSender) {
        let mut map = self.by_store.lock();
        match map.get(&store_id) {
            Some((id, _)) if *id == stream_id => {}
            _ => {
                tracing::debug!(store_id, stream_id, "region heartbeat stream bound");
                map.insert(store_id, (stream_id, tx.clone()));
            }
        }
    }

    /// Forgets every binding of a closed stream.
    pub fn unbind_stream(&self, stream_id: u64) {
        self.by_store.lock().retain(|_, (id, _)| *id != stream_id);
    }

    /// Pushes a response (an operator) to a store; false if it has no open stream or the
    /// stream is full.
    pub fn send(&self, store_id: u64, resp: RegionHeartbeatResponse) -> bool {
        let tx = self
            .by_store
            .lock()
            .get(&store_id)
            .map(|(_, tx)| tx.clone());
        match tx {
            Some(tx) => tx.try_send(Ok(resp)).is_ok(),
            None => false,
        }
    }

    /// Stores with an open stream.
    pub fn bound_stores(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.by_store.lock().keys().copied().collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_stream_wins_and_unbinds() {
        let streams = HeartbeatStreams::default();
        let (tx1, mut rx1) = mpsc::channel(4);
        let (tx2, mut rx2) = mpsc::channel(4);
        let (s1, s2) = (streams.new_stream_id(), streams.new_stream_id());
        streams.bind(7, s1, &tx1);
        assert!(streams.send(7, RegionHeartbeatResponse::default()));
        assert!(rx1.try_recv().is_ok());
        streams.bind(7, s2, &tx2);
        assert!(streams.send(7, RegionHeartbeatResponse::default()));
        assert!(rx2.try_recv().is_ok());
        assert!(rx1.try_recv().is_err());
        streams.unbind_stream(s1);
        assert_eq!(streams.bound_stores(), vec![7]);
        streams.unbind_stream(s2);
        assert!(!streams.send(7, RegionHeartbeatResponse::default()));
    }
}
