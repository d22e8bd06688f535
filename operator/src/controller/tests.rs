//! Reconcile passes against `MockApiServer` and `ScriptedPlacement`: what is applied, in
//! which order, what placement is asked, and what status and Events say, step by step.

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use serde_json::json;

use super::*;
use crate::builders::fixtures::cluster;
use crate::crd::TikvClusterSpec;
use crate::crd::{PlacementMember, StoreInfo, UpgradeStatus};
use crate::fixtures::{Call, MockApiServer, ScriptedPlacement};
use crate::placement::PlacementView;

const STS: &str = "/apis/apps/v1/namespaces/db/statefulsets";

async fn must_reconcile(
    tc: TikvCluster,
    mock: MockApiServer,
    client: Client,
) -> (Action, Vec<Call>) {
    must_reconcile_with(tc, mock, client, ScriptedPlacement::down()).await
}

async fn must_reconcile_with(
    tc: TikvCluster,
    mock: MockApiServer,
    client: Client,
    placement: ScriptedPlacement,
) -> (Action, Vec<Call>) {
    let server = mock.run();
    let action = reconcile(
        Arc::new(tc),
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), MANAGER.into()),
            client,
            placement: Arc::new(placement),
            metrics: Metrics::default(),
        }),
    )
    .await
    .expect("reconcile succeeds");
    (action, server.await.unwrap())
}

fn shorts(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::short).collect()
}

fn status_patch(calls: &[Call]) -> crate::crd::TikvClusterStatus {
    let last = calls.last().unwrap();
    assert!(
        last.path.ends_with("/tikvclusters/basic/status"),
        "{}",
        last.path
    );
    serde_json::from_value(last.body["status"].clone()).unwrap()
}

#[tokio::test]
async fn create_from_scratch_applies_everything_in_order() {
    let tc = cluster(TikvClusterSpec::default());
    let (client, mock) = MockApiServer::new(&tc);
    let (action, calls) = must_reconcile(tc, mock, client).await;
    let expected: Vec<String> = ["placement", "store"]
        .iter()
        .flat_map(|c| {
            [
                format!("GET statefulsets/basic-{c}"),
                format!("PATCH services/basic-{c}-peer"),
                format!("PATCH services/basic-{c}"),
                format!("PATCH configmaps/basic-{c}-config"),
                format!("PATCH statefulsets/basic-{c}"),
                format!("PATCH poddisruptionbudgets/basic-{c}"),
            ]
        })
        .chain(["PATCH basic/status".to_owned()])
        .collect();
    assert_eq!(shorts(&calls), expected);
    let sts = calls
        .iter()
        .find(|c| c.method == http::Method::PATCH && c.path == format!("{STS}/basic-store"))
        .unwrap();
    assert_eq!(sts.body["spec"]["replicas"], 3);
    let status = status_patch(&calls);
    let progressing = status::find(&status, "Progressing").unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "RollingOut")
    );
    assert_eq!(action, Action::requeue(REQUEUE_BUSY));
}

/// One reconcile pass of a 5-store cluster asked to shrink to 3, with placement answering
/// `stores` (or not answering); returns the store replicas applied, the stores drained and
/// the Progressing reason and the reasons of the Events published.
async fn must_scale_in_pass(
    stores: Option<Vec<StoreInfo>>,
) -> (i64, Vec<u64>, String, Vec<String>) {
    let mut tc = cluster(TikvClusterSpec::default());
    let mut running = builders::stateful_set(&tc, Component::Store, 0).unwrap();
    running.spec.replicas = Some(5);
    running.status = Some(StatefulSetStatus {
        replicas: 5,
        ready_replicas: Some(5),
        ..Default::default()
    });
    tc.spec.store.replicas = 3;
    let (client, mock) = MockApiServer::new(&tc);
    let mock = mock.seed(
        &format!("{STS}/basic-store"),
        serde_json::to_value(&running).unwrap(),
    );
    let placement = match stores {
        Some(stores) => ScriptedPlacement::up(PlacementView {
            stores,
            ..PlacementView::default()
        }),
        None => ScriptedPlacement::down(),
    };
    let drained = placement.drained.clone();
    let (_, calls) = must_reconcile_with(tc, mock, client, placement).await;
    let applied = calls
        .iter()
        .find(|c| c.method == http::Method::PATCH && c.path == format!("{STS}/basic-store"))
        .unwrap();
    let status = status_patch(&calls);
    let reason = status::find(&status, "Progressing").unwrap().reason.clone();
    let drained = drained.lock().unwrap().clone();
    let events: Vec<_> = calls
        .iter()
        .filter(|c| c.method == http::Method::POST && c.path.ends_with("/events"))
        .map(|c| c.body["reason"].as_str().unwrap().to_owned())
        .collect();
    let replicas = applied.body["spec"]["replicas"].as_i64().unwrap();
    (replicas, drained, reason, events)
}

fn stores_with_last(state: &str) -> Vec<StoreInfo> {
    (0..5)
        .map(|i| StoreInfo {
            id: i + 1,
            address: format!("basic-store-{i}.basic-store-peer.db.svc:20160"),
            state: if i == 4 { state } else { "Up" }.into(),
            ..StoreInfo::default()
        })
        .collect()
}

#[tokio::test]
async fn scale_in_drains_the_store_before_its_pod_goes() {
    let none: Vec<String> = vec![];
    // Placement silent: nothing is drained and nothing shrinks.
    let (replicas, drained, reason, events) = must_scale_in_pass(None).await;
    assert_eq!((replicas, drained), (5, vec![]));
    assert_eq!(
        (reason.as_str(), events),
        ("ScaleInWaitingForPlacement", none.clone())
    );
    // Store 5 (basic-store-4, the highest ordinal) is Up: drain it, keep 5 pods.
    let (replicas, drained, reason, events) =
        must_scale_in_pass(Some(stores_with_last("Up"))).await;
    assert_eq!((replicas, drained), (5, vec![5]));
    assert_eq!(
        (reason.as_str(), events),
        ("ScaleInDraining", vec!["DrainingStore".to_owned()])
    );
    // Drain pending (Offline): no second delete, still 5 pods.
    let (replicas, drained, reason, events) =
        must_scale_in_pass(Some(stores_with_last("Offline"))).await;
    assert_eq!((replicas, drained), (5, vec![]));
    assert_eq!((reason.as_str(), events), ("ScaleInDraining", none));
    // Tombstone: only now the StatefulSet shrinks, by one pod.
    let (replicas, drained, _, events) =
        must_scale_in_pass(Some(stores_with_last("Tombstone"))).await;
    assert_eq!((replicas, drained), (4, vec![]));
    assert_eq!(events, ["RemovedDrainedPod"]);
}

#[tokio::test]
async fn paused_cluster_only_reads_and_reports() {
    let mut tc = cluster(TikvClusterSpec::default());
    tc.spec.paused = true;
    let (client, mock) = MockApiServer::new(&tc);
    let (_, calls) = must_reconcile(tc, mock, client).await;
    assert_eq!(
        shorts(&calls),
        [
            "GET statefulsets/basic-placement",
            "GET statefulsets/basic-store",
            "PATCH basic/status"
        ]
    );
    let status = status_patch(&calls);
    assert_eq!(
        status::find(&status, "Progressing").unwrap().reason,
        "Paused"
    );
}

#[tokio::test]
async fn unrenderable_config_applies_nothing_and_reports_degraded() {
    let mut tc = cluster(TikvClusterSpec::default());
    tc.spec.placement.common.config = Some("max-replicas = = 3".into());
    let (client, mock) = MockApiServer::new(&tc);
    let (action, calls) = must_reconcile(tc, mock, client).await;
    assert_eq!(
        shorts(&calls),
        [
            "GET statefulsets/basic-placement",
            "GET statefulsets/basic-store",
            "PATCH basic/status"
        ]
    );
    let status = status_patch(&calls);
    let degraded = status::find(&status, "Degraded").unwrap();
    assert_eq!(degraded.reason, "InvalidSpec");
    assert!(
        degraded.message.contains("spec.placement.config"),
        "{}",
        degraded.message
    );
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn reconcile_is_idempotent() {
    let tc = cluster(TikvClusterSpec::default());
    let bodies = |calls: Vec<Call>| -> Vec<_> {
        calls
            .into_iter()
            .filter(|c| !c.path.ends_with("/status"))
            .map(|c| (c.path, c.body))
            .collect()
    };
    let (client, mock) = MockApiServer::new(&tc);
    let (_, first) = must_reconcile(tc.clone(), mock, client).await;
    let (client, mock) = MockApiServer::new(&tc);
    let sts = json!(
        first
            .iter()
            .find(|c| c.method == http::Method::PATCH && c.path == format!("{STS}/basic-store"))
            .unwrap()
            .body
    );
    let mock = mock.seed(&format!("{STS}/basic-store"), sts);
    let (_, second) = must_reconcile(tc, mock, client).await;
    assert_eq!(bodies(first), bodies(second));
}

#[tokio::test]
async fn status_reports_what_placement_says() {
    let tc = cluster(TikvClusterSpec::default());
    let view = PlacementView {
        members: vec![PlacementMember {
            name: "basic-placement-0".into(),
            client_urls: vec!["http://basic-placement-0.basic-placement-peer.db.svc:2379".into()],
            health: true,
        }],
        leader: Some("basic-placement-0".into()),
        stores: vec![StoreInfo {
            id: 1,
            address: "basic-store-0.basic-store-peer.db.svc:20160".into(),
            state: "Up".into(),
            leader_count: 3,
            region_count: 3,
            ..StoreInfo::default()
        }],
        fault_tolerance: Some(1),
    };
    let (client, mock) = MockApiServer::new(&tc);
    let placement = ScriptedPlacement::up(view);
    let asked = placement.asked.clone();
    let (_, calls) = must_reconcile_with(tc, mock, client, placement).await;
    assert_eq!(
        *asked.lock().unwrap(),
        ["http://basic-placement.db.svc:2379"]
    );
    let status = status_patch(&calls);
    assert_eq!(
        status.placement.leader.as_deref(),
        Some("basic-placement-0")
    );
    assert_eq!(status.store.stores[0].pod.as_deref(), Some("basic-store-0"));
    assert_eq!(status.fault_tolerance, Some(1));
}

struct UpgradePass {
    partition: i64,
    evictions: Vec<String>,
    reason: String,
    events: Vec<String>,
    upgrade: serde_json::Value,
}

/// One pass of a 3-store cluster at `v2` whose store StatefulSet runs `running_version`
/// at `partition` with `updated`/`ready` pods; placement reports `leaders` per store.
async fn must_upgrade_pass(
    running_version: &str,
    partition: i32,
    (updated, ready): (i32, i32),
    leaders: [i64; 3],
    state: Option<UpgradeStatus>,
) -> UpgradePass {
    let mut tc = cluster(TikvClusterSpec::default());
    tc.spec.version = running_version.into();
    let mut running = builders::stateful_set(&tc, Component::Store, partition).unwrap();
    running.status = Some(StatefulSetStatus {
        replicas: 3,
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        ..Default::default()
    });
    tc.spec.version = "v2".into();
    tc.status = Some(crate::crd::TikvClusterStatus {
        upgrade: state,
        ..Default::default()
    });
    let stores = (0..3)
        .map(|i| StoreInfo {
            id: i as u64 + 1,
            address: format!("basic-store-{i}.basic-store-peer.db.svc:20160"),
            state: "Up".into(),
            leader_count: leaders[i],
            ..StoreInfo::default()
        })
        .collect();
    let placement = ScriptedPlacement::up(PlacementView {
        stores,
        ..PlacementView::default()
    });
    let evictions = placement.evictions.clone();
    let (client, mock) = MockApiServer::new(&tc);
    let mock = mock.seed(
        &format!("{STS}/basic-store"),
        serde_json::to_value(&running).unwrap(),
    );
    let (_, calls) = must_reconcile_with(tc, mock, client, placement).await;
    let applied = calls
        .iter()
        .find(|c| c.method == http::Method::PATCH && c.path == format!("{STS}/basic-store"))
        .unwrap();
    let evictions = evictions.lock().unwrap().clone();
    let status = calls.last().unwrap().body["status"].clone();
    let reason = status::find(
        &serde_json::from_value(status.clone()).unwrap(),
        "Progressing",
    )
    .unwrap()
    .reason
    .clone();
    UpgradePass {
        partition: applied.body["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
            .as_i64()
            .unwrap(),
        evictions,
        reason,
        events: calls
            .iter()
            .filter(|c| c.method == http::Method::POST)
            .map(|c| c.body["reason"].as_str().unwrap().to_owned())
            .collect(),
        upgrade: status["upgrade"].clone(),
    }
}

#[tokio::test]
async fn upgrade_evicts_leaders_then_restarts_one_pod_at_a_time() {
    // A new version: hold every pod back (partition 3) before anything restarts.
    let p = must_upgrade_pass("v1", 0, (3, 3), [4, 4, 4], None).await;
    assert_eq!((p.partition, p.reason.as_str()), (3, "UpgradeStarting"));
    assert!(p.evictions.is_empty());
    // Highest ordinal first: evict store 3's leaders; pod 2 still waits.
    let p = must_upgrade_pass("v2", 3, (0, 3), [4, 4, 4], None).await;
    assert_eq!(
        (p.partition, p.evictions.clone()),
        (3, vec!["+3".to_owned()])
    );
    assert_eq!(
        (p.reason.as_str(), p.events.clone()),
        ("UpgradeEvictingLeaders", vec!["EvictingLeaders".to_owned()])
    );
    assert_eq!(
        (p.upgrade["ordinal"].as_i64(), p.upgrade["storeId"].as_i64()),
        (Some(2), Some(3))
    );
    let state: UpgradeStatus = serde_json::from_value(p.upgrade).unwrap();
    // Leaders gone: pod 2 restarts (partition 2), nothing else does.
    let p = must_upgrade_pass("v2", 3, (0, 3), [4, 4, 0], Some(state.clone())).await;
    assert_eq!(
        (p.partition, p.reason.as_str()),
        (2, "UpgradeRestartingPod")
    );
    assert_eq!(p.events, ["RestartingStorePod"]);
    // Pod 2 restarting and not ready yet: hold at 2.
    let p = must_upgrade_pass("v2", 2, (1, 2), [4, 4, 0], Some(state.clone())).await;
    assert_eq!(
        (p.partition, p.reason.as_str()),
        (2, "UpgradeWaitingForReady")
    );
    // Pod 2 ready on the new revision: stop evicting store 3, clear the state.
    let p = must_upgrade_pass("v2", 2, (1, 3), [4, 4, 0], Some(state)).await;
    assert_eq!((p.partition, p.evictions), (2, vec!["-3".to_owned()]));
    assert_eq!(p.events, ["StorePodUpgraded"]);
    assert!(p.upgrade.is_null(), "{}", p.upgrade);
}
