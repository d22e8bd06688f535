//! A member whose clock jumps (through the `[debug] fault-injection` route
//! `POST /debug/clock-offset/{ms}`, which shifts the wall clock the timestamp oracle reads) keeps
//! handing out strictly increasing timestamps: forward jumps carry the timestamps along, backward
//! jumps never take them back. Its own test binary: the offset is process-wide.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{must_pd_client, test_config, tso};
use testkit::wait;

fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn set_offset(url: &str, ms: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/debug/clock-offset/{ms}"))
        .send()
        .await
        .expect("placement answers")
}

#[tokio::test]
async fn timestamps_follow_a_clock_jumping_forward_and_never_go_back_when_it_jumps_back() {
    common::init_logging();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.debug.fault_injection = true;
    let server = placement::start(config).await.expect("placement starts");
    let (url, cid) = (server.url(), server.cluster_id());
    let mut pd = must_pd_client(&server).await;
    let first = tso(&mut pd, cid).await.expect("a timestamp");

    assert!(set_offset(&url, "60000").await.status().is_success());
    let client = pd.clone();
    let ahead = wait::for_("timestamps to follow the clock a minute ahead")
        .within(Duration::from_secs(20))
        .every(Duration::from_millis(100))
        .until_ok(|| {
            let mut pd = client.clone();
            async move {
                let ts = tso(&mut pd, cid).await.expect("a timestamp");
                assert!(ts > first);
                if ts >> 18 >= real_now_ms() + 50_000 {
                    Ok(ts)
                } else {
                    Err(format!("timestamp at {} ms", ts >> 18))
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    assert!(set_offset(&url, "-60000").await.status().is_success());
    let mut last = ahead;
    for _ in 0..50 {
        let ts = tso(&mut pd, cid).await.expect("a timestamp");
        assert!(
            ts > last,
            "timestamp {ts} after {last}: the clock jump took it back"
        );
        last = ts;
    }

    let bad = set_offset(&url, "soon").await;
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("not a whole number"));
    assert!(set_offset(&url, "0").await.status().is_success());
}
