//! The store lifecycle over PD's HTTP API: drain (Offline), cancel, automatic Tombstone,
//! state filters, tombstone purge, and what a tombstone store is told over gRPC.

mod common;

use std::time::Duration;

use common::*;
use proto::pdpb::{self, ErrorType};
use serde_json::Value;
use testkit::wait;

async fn state_names(base: &str, query: &str) -> Vec<(u64, String)> {
    let v: Value = reqwest::get(format!("{base}/pd/api/v1/stores{query}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let s = &s["store"];
            let name = s["state_name"].as_str().unwrap().to_owned();
            (s["id"].as_u64().unwrap(), name)
        })
        .collect()
}

#[tokio::test]
async fn drain_tombstone_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let mut pd = TestPd::connect(&server).await;
    let (first, _, _) = pd.must_bootstrap_cluster().await;
    for id in [first + 10, first + 11, first + 12] {
        pd.must_put_store(store(id)).await;
    }
    let (a, b, c) = (first + 10, first + 11, first + 12);

    // 4 Up stores, max-replicas 3: the first drain is fine, a second is refused.
    let del = |id: u64, q: &str| {
        http.delete(format!("{base}/pd/api/v1/store/{id}{q}"))
            .send()
    };
    assert_eq!(del(a, "").await.unwrap().status(), 200);
    let refused = del(b, "").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert!(refused.text().await.unwrap().contains("force=true"));
    assert_eq!(del(b, "?force=true").await.unwrap().status(), 200);
    let up = http
        .post(format!("{base}/pd/api/v1/store/{b}/state?state=Up"))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 200);
    assert_eq!(del(9999, "").await.unwrap().status(), 404);

    // Store a holds no replica: it becomes Tombstone on its own.
    wait::for_("store a tombstone")
        .within(Duration::from_secs(10))
        .until_async(|| async { !state_names(&base, "").await.iter().any(|(id, _)| *id == a) })
        .await;
    let tomb = state_names(&base, "?state=Tombstone").await;
    assert_eq!(tomb, [(a, "Tombstone".to_owned())]);
    let up_or_offline = state_names(&base, "?state=0&state=1").await;
    assert_eq!(up_or_offline.len(), 3, "{up_or_offline:?}");
    assert!(up_or_offline.iter().all(|(_, n)| n == "Up"));

    // gRPC: excluded on request; a tombstone may not come back or heartbeat.
    let with_tombstones = pd.get_all_stores(false).await.unwrap().stores.len();
    let without = pd.get_all_stores(true).await.unwrap().stores.len();
    assert_eq!((with_tombstones, without), (4, 3));
    let again = pd.put_store(store(a)).await.unwrap();
    assert_eq!(error_type(&again.header), ErrorType::StoreTombstone);
    let hb = pd
        .store_heartbeat(pdpb::StoreStats {
            store_id: a,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(error_type(&hb.header), ErrorType::StoreTombstone);
    let bad = http
        .post(format!("{base}/pd/api/v1/store/{c}/state?state=Tombstone"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Purge, and it stays purged across a restart.
    let purge = http
        .delete(format!("{base}/pd/api/v1/stores/remove-tombstone"))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200);
    assert!(state_names(&base, "?state=Tombstone").await.is_empty());
    server.stop().await.unwrap();
    let server = must_start(dir.path()).await;
    let base = server.url();
    let ids: Vec<u64> = state_names(&base, "?state=Up&state=Offline&state=Tombstone")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [first, b, c]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn schedulers_and_fault_tolerance() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let base = server.url();
    let http = reqwest::Client::new();
    let mut pd = TestPd::connect(&server).await;
    let (store_id, region_id, _) = pd.must_bootstrap_cluster().await;

    let list = |base: String| async move {
        let v: Vec<String> = reqwest::get(format!("{base}/pd/api/v1/schedulers"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v
    };
    assert_eq!(
        list(base.clone()).await,
        ["balance-leader-scheduler", "balance-region-scheduler"]
    );
    let add = |body: serde_json::Value| {
        http.post(format!("{base}/pd/api/v1/schedulers"))
            .json(&body)
            .send()
    };
    let body = serde_json::json!({"name": "evict-leader-scheduler", "store_id": store_id});
    assert_eq!(add(body).await.unwrap().status(), 200);
    let unknown = serde_json::json!({"name": "evict-leader-scheduler", "store_id": 999});
    assert_eq!(add(unknown).await.unwrap().status(), 404);
    let bogus = serde_json::json!({"name": "shuffle-hot-region-scheduler"});
    assert_eq!(add(bogus).await.unwrap().status(), 400);
    let evict = format!("evict-leader-scheduler-{store_id}");
    assert!(list(base.clone()).await.contains(&evict));

    let ft: Value = reqwest::get(format!("{base}/pd/api/v1/fault-tolerance"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ft["regions"], 1);
    let store_level = ft["levels"].as_array().unwrap().last().unwrap();
    assert_eq!(store_level["level"], "store");
    assert_eq!(store_level["tolerable_failures"], 0);
    assert_eq!(store_level["limiting_regions"][0], region_id);

    // Runtime config: location labels, down time and max-replicas.
    let body = serde_json::json!({
        "location-labels": "zone,host",
        "max-store-down-time": "1m",
        "max-replicas": 1,
    });
    let set = http
        .post(format!("{base}/pd/api/v1/config"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let bad = serde_json::json!({"max-store-down-time": "never"});
    let refused = http
        .post(format!("{base}/pd/api/v1/config"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);

    // Scheduler list and config survive a restart; then evict-leader is removed.
    server.stop().await.unwrap();
    let server = must_start(dir.path()).await;
    let base = server.url();
    assert!(list(base.clone()).await.contains(&evict));
    let config: Value = reqwest::get(format!("{base}/pd/api/v1/config"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["replication"]["location-labels"], "zone,host");
    assert_eq!(config["replication"]["max-replicas"], 1);
    assert_eq!(config["schedule"]["max-store-down-time"], "1m0s");
    let ft: Value = reqwest::get(format!("{base}/pd/api/v1/fault-tolerance"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let levels: Vec<&str> = (ft["levels"].as_array().unwrap().iter())
        .map(|l| l["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, ["zone", "host", "store"]);
    let del = http
        .delete(format!("{base}/pd/api/v1/schedulers/{evict}"))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 200);
    assert!(!list(base.clone()).await.contains(&evict));
    server.stop().await.unwrap();
}
