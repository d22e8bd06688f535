use std::time::Duration;
#[tokio::test]
async fn harness_mechanics() {
    e2e::init_test_tracing();
    let mut c = e2e::ClusterBuilder::default().stores(3).store_labels(1, "zone=z1").store_config("a = 1\n").must_start().await;
    println!("pd {}", c.pd_endpoint());
    c.kill_store(1).await.unwrap();
    assert!(!c.store_running(1));
    c.must_ready(Duration::from_secs(10)).await;
    c.restart_store(1).await.unwrap();
    c.must_ready(Duration::from_secs(10)).await;
    let st = c.stop_store(0).await.unwrap();
    println!("stop status {st:?}");
    assert!(st.unwrap().success());
    c.restart_store(0).await.unwrap();
    c.kill_placement().await.unwrap();
    c.restart_placement().await.unwrap();
    c.must_ready(Duration::from_secs(10)).await; // fake placement loses stores -> should time out
}
