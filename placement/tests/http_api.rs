//! PD's HTTP API on the gRPC port, read with a plain HTTP/1.1 client.

mod common;

use common::*;
use proto::pdpb;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

async fn must_get(url: &str) -> Value {
    let resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test]
async fn http_endpoints_in_pd_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let server = must_start(dir.path()).await;
    let cid = server.cluster_id();
    let base = server.url();

    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let h = must_get(&format!("{base}/pd/api/v1/health")).await;
    assert_eq!(h[0]["health"], true);
    assert_eq!(h[0]["name"], "pd-test");

    let m = must_get(&format!("{base}/pd/api/v1/members")).await;
    assert_eq!(m["header"]["cluster_id"], cid);
    assert_eq!(m["members"].as_array().unwrap().len(), 1);
    assert_eq!(m["leader"]["client_urls"][0], base);

    // Before bootstrap, cluster-level reads fail as PD's do.
    let r = reqwest::get(format!("{base}/pd/api/v1/regions"))
        .await
        .unwrap();
    assert_eq!(r.status(), 500);

    let mut pd = TestPd::connect(&server).await;
    let (store_id, region_id, peer_id) = pd.must_bootstrap_cluster().await;
    pd.must_store_heartbeat(pdpb::StoreStats {
        store_id,
        capacity: 10 << 30,
        available: 5 << 30,
        ..Default::default()
    })
    .await;
    let (tx, rx) = mpsc::channel(4);
    let mut replies = pd
        .raw()
        .region_heartbeat(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let leader = peer(peer_id, store_id);
    tx.send(pdpb::RegionHeartbeatRequest {
        header: header(cid),
        region: Some(region(region_id, b"", b"", 1, &[leader])),
        leader: Some(leader),
        approximate_size: 5 << 20,
        approximate_keys: 77,
        ..Default::default()
    })
    .await
    .unwrap();
    replies.message().await.unwrap().unwrap();

    let stores = must_get(&format!("{base}/pd/api/v1/stores")).await;
    assert_eq!(stores["count"], 1);
    let s = &stores["stores"][0];
    assert_eq!(s["store"]["id"], store_id);
    assert_eq!(s["store"]["address"], store(store_id).address);
    assert_eq!(s["store"]["state_name"], "Up");
    assert_eq!(s["status"]["leader_count"], 1);
    assert_eq!(s["status"]["region_count"], 1);
    assert_eq!(s["status"]["capacity"], "10GiB");
    assert!(s["status"]["last_heartbeat_ts"].is_string());
    let one = must_get(&format!("{base}/pd/api/v1/store/{store_id}")).await;
    assert_eq!(one["store"]["id"], store_id);
    let missing = reqwest::get(format!("{base}/pd/api/v1/store/999"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let regions = must_get(&format!("{base}/pd/api/v1/regions")).await;
    assert_eq!(regions["count"], 1);
    let r = &regions["regions"][0];
    assert_eq!(r["id"], region_id);
    assert_eq!(r["start_key"], "");
    assert_eq!(r["epoch"]["version"], 1);
    assert_eq!(r["peers"][0]["role_name"], "Voter");
    assert_eq!(r["leader"]["store_id"], store_id);
    assert_eq!(r["approximate_size"], 5);
    assert_eq!(r["approximate_keys"], 77);
    let by_id = must_get(&format!("{base}/pd/api/v1/region/id/{region_id}")).await;
    assert_eq!(by_id["id"], region_id);

    let cluster = must_get(&format!("{base}/pd/api/v1/cluster")).await;
    assert_eq!(cluster["id"], cid);
    assert_eq!(cluster["max_peer_count"], 3);
    let replicate = must_get(&format!("{base}/pd/api/v1/config/replicate")).await;
    assert_eq!(replicate["max-replicas"], 3);

    // Keyspaces: list, create, duplicate, fetch.
    let ks = must_get(&format!("{base}/pd/api/v2/keyspaces")).await;
    assert_eq!(ks["keyspaces"][0]["name"], "DEFAULT");
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/pd/api/v2/keyspaces"))
        .json(&serde_json::json!({"name": "tenant_a"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["id"], 1);
    assert_eq!(created["state"], "ENABLED");
    let dup = client
        .post(format!("{base}/pd/api/v2/keyspaces"))
        .json(&serde_json::json!({"name": "tenant_a"}))
        .send()
        .await
        .unwrap();
    assert_eq!(dup.status(), 409);
    let fetched = must_get(&format!("{base}/pd/api/v2/keyspaces/tenant_a")).await;
    assert_eq!(fetched["id"], 1);
    let mut ks_client = must_keyspace_client(&server).await;
    let loaded = ks_client
        .load_keyspace(proto::keyspacepb::LoadKeyspaceRequest {
            header: header(cid),
            name: "tenant_a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.keyspace.unwrap().id, 1);

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"placement_grpc_requests_total{method="Bootstrap",result="ok"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("placement_grpc_request_duration_seconds_bucket"));
    assert!(metrics.contains("placement_regions 1"));
    assert!(metrics.contains(r#"placement_stores{state="Up"} 1"#));
    assert!(metrics.contains(r#"placement_region_heartbeats_total{result="ok"} 1"#));

    let unknown = reqwest::get(format!("{base}/no/such/path")).await.unwrap();
    assert_eq!(unknown.status(), 404);
    drop(tx);
    server.stop().await.unwrap();
}
