//! Reconcile passes against `MockApiServer` and `ScriptedPlacement`: what is applied, in
//! which order, what placement is asked, and what status and Events say, step by step.

use k8s_openapi::api::apps::v1::StatefulSetStatus;
use serde_json::json;

use super::*;
use crate::builders::fixtures::cluster;
use crate::crd::TikvClusterSpec;
use crate::crd::{PlacementMember, StoreInfo, UpgradeStatus};
use crate::fixtures::{without_nulls, Call, MockApiServer, ScriptedPlacement};
use crate::placement::PlacementView;

const STS: &str = "/apis/apps/v1/namespaces/db/statefulsets";
const PVC: &str = "/api/v1/namespaces/db/persistentvolumeclaims";
const CRB: &str =
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/tikv-db-basic-placement-topology";
const TOPOLOGY_ROLE: &str = "tikv-operator-placement-topology";

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
    must_reconcile_as(tc, mock, client, placement, Some(TOPOLOGY_ROLE)).await
}

/// One pass with the operator told `topology_role` (or no topology ClusterRole).
async fn must_reconcile_as(
    tc: TikvCluster,
    mock: MockApiServer,
    client: Client,
    placement: ScriptedPlacement,
    topology_role: Option<&str>,
) -> (Action, Vec<Call>) {
    let server = mock.run();
    let action = reconcile(
        Arc::new(tc),
        Arc::new(Context {
            recorder: Recorder::new(client.clone(), MANAGER.into()),
            client,
            placement: Arc::new(placement),
            metrics: Metrics::default(),
            topology_cluster_role: topology_role.map(str::to_owned),
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
    serde_json::from_value(without_nulls(last.body["status"].clone())).unwrap()
}

#[tokio::test]
async fn the_first_pass_only_adds_the_finalizer_guarded_by_a_test() {
    let tc = cluster(TikvClusterSpec::default());
    let (client, mock) = MockApiServer::new(&tc);
    let (action, calls) = must_reconcile(tc, mock, client).await;
    assert_eq!(shorts(&calls), ["PATCH tikvclusters/basic"]);
    // A JSON patch that fails if someone else set finalizers meanwhile.
    assert_eq!(
        calls[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [crate::crd::FINALIZER]},
        ])
    );
    // The patch's own watch event starts the next pass.
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn create_from_scratch_applies_everything_in_order() {
    let tc = finalized(TikvClusterSpec::default());
    let (client, mock) = MockApiServer::new(&tc);
    let (action, calls) = must_reconcile(tc, mock, client).await;
    let expected: Vec<String> = [
        "GET statefulsets/basic-placement",
        "GET statefulsets/basic-store",
        "PATCH serviceaccounts/basic-placement",
        "PATCH clusterrolebindings/tikv-db-basic-placement-topology",
    ]
    .map(str::to_owned)
    .into_iter()
    .chain(["placement", "store"].iter().flat_map(|c| {
        [
            format!("PATCH services/basic-{c}-peer"),
            format!("PATCH services/basic-{c}"),
            format!("PATCH configmaps/basic-{c}-config"),
            format!("PATCH statefulsets/basic-{c}"),
            format!("PATCH poddisruptionbudgets/basic-{c}"),
        ]
    }))
    .chain(["PATCH basic/status".to_owned()])
    .collect();
    assert_eq!(shorts(&calls), expected);
    // Placement runs as its own ServiceAccount, bound to the chart's topology ClusterRole.
    let binding = &calls[3].body;
    assert_eq!(binding["roleRef"]["name"], TOPOLOGY_ROLE);
    assert_eq!(binding["subjects"][0]["name"], "basic-placement");
    assert_eq!(binding["subjects"][0]["namespace"], "db");
    let placement = calls
        .iter()
        .find(|c| c.method == http::Method::PATCH && c.path == format!("{STS}/basic-placement"))
        .unwrap();
    assert_eq!(
        placement.body["spec"]["template"]["spec"]["serviceAccountName"],
        "basic-placement"
    );
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
    let mut tc = finalized(TikvClusterSpec::default());
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
    let mut tc = finalized(TikvClusterSpec::default());
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
    let tc = finalized(TikvClusterSpec::default());
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
    let tc = finalized(TikvClusterSpec::default());
    let view = PlacementView {
        members: vec![PlacementMember {
            name: "basic-placement-0".into(),
            client_urls: vec!["http://basic-placement-0.basic-placement-peer.db.svc:2379".into()],
            health: true,
            ..PlacementMember::default()
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
    let mut tc = finalized(TikvClusterSpec::default());
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
        &serde_json::from_value(without_nulls(status.clone())).unwrap(),
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

/// What one reconcile pass did: the calls, what placement was asked and the status written.
struct Pass {
    calls: Vec<Call>,
    drained: Vec<u64>,
    member_ops: Vec<String>,
    evictions: Vec<String>,
}

impl Pass {
    /// The StatefulSet `name` as applied this pass.
    fn sts(&self, name: &str) -> Option<&serde_json::Value> {
        self.calls
            .iter()
            .find(|c| c.method == http::Method::PATCH && c.path == format!("{STS}/{name}"))
            .map(|c| &c.body)
    }

    fn replicas(&self, name: &str) -> Option<i64> {
        self.sts(name)?["spec"]["replicas"].as_i64()
    }

    fn partition(&self, name: &str) -> Option<i64> {
        self.sts(name)?["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64()
    }

    fn events(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter(|c| c.method == http::Method::POST && c.path.ends_with("/events"))
            .map(|c| c.body["reason"].as_str().unwrap().to_owned())
            .collect()
    }

    fn status(&self) -> crate::crd::TikvClusterStatus {
        status_patch(&self.calls)
    }

    fn condition(&self, type_: &str) -> (String, String) {
        let status = self.status();
        let c = status::find(&status, type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }
}

/// One pass over `tc` with `seeds` in the API server and placement answering `view`.
async fn must_pass(
    tc: TikvCluster,
    seeds: Vec<(String, serde_json::Value)>,
    view: Option<PlacementView>,
) -> Pass {
    let (client, mut mock) = MockApiServer::new(&tc);
    for (path, obj) in seeds {
        mock = mock.seed(&path, obj);
    }
    let placement = match view {
        Some(v) => ScriptedPlacement::up(v),
        None => ScriptedPlacement::down(),
    };
    let (drained, member_ops, evictions) = (
        placement.drained.clone(),
        placement.member_ops.clone(),
        placement.evictions.clone(),
    );
    let (_, calls) = must_reconcile_with(tc, mock, client, placement).await;
    let take = |v: Arc<std::sync::Mutex<Vec<String>>>| v.lock().unwrap().clone();
    let drained = drained.lock().unwrap().clone();
    Pass {
        calls,
        drained,
        member_ops: take(member_ops),
        evictions: take(evictions),
    }
}

/// A cluster that already carries the finalizer (every pass after the first).
fn finalized(spec: TikvClusterSpec) -> TikvCluster {
    let mut tc = cluster(spec);
    tc.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
    tc
}

/// The seed of `c`'s StatefulSet rendered from `tc`, running `replicas` pods, all ready and
/// updated.
fn running(tc: &TikvCluster, c: Component, replicas: i32) -> (String, serde_json::Value) {
    let sts = super::decide::tests::running(tc, c, replicas);
    let path = format!("{STS}/{}", builders::name(tc, c));
    (path, serde_json::to_value(&sts).unwrap())
}

/// Stores 1..=n on pods 0..n-1, Up unless listed.
fn stores(n: u64, states: &[(u64, &str)]) -> Vec<StoreInfo> {
    (1..=n)
        .map(|id| StoreInfo {
            id,
            address: format!("basic-store-{}.basic-store-peer.db.svc:20160", id - 1),
            state: states
                .iter()
                .find(|(s, _)| *s == id)
                .map_or("Up", |(_, st)| st)
                .into(),
            region_count: 4,
            ..StoreInfo::default()
        })
        .collect()
}

fn store_view(stores: Vec<StoreInfo>) -> PlacementView {
    PlacementView {
        stores,
        ..PlacementView::default()
    }
}

fn with_failures(mut tc: TikvCluster, ids: &[u64]) -> TikvCluster {
    let mut status = crate::crd::TikvClusterStatus::default();
    status.store.failure_stores = ids
        .iter()
        .map(|&id| crate::crd::FailureStore {
            store_id: id,
            pod: format!("basic-store-{}", id - 1),
            since: Time(Timestamp::from_second(1_000).unwrap()),
        })
        .collect();
    tc.status = Some(status);
    tc
}

#[tokio::test]
async fn a_down_store_gets_a_replacement_pod_and_a_status_record() {
    let tc = finalized(TikvClusterSpec::default());
    let seeds = vec![running(&tc, Component::Store, 3)];
    let p = must_pass(tc, seeds, Some(store_view(stores(3, &[(2, "Down")])))).await;
    assert_eq!(p.replicas("basic-store"), Some(4));
    assert!(p.drained.is_empty(), "{:?}", p.drained);
    let failures = p.status().store.failure_stores;
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].store_id, failures[0].pod.as_str()),
        (2, "basic-store-1")
    );
    assert_eq!(
        p.condition("Degraded"),
        ("True".into(), "StoreFailover".into())
    );
    assert_eq!(p.events(), ["StoreFailover"]);
    // Next pass: recorded already, the replacement pod runs; no second pod, no new event.
    let tc = with_failures(finalized(TikvClusterSpec::default()), &[2]);
    let mut seeds = vec![running(&tc, Component::Store, 4)];
    seeds.push(running(&tc, Component::Placement, 1));
    let p = must_pass(tc, seeds, Some(store_view(stores(4, &[(2, "Down")])))).await;
    assert_eq!(p.replicas("basic-store"), Some(4));
    assert!(
        p.drained.is_empty(),
        "a failover pod must not drain a healthy store"
    );
    assert!(p.events().is_empty(), "{:?}", p.events());
}

#[tokio::test]
async fn failover_stops_at_max_failover_count() {
    let mut tc = with_failures(finalized(TikvClusterSpec::default()), &[2]);
    tc.spec.max_failover_count = 1;
    let seeds = vec![running(&tc, Component::Store, 4)];
    let view = store_view(stores(4, &[(2, "Down"), (3, "Down")]));
    let p = must_pass(tc, seeds, Some(view)).await;
    assert_eq!(p.replicas("basic-store"), Some(4));
    assert_eq!(p.status().store.failure_stores.len(), 1);
    assert_eq!(
        p.condition("Degraded"),
        ("True".into(), "FailoverLimitReached".into())
    );
    assert_eq!(p.events(), ["FailoverLimitReached"]);
}

#[tokio::test]
async fn a_recovered_store_lets_its_replacement_go_through_a_drain() {
    // Store 2 is Up again: its record clears and the surplus highest-ordinal store drains.
    let tc = with_failures(finalized(TikvClusterSpec::default()), &[2]);
    let seeds = vec![running(&tc, Component::Store, 4)];
    let p = must_pass(tc, seeds, Some(store_view(stores(4, &[])))).await;
    assert_eq!(p.replicas("basic-store"), Some(4));
    assert_eq!(p.drained, [4]);
    assert_eq!(p.events(), ["StoreRecovered", "DrainingStore"]);
    let status_body = &p.calls.last().unwrap().body["status"];
    assert!(
        status_body["store"]["failureStores"].is_null(),
        "the record is cleared: {status_body}"
    );
    assert_eq!(
        p.condition("Degraded"),
        ("False".into(), "AsExpected".into())
    );
    // Drain done (Tombstone): only now the pod goes.
    let tc = finalized(TikvClusterSpec::default());
    let seeds = vec![running(&tc, Component::Store, 4)];
    let p = must_pass(tc, seeds, Some(store_view(stores(4, &[(4, "Tombstone")])))).await;
    assert_eq!(p.replicas("basic-store"), Some(3));
    assert_eq!(p.events(), ["RemovedDrainedPod"]);
}

fn pvc(name: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": "db"}})
}

/// One pass over a deleted cluster holding two volume claims.
async fn must_delete(policy: crate::crd::PvReclaimPolicy, paused: bool) -> Pass {
    let mut tc = finalized(TikvClusterSpec {
        pv_reclaim_policy: policy,
        paused,
        ..TikvClusterSpec::default()
    });
    tc.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(2_000).unwrap()));
    let claims = ["data-basic-placement-0", "data-basic-store-0"];
    let mut seeds = vec![
        (
            PVC.to_owned(),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {},
                   "items": claims.map(pvc)}),
        ),
        (CRB.to_owned(), json!({})),
    ];
    seeds.extend(claims.map(|c| (format!("{PVC}/{c}"), pvc(c))));
    must_pass(tc, seeds, None).await
}

#[tokio::test]
async fn deletion_deletes_claims_only_under_the_delete_policy_then_drops_the_finalizer() {
    let p = must_delete(crate::crd::PvReclaimPolicy::Delete, false).await;
    assert_eq!(
        shorts(&p.calls),
        [
            "POST db/events",
            "GET db/persistentvolumeclaims",
            "DELETE persistentvolumeclaims/data-basic-placement-0",
            "DELETE persistentvolumeclaims/data-basic-store-0",
            "DELETE clusterrolebindings/tikv-db-basic-placement-topology",
            "PATCH tikvclusters/basic",
        ]
    );
    assert!(
        p.calls[1]
            .query
            .contains("app.kubernetes.io%2Finstance%3Dbasic"),
        "{}",
        p.calls[1].query
    );
    assert_eq!(p.events(), ["Deleting"]);
    // The finalizer comes off by index, after a test that it is still ours.
    let last = p.calls.last().unwrap();
    assert_eq!(last.body, finalizer_removal());

    // Retain (here on a paused cluster: deletion still runs): no claim is touched.
    let p = must_delete(crate::crd::PvReclaimPolicy::Retain, true).await;
    assert_eq!(
        shorts(&p.calls),
        [
            "POST db/events",
            "DELETE clusterrolebindings/tikv-db-basic-placement-topology",
            "PATCH tikvclusters/basic",
        ]
    );
    assert_eq!(p.calls.last().unwrap().body, finalizer_removal());
}

fn finalizer_removal() -> serde_json::Value {
    json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": crate::crd::FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ])
}

#[tokio::test]
async fn without_a_topology_role_no_binding_is_made_or_deleted() {
    let tc = finalized(TikvClusterSpec::default());
    let (client, mock) = MockApiServer::new(&tc);
    let (_, calls) = must_reconcile_as(tc, mock, client, ScriptedPlacement::down(), None).await;
    let applied = shorts(&calls);
    assert!(applied.contains(&"PATCH serviceaccounts/basic-placement".to_owned()));
    assert!(
        !applied.iter().any(|c| c.contains("clusterrolebindings")),
        "{applied:?}"
    );
    let mut tc = finalized(TikvClusterSpec::default());
    tc.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(2_000).unwrap()));
    let (client, mock) = MockApiServer::new(&tc);
    let (_, calls) = must_reconcile_as(tc, mock, client, ScriptedPlacement::down(), None).await;
    assert_eq!(
        shorts(&calls),
        ["POST db/events", "PATCH tikvclusters/basic"]
    );
}

#[tokio::test]
async fn a_finalized_cluster_is_not_patched_again_and_a_deleted_one_without_it_is_left_alone() {
    let tc = finalized(TikvClusterSpec::default());
    let p = must_pass(tc, vec![], None).await;
    assert!(!shorts(&p.calls).contains(&"PATCH tikvclusters/basic".to_owned()));
    let mut tc = cluster(TikvClusterSpec::default());
    tc.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(2_000).unwrap()));
    let p = must_pass(tc, vec![], None).await;
    assert!(p.calls.is_empty(), "{:?}", shorts(&p.calls));
}

fn placement_spec(replicas: i32) -> TikvClusterSpec {
    TikvClusterSpec {
        placement: crate::crd::PlacementSpec {
            replicas,
            ..Default::default()
        },
        ..TikvClusterSpec::default()
    }
}

/// Members 0..n healthy unless in `sick`, led by `leader`.
fn members(n: i32, sick: &[i32], leader: i32) -> PlacementView {
    PlacementView {
        members: (0..n)
            .map(|o| PlacementMember {
                name: format!("basic-placement-{o}"),
                health: !sick.contains(&o),
                ..PlacementMember::default()
            })
            .collect(),
        leader: Some(format!("basic-placement-{leader}")),
        stores: stores(3, &[]),
        fault_tolerance: None,
    }
}

/// A pass of a cluster wanting `want` placement members whose StatefulSet runs `pods`.
async fn must_member_pass(want: i32, pods: i32, view: PlacementView) -> Pass {
    let tc = finalized(placement_spec(want));
    let old = finalized(placement_spec(pods));
    let seeds = vec![running(&old, Component::Placement, pods)];
    must_pass(tc, seeds, Some(view)).await
}

#[tokio::test]
async fn placement_scales_out_one_healthy_member_at_a_time() {
    // 1 -> 3: the second member first; existing pods keep their revision (partition 1).
    let p = must_member_pass(3, 1, members(1, &[], 0)).await;
    assert_eq!(p.replicas("basic-placement"), Some(2));
    assert_eq!(p.partition("basic-placement"), Some(1));
    assert_eq!(p.events(), ["AddingMember"]);
    // Pod 1 runs but has not joined: no third pod yet.
    let p = must_member_pass(3, 2, members(1, &[], 0)).await;
    assert_eq!(p.replicas("basic-placement"), Some(2));
    assert_eq!(
        p.condition("Progressing"),
        ("True".into(), "ScaleOutWaitingForMember".into())
    );
    // Joined but not healthy: still no third pod.
    let p = must_member_pass(3, 2, members(2, &[1], 0)).await;
    assert_eq!(p.replicas("basic-placement"), Some(2));
    // Healthy: the third.
    let p = must_member_pass(3, 2, members(2, &[], 0)).await;
    assert_eq!(p.replicas("basic-placement"), Some(3));
    assert!(p.member_ops.is_empty());
}

#[tokio::test]
async fn placement_scale_in_transfers_leadership_deletes_the_member_then_shrinks() {
    // 3 -> 1, the leader is the highest ordinal: leadership moves to member 0 first.
    let p = must_member_pass(1, 3, members(3, &[], 2)).await;
    assert_eq!(p.member_ops, ["transfer:basic-placement-0"]);
    assert_eq!(p.replicas("basic-placement"), Some(3));
    assert_eq!(
        p.condition("Progressing"),
        ("True".into(), "ScaleInTransferringLeader".into())
    );
    // Not the leader any more: it leaves placement; the pod stays.
    let p = must_member_pass(1, 3, members(3, &[], 0)).await;
    assert_eq!(p.member_ops, ["delete:basic-placement-2"]);
    assert_eq!(p.replicas("basic-placement"), Some(3));
    assert_eq!(p.events(), ["DeletingMember"]);
    // Gone from the member list: now the StatefulSet shrinks by one.
    let p = must_member_pass(1, 3, members(2, &[], 0)).await;
    assert!(p.member_ops.is_empty());
    assert_eq!(p.replicas("basic-placement"), Some(2));
    assert_eq!(p.events(), ["RemovedMember"]);
    // A remaining member unhealthy: nothing leaves.
    let p = must_member_pass(1, 2, members(2, &[0], 0)).await;
    assert!(p.member_ops.is_empty());
    assert_eq!(p.replicas("basic-placement"), Some(2));
}

/// A pass of a 3-member placement at `v2` whose StatefulSet was applied from `version` at
/// `partition`, with `updated` pods on the new revision, all ready.
async fn must_member_upgrade_pass(
    version: &str,
    partition: i32,
    updated: i32,
    leader: i32,
) -> Pass {
    let mut old = finalized(placement_spec(3));
    old.spec.version = version.into();
    let mut sts = builders::stateful_set(&old, Component::Placement, partition).unwrap();
    sts.status = Some(StatefulSetStatus {
        replicas: 3,
        ready_replicas: Some(3),
        updated_replicas: Some(updated),
        ..Default::default()
    });
    let mut tc = old.clone();
    tc.spec.version = "v2".into();
    let seeds = vec![(
        format!("{STS}/basic-placement"),
        serde_json::to_value(&sts).unwrap(),
    )];
    must_pass(tc, seeds, Some(members(3, &[], leader))).await
}

#[tokio::test]
async fn placement_upgrade_moves_leadership_before_each_restart() {
    let p = must_member_upgrade_pass("v1", 0, 3, 2).await;
    assert_eq!(p.partition("basic-placement"), Some(3));
    assert_eq!(
        p.condition("Progressing"),
        ("True".into(), "UpgradeStarting".into())
    );
    // Pod 2 leads: leadership moves away, pod 2 waits.
    let p = must_member_upgrade_pass("v2", 3, 0, 2).await;
    assert_eq!(p.member_ops, ["transfer:basic-placement-1"]);
    assert_eq!(p.partition("basic-placement"), Some(3));
    assert_eq!(p.events(), ["TransferringLeader"]);
    // Pod 2 follows: it restarts.
    let p = must_member_upgrade_pass("v2", 3, 0, 1).await;
    assert!(p.member_ops.is_empty());
    assert_eq!(p.partition("basic-placement"), Some(2));
    assert_eq!(p.events(), ["RestartingPlacementPod"]);
    // Pod 1 leads next: leadership goes to pod 2, which runs the new revision.
    let p = must_member_upgrade_pass("v2", 2, 1, 1).await;
    assert_eq!(p.member_ops, ["transfer:basic-placement-2"]);
    assert_eq!(p.partition("basic-placement"), Some(2));
    // Pod 0 follows: last restart.
    let p = must_member_upgrade_pass("v2", 1, 2, 2).await;
    assert_eq!(p.partition("basic-placement"), Some(0));
    assert!(
        p.evictions.is_empty(),
        "placement has no store leaders to evict"
    );
}

#[tokio::test]
async fn paused_blocks_failover_member_changes_and_the_finalizer() {
    let mut tc = with_failures(cluster(placement_spec(1)), &[]);
    tc.spec.paused = true;
    let old = cluster(placement_spec(3));
    let seeds = vec![
        running(&old, Component::Placement, 3),
        running(&tc, Component::Store, 3),
    ];
    let mut view = members(3, &[], 2);
    view.stores = stores(3, &[(2, "Down")]);
    let p = must_pass(tc, seeds, Some(view)).await;
    assert_eq!(
        shorts(&p.calls),
        [
            "GET statefulsets/basic-placement",
            "GET statefulsets/basic-store",
            "PATCH basic/status"
        ]
    );
    assert!(p.member_ops.is_empty() && p.drained.is_empty());
    assert!(p.status().store.failure_stores.is_empty());
    assert_eq!(
        p.condition("Progressing"),
        ("False".into(), "Paused".into())
    );
}
