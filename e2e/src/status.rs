//! A store's status port, as tests read and steer it: `/status` (the store's id and replica
//! counts, [`StoreStatus`]), Prometheus `/metrics` ([`metric_value`] reads one sample) and, on
//! stores started with `[debug] fault-injection = true` ([`FAULT_INJECTION_CONFIG`]),
//! `/debug/raft/filters`, which stops the store sending raft messages to chosen stores.
//!
//! The `impl Cluster` block addresses stores by harness index: [`Cluster::store_status`],
//! [`Cluster::store_metric`], [`Cluster::block_raft`] and [`Cluster::clear_raft_filters`].
//! Partitions built from these filters are in [`crate::fault`].

use reqwest::Method;
use serde::Deserialize;

use crate::cluster::Cluster;

/// Store config text that turns on `/debug/raft/filters`; append it to a test's store config.
pub const FAULT_INJECTION_CONFIG: &str = "\n[debug]\nfault-injection = true\n";

/// `GET /status` on a store's status port.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct StoreStatus {
    pub store_id: u64,
    /// Region replicas this store holds.
    pub region_count: u64,
    /// Of those, how many it leads.
    pub leader_count: u64,
    /// The ids of the regions it leads, ascending.
    #[serde(default)]
    pub leader_regions: Vec<u64>,
}

/// The value of the sample `name{labels}` in Prometheus text `text`, where `labels` is the
/// exact label text between the braces (e.g. `direction="applied"`; `""` for none). `None` when
/// the series is absent.
pub fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            (head.trim() == series).then(|| value.trim().parse().ok())?
        })
}

impl Cluster {
    fn status_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.store_status_addr(i))
    }

    /// Store `i`'s `/status`.
    pub async fn store_status(&self, i: usize) -> Result<StoreStatus, String> {
        let url = self.status_url(i, "/status");
        let body = self.http.send(Method::GET, &url).await?;
        serde_json::from_str(&body).map_err(|e| format!("GET {url}: bad JSON ({e}): {body}"))
    }

    /// The sample `name{labels}` of store `i`'s `/metrics` (see [`metric_value`]); an absent
    /// series reads as 0, as an untouched counter.
    pub async fn store_metric(&self, i: usize, name: &str, labels: &str) -> Result<f64, String> {
        let text = self
            .http
            .send(Method::GET, &self.status_url(i, "/metrics"))
            .await?;
        Ok(metric_value(&text, name, labels).unwrap_or(0.0))
    }

    /// Makes store `i` stop sending raft messages to the stores with ids `to` (added to the
    /// filters already in place). Needs [`FAULT_INJECTION_CONFIG`].
    pub async fn block_raft(&self, i: usize, to: &[u64]) -> Result<(), String> {
        let list: Vec<String> = to.iter().map(u64::to_string).collect();
        let url = self.status_url(i, &format!("/debug/raft/filters?block={}", list.join(",")));
        self.http.send(Method::POST, &url).await.map(drop)
    }

    /// Makes every engine write of store `i` fail from now on, as a full disk
    /// would. Needs [`FAULT_INJECTION_CONFIG`].
    pub async fn fail_engine_writes(&self, i: usize) -> Result<(), String> {
        let url = self.status_url(i, "/debug/engine/fail-writes");
        self.http.send(Method::POST, &url).await.map(drop)
    }

    /// Removes every raft filter of store `i`.
    pub async fn clear_raft_filters(&self, i: usize) -> Result<(), String> {
        let url = self.status_url(i, "/debug/raft/filters");
        self.http.send(Method::DELETE, &url).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP store_raft_snapshots_total raft snapshots by direction\n\
        # TYPE store_raft_snapshots_total counter\n\
        store_raft_snapshots_total{direction=\"applied\"} 2\n\
        store_raft_snapshots_total{direction=\"sent\"} 0\n\
        process_open_fds 17\n";

    #[test]
    fn reads_one_sample_by_name_and_labels() {
        let name = "store_raft_snapshots_total";
        assert_eq!(metric_value(TEXT, name, "direction=\"applied\""), Some(2.0));
        assert_eq!(metric_value(TEXT, name, "direction=\"sent\""), Some(0.0));
        assert_eq!(metric_value(TEXT, name, "direction=\"other\""), None);
        assert_eq!(metric_value(TEXT, "process_open_fds", ""), Some(17.0));
        assert_eq!(metric_value(TEXT, "process", ""), None);
    }

    #[test]
    fn status_json_parses() {
        let s: StoreStatus = serde_json::from_str(
            r#"{"store_id":4,"region_count":5,"leader_count":2,"leader_regions":[2,8]}"#,
        )
        .unwrap();
        assert_eq!(s.store_id, 4);
        assert_eq!((s.region_count, s.leader_count), (5, 2));
        assert_eq!(s.leader_regions, [2, 8]);
    }
}
