//! Store topology labels from Kubernetes, against a MOCKED Kubernetes API server: no real
//! cluster exists here, so [`MockKubeApi`] (a small axum server on loopback) stands in for
//! the API server. It serves only the calls placement makes (get pod, list pods by
//! `status.podIP`, get node) from objects the test seeds and changes, and records the
//! requests. The real `kube::Client` talks to it over HTTP.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use common::*;
use placement::config::{LabelSource, ReadableDuration};
use placement::topology::{
    KubernetesTopology, NamespaceHint, PodLocator, TopologyError, TopologySource,
};
use proto::metapb;
use serde_json::{json, Value};
use testkit::wait;

/// The mocked Kubernetes API server: pods by (namespace, name), nodes by name.
#[derive(Clone, Default)]
struct MockKubeApi {
    objects: Arc<Mutex<Objects>>,
}

#[derive(Default)]
struct Objects {
    pods: BTreeMap<(String, String), Value>,
    nodes: BTreeMap<String, Value>,
    /// `path?query` of every request, in order.
    requests: Vec<String>,
}

type Reply = (StatusCode, Json<Value>);

fn not_found(what: &str) -> Reply {
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("{what} not found"), "reason": "NotFound", "code": 404
        })),
    )
}

impl MockKubeApi {
    /// Seeds or replaces pod `ns/name` with IP `ip`, on `node` (unscheduled if `None`).
    fn put_pod(&self, ns: &str, name: &str, ip: &str, node: Option<&str>, labels: Value) {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"nodeName": node, "containers": []},
            "status": {"podIP": ip, "phase": "Running"}
        });
        self.objects
            .lock()
            .unwrap()
            .pods
            .insert((ns.to_owned(), name.to_owned()), pod);
    }

    fn remove_pod(&self, ns: &str, name: &str) {
        self.objects
            .lock()
            .unwrap()
            .pods
            .remove(&(ns.to_owned(), name.to_owned()));
    }

    fn put_node(&self, name: &str, labels: Value) {
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels}
        });
        self.objects
            .lock()
            .unwrap()
            .nodes
            .insert(name.to_owned(), node);
    }

    fn requests(&self) -> Vec<String> {
        self.objects.lock().unwrap().requests.clone()
    }

    fn record(&self, path: String, query: &BTreeMap<String, String>) {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        self.objects
            .lock()
            .unwrap()
            .requests
            .push(format!("{path}?{}", query.join("&")));
    }

    /// Serves on a free loopback port until the test ends; returns a client for it.
    async fn serve(&self) -> (SocketAddr, kube::Client) {
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
            .route("/api/v1/namespaces/{ns}/pods", get(list_namespaced_pods))
            .route("/api/v1/pods", get(list_all_pods))
            .route("/api/v1/nodes/{name}", get(get_node))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        (addr, kube::Client::try_from(config).unwrap())
    }

    fn list_pods(&self, ns: Option<&str>, query: &BTreeMap<String, String>) -> Reply {
        let ip = query
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("status.podIP="))
            .map(str::to_owned);
        let objects = self.objects.lock().unwrap();
        let items: Vec<Value> = objects
            .pods
            .iter()
            .filter(|((pod_ns, _), _)| ns.is_none_or(|ns| ns == pod_ns.as_str()))
            .filter(|(_, pod)| ip.as_deref().is_none_or(|ip| pod["status"]["podIP"] == ip))
            .map(|(_, pod)| pod.clone())
            .collect();
        (
            StatusCode::OK,
            Json(json!({
                "apiVersion": "v1", "kind": "PodList",
                "metadata": {"resourceVersion": "1"}, "items": items
            })),
        )
    }
}

async fn get_pod(
    State(api): State<MockKubeApi>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Reply {
    api.record(format!("/api/v1/namespaces/{ns}/pods/{name}"), &query);
    let pod = api
        .objects
        .lock()
        .unwrap()
        .pods
        .get(&(ns, name.clone()))
        .cloned();
    match pod {
        Some(pod) => (StatusCode::OK, Json(pod)),
        None => not_found(&format!("pods \"{name}\"")),
    }
}

async fn list_namespaced_pods(
    State(api): State<MockKubeApi>,
    Path(ns): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Reply {
    api.record(format!("/api/v1/namespaces/{ns}/pods"), &query);
    api.list_pods(Some(&ns), &query)
}

async fn list_all_pods(
    State(api): State<MockKubeApi>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Reply {
    api.record("/api/v1/pods".to_owned(), &query);
    api.list_pods(None, &query)
}

async fn get_node(
    State(api): State<MockKubeApi>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Reply {
    api.record(format!("/api/v1/nodes/{name}"), &query);
    let node = api.objects.lock().unwrap().nodes.get(&name).cloned();
    match node {
        Some(node) => (StatusCode::OK, Json(node)),
        None => not_found(&format!("nodes \"{name}\"")),
    }
}

/// Node labels as the cloud provider and kubelet set them.
fn node_labels(region: &str, zone: &str, hostname: &str) -> Value {
    json!({
        "topology.kubernetes.io/region": region,
        "topology.kubernetes.io/zone": zone,
        "kubernetes.io/hostname": hostname,
        "kubernetes.io/os": "linux",
    })
}

fn labels_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn store_at(id: u64, address: &str) -> metapb::Store {
    metapb::Store {
        id,
        address: address.to_owned(),
        version: "8.5.0".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn kubernetes_topology_reads_pods_and_nodes_from_the_mocked_api() {
    init_logging();
    let api = MockKubeApi::default();
    api.put_node("node-a", node_labels("r1", "z1", "host-a"));
    api.put_pod(
        "db",
        "s-0",
        "10.0.0.10",
        Some("node-a"),
        json!({"app": "store"}),
    );
    // Its pod carries its own zone: that overrides the node's.
    api.put_pod(
        "db",
        "s-1",
        "10.0.0.11",
        Some("node-a"),
        json!({"topology.kubernetes.io/zone": "z-pod"}),
    );
    // A node without topology labels: the host is the node name.
    api.put_node("bare", json!({}));
    api.put_pod("other", "s-2", "10.0.0.12", Some("bare"), json!({}));
    api.put_pod("db", "lost", "10.0.0.13", Some("gone-node"), json!({}));
    let (_, client) = api.serve().await;
    let k8s = KubernetesTopology::new(client.clone(), NamespaceHint::default());

    let found = k8s
        .lookup(&store_at(1, "s-0.store-peer.db.svc:20160"))
        .await
        .unwrap()
        .expect("pod s-0 exists");
    assert_eq!(found.pod, "db/s-0");
    assert_eq!(found.node.as_deref(), Some("node-a"));
    assert_eq!(
        found.labels,
        labels_of(&[("region", "r1"), ("zone", "z1"), ("host", "host-a")])
    );

    let found = k8s
        .lookup(&store_at(2, "s-1.store-peer.db.svc.cluster.local:20160"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.labels,
        labels_of(&[("region", "r1"), ("zone", "z-pod"), ("host", "host-a")])
    );

    // By IP, across namespaces (no namespace configured or in the address).
    let found = k8s
        .lookup(&store_at(3, "10.0.0.12:20160"))
        .await
        .unwrap()
        .expect("pod with IP 10.0.0.12");
    assert_eq!(found.pod, "other/s-2");
    assert_eq!(found.labels, labels_of(&[("host", "bare")]));
    assert!(
        api.requests().iter().any(|r| r.starts_with("/api/v1/pods?")
            && r.contains("fieldSelector=status.podIP=10.0.0.12")),
        "{:?}",
        api.requests()
    );

    // By IP in the configured namespace, where that IP has no pod.
    let scoped = KubernetesTopology::new(
        client,
        NamespaceHint {
            configured: Some("db".into()),
            own: None,
        },
    );
    assert_eq!(
        scoped
            .lookup_pod(&PodLocator::ByIp {
                namespace: Some("db".into()),
                ip: "10.0.0.12".parse().unwrap(),
            })
            .await
            .unwrap(),
        None
    );

    // A missing pod is not an error; a missing node is.
    assert_eq!(
        k8s.lookup(&store_at(4, "nope.store-peer.db.svc:20160"))
            .await
            .unwrap(),
        None
    );
    let err = k8s
        .lookup(&store_at(5, "lost.store-peer.db.svc:20160"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TopologyError::NodeNotFound { node, .. } if node == "gone-node"),
        "{err}"
    );
    // An address that names no pod fails before any request.
    let before = api.requests().len();
    let err = k8s
        .lookup(&store_at(6, "localhost:20160"))
        .await
        .unwrap_err();
    assert!(matches!(err, TopologyError::BadAddress { .. }), "{err}");
    assert_eq!(api.requests().len(), before);
}

/// Bootstraps the cluster with `first` as store 1, as a store would.
async fn bootstrap_with(pd: &mut TestPd, first: metapb::Store) {
    let whole = region(100, b"", b"", 1, &[peer(101, first.id)]);
    pd.must_bootstrap(first.clone(), whole).await;
    pd.must_put_store(first).await;
}

/// Store labels by store id, as `GET /pd/api/v1/stores` shows them.
async fn http_store_labels(base: &str) -> BTreeMap<u64, BTreeMap<String, String>> {
    let stores: Value = reqwest::get(format!("{base}/pd/api/v1/stores"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stores["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["store"]["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["key"].as_str().unwrap().to_owned(),
                        l["value"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (s["store"]["id"].as_u64().unwrap(), labels)
        })
        .collect()
}

/// Waits until `GET /pd/api/v1/stores` shows `want` for store `id` (10 s at most).
async fn wait_for_labels(base: &str, id: u64, want: &[(&str, &str)]) {
    let want = labels_of(want);
    wait::for_(format!("store {id} labels {want:?}"))
        .within(Duration::from_secs(10))
        .until_async(|| {
            let want = want.clone();
            async move { http_store_labels(base).await.get(&id) == Some(&want) }
        })
        .await;
}

#[tokio::test]
async fn sync_loop_labels_stores_of_an_in_process_placement() {
    init_logging();
    let api = MockKubeApi::default();
    api.put_node("node-a", node_labels("r1", "z1", "host-a"));
    api.put_node("node-b", node_labels("r1", "z2", "host-b"));
    api.put_pod("db", "s-1", "10.0.0.1", Some("node-a"), json!({}));
    api.put_pod("db", "s-2", "10.0.0.2", Some("node-b"), json!({}));
    api.put_pod("db", "s-3", "10.0.0.3", Some("node-b"), json!({}));
    let (_, client) = api.serve().await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.topology.source = LabelSource::Kubernetes;
    config.topology.refresh_interval = ReadableDuration(Duration::from_secs(1));
    let source = KubernetesTopology::new(client, NamespaceHint::from_config("db"));
    let server = placement::server::start_with_topology(
        config,
        Some(Arc::new(source) as Arc<dyn TopologySource>),
    )
    .await
    .unwrap();
    let base = server.url();
    let mut pd = TestPd::connect(&server).await;

    // Store 1 advertises its pod DNS name; store 2 an IP; store 3 sets its own zone.
    bootstrap_with(&mut pd, store_at(1, "s-1.store-peer.db.svc:20160")).await;
    pd.must_put_store(store_at(2, "10.0.0.2:20160")).await;
    let mut own = store_at(3, "s-3.store-peer.db.svc:20160");
    own.labels = vec![metapb::StoreLabel {
        key: "zone".into(),
        value: "rack-7".into(),
    }];
    pd.must_put_store(own.clone()).await;

    wait_for_labels(
        &base,
        1,
        &[("region", "r1"), ("zone", "z1"), ("host", "host-a")],
    )
    .await;
    wait_for_labels(
        &base,
        2,
        &[("region", "r1"), ("zone", "z2"), ("host", "host-b")],
    )
    .await;
    // The store's own zone wins; region and host are filled in.
    wait_for_labels(
        &base,
        3,
        &[("zone", "rack-7"), ("region", "r1"), ("host", "host-b")],
    )
    .await;

    // Store 1's pod is rescheduled onto node-b: the next round replaces its derived labels.
    let metrics = &server.state().metrics;
    let updates = metrics.topology_label_updates.get();
    api.put_pod("db", "s-1", "10.0.0.1", Some("node-b"), json!({}));
    wait_for_labels(
        &base,
        1,
        &[("region", "r1"), ("zone", "z2"), ("host", "host-b")],
    )
    .await;
    wait::for_("the move counted")
        .within(Duration::from_secs(10))
        .until_async(|| async move { metrics.topology_label_updates.get() > updates })
        .await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let rendered: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("placement_topology_label_updates_total "))
        .expect("label updates are exported")
        .parse()
        .unwrap();
    assert!(rendered > updates, "{rendered} updates after {updates}");

    // Store 3 restarts and registers again with only its own labels: they are filled again.
    pd.must_put_store(own).await;
    wait_for_labels(
        &base,
        3,
        &[("zone", "rack-7"), ("region", "r1"), ("host", "host-b")],
    )
    .await;

    // Store 2's pod disappears: two more rounds find nothing and leave its labels alone.
    api.remove_pod("db", "s-2");
    let seen = metrics.topology_lookups("not_found");
    wait::for_("two rounds without store 2's pod")
        .within(Duration::from_secs(10))
        .until_async(|| async move { metrics.topology_lookups("not_found") >= seen + 2 })
        .await;
    assert_eq!(
        http_store_labels(&base).await[&2],
        labels_of(&[("region", "r1"), ("zone", "z2"), ("host", "host-b")])
    );
    server.stop().await.unwrap();
}
