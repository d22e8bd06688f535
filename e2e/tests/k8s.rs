//! The operator on a real Kubernetes control plane, built from the official sources.
//!
//! `e2e::k8s` builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (v1.36.3),
//! etcd 3.6 and helm 4 once from the Go module proxy and runs the control plane as processes,
//! RBAC on; node agents (a test fixture) register six Nodes over three zones (two hosts each)
//! and run the pods bound to them as processes in network namespaces. The user path, in order,
//! each step waiting on conditions with a deadline and printing how long it took:
//!
//! 1. `helm install` of `charts/tikv-operator` with the real helm CLI: the API server accepts the
//!    CRD (structural schema, CEL rules within their cost budget), and the operator's Deployment
//!    becomes available: its pod runs with the chart's ServiceAccount (a projected, pod-bound
//!    token) and RBAC, never as admin, so a missing verb fails the run;
//! 2. invalid TikvClusters are refused by the API server with the CRD's messages;
//! 3. `manifests/tikvcluster-minimal.yaml` becomes Ready (status, printer columns); placement
//!    labels every store with its Node's zone and host, read from the Nodes; a client pod
//!    (`kvcheck`, the official Rust client) writes and reads through the client Service;
//! 4. stores scale 3 → 5 → 3 under a client pod's write load (`kvload`): each removed store is
//!    Tombstone in placement before its pod goes, no acknowledged write is lost, and the
//!    operator's pod, deleted while a store drains, comes back and finishes the same scale-in;
//! 5. a deleted store pod comes back with its data (the same store id, no new store); a node
//!    whose agent crashes (its pods' processes die) goes NotReady, after `failoverPeriod` a
//!    replacement store pod appears and regions are re-replicated off the lost store; when the
//!    node returns its store comes back and the extra store leaves through a drain;
//! 6. placement members 1 → 3, a rolling upgrade of every component to a new tag, members
//!    3 → 1, under a load that also takes TSO timestamps: no write lost, no timestamp going
//!    back, the longest write pause within [`WRITE_PAUSE_BOUND`];
//! 7. deleting the TikvCluster runs the operator's finalizer; its volume claims stay under
//!    `pvReclaimPolicy: Retain`;
//! 8. `manifests/tikvcluster-zones.yaml` (six stores, three members, isolation by zone,
//!    storage class `fast-ssd` served by the fixture provisioner) becomes Ready with every
//!    region holding one replica per zone; deleted under `pvReclaimPolicy: Delete`, its claims
//!    go.
//!
//! A failing run keeps its directory (control-plane logs, every pod's log under `nodes/pods/`)
//! and prints where it is. The operator's log must hold no `forbidden`. Without Go, or where network namespaces cannot
//! be made (not root), the test prints `SKIPPED` and passes (fails under
//! `FERROKV_REQUIRE_TOOLS=1`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::docker::repo_root;
use e2e::k8s::{tools, ControlPlane, KubeCluster};
use e2e::pd_api::PdHttp;
use e2e::process::Binaries;
use e2e::testing::skip;
use e2e::{wait_for, with_deadline};
use serde_json::{json, Value};

const NAMESPACE: &str = "tikv-operator-system";
const RELEASE: &str = "tikv-operator";
const DB: &str = "db";
const NODES: [(&str, &str); 6] = [
    ("node-a1", "zone-a"),
    ("node-a2", "zone-a"),
    ("node-b1", "zone-b"),
    ("node-b2", "zone-b"),
    ("node-c1", "zone-c"),
    ("node-c2", "zone-c"),
];
const STEP: Duration = Duration::from_secs(300);
/// The longest a client's writes may stall through placement membership changes and a rolling
/// upgrade (leaders are moved off each store before its restart; a placement leader change
/// takes an election).
const WRITE_PAUSE_BOUND: Duration = Duration::from_secs(15);
/// The whole run, the control plane's start included.
const TEST_LIMIT: Duration = Duration::from_secs(1500);

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `kubectl get <args> -o json`.
async fn get(plane: &ControlPlane, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    plane.kubectl(&all).await.map(|t| parse(&t))
}

/// Applies `spec` as TikvCluster `bad` and returns the API server's refusal.
async fn refused(plane: &ControlPlane, spec: &str) -> String {
    let manifest = format!(
        "apiVersion: tikv.ferrokv.io/v1alpha1\nkind: TikvCluster\nmetadata:\n  name: bad\n  \
         namespace: {DB}\nspec:\n{spec}"
    );
    match plane.apply(&manifest).await {
        Ok(out) => panic!("the API server accepted an invalid TikvCluster:\n{manifest}\n{out}"),
        Err(e) => e,
    }
}

/// A client pod running one of this workspace's binaries (the agent resolves the command).
fn client_pod(name: &str, command: &[&str]) -> String {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": DB},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 60,
            "containers": [{"name": name, "image": format!("ghcr.io/ferrokv/{name}:e2e"), "command": command}],
        },
    })
    .to_string()
}

struct Run {
    cluster: KubeCluster,
    http: PdHttp,
}

impl Run {
    fn plane(&self) -> &ControlPlane {
        self.cluster.plane()
    }

    fn logs(&self) -> String {
        format!(
            "{}{}{}",
            self.cluster.pod_logs("basic", 25),
            self.cluster.pod_logs("prod", 15),
            self.cluster.pod_logs(RELEASE, 25)
        )
    }

    /// Waits until TikvCluster `name` (in namespace `db`) is Ready with `stores` ready stores.
    async fn wait_ready(&self, name: &str, stores: u64) -> Value {
        self.wait_ready_in(DB, name, stores).await
    }

    /// Waits until TikvCluster `name` is Ready with `members` ready placement members.
    async fn wait_placement(&self, name: &str, members: u64) {
        wait_for(
            &format!("TikvCluster {name} with {members} ready placement members"),
            STEP,
            || async {
                let tc = get(self.plane(), &["tikvcluster", name, "-n", DB]).await?;
                let status = &tc["status"];
                let ready = status["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                if ready && status["placement"]["readyReplicas"] == members {
                    let pods = self
                        .plane()
                        .kubectl(&[
                            "get",
                            "pods",
                            "-n",
                            DB,
                            "-l",
                            "app.kubernetes.io/component=placement",
                            "-o",
                            "name",
                        ])
                        .await?;
                    if pods.lines().count() == usize::try_from(members).unwrap_or(0) {
                        return Ok(());
                    }
                    return Err(format!("placement pods: {pods}"));
                }
                Err(status.to_string())
            },
            || self.logs(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits until TikvCluster `namespace/name` is Ready with `stores` ready stores.
    async fn wait_ready_in(&self, namespace: &str, name: &str, stores: u64) -> Value {
        let what = format!("TikvCluster {namespace}/{name} Ready with {stores} stores");
        wait_for(
            &what,
            STEP,
            || async {
                let tc = get(self.plane(), &["tikvcluster", name, "-n", namespace]).await?;
                let ready = tc["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                // Ready for the spec as it is now, not for the one before the last change.
                let observed = tc["status"]["observedGeneration"] == tc["metadata"]["generation"];
                if ready && observed && tc["status"]["store"]["readyReplicas"] == stores {
                    Ok(tc)
                } else {
                    Err(tc["status"].to_string())
                }
            },
            || self.logs(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `ip:2379` of placement pod 0 of cluster `name`, reached over the pod network.
    async fn placement(&self, name: &str) -> String {
        self.placement_in(DB, name).await
    }

    async fn placement_in(&self, namespace: &str, name: &str) -> String {
        let pod = get(
            self.plane(),
            &["pod", &format!("{name}-placement-0"), "-n", namespace],
        )
        .await
        .unwrap();
        format!(
            "{}:2379",
            pod["status"]["podIP"].as_str().expect("a pod IP")
        )
    }

    /// Placement's stores: address → (id, state, labels).
    async fn stores(
        &self,
        pd: &str,
    ) -> Result<BTreeMap<String, (u64, String, BTreeMap<String, String>)>, String> {
        let infos = self.http.all_store_infos(pd).await?;
        Ok(infos
            .into_iter()
            .map(|s| {
                let labels = s
                    .store
                    .labels
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect();
                (
                    s.store.address.clone(),
                    (s.store.id, s.store.state_name.clone(), labels),
                )
            })
            .collect())
    }

    /// Waits for a client pod to finish; its phase.
    async fn finished(&self, name: &str, limit: Duration) -> String {
        wait_for(
            &format!("client pod {name} to finish"),
            limit,
            || async {
                let pod = get(self.plane(), &["pod", name, "-n", DB]).await?;
                match pod["status"]["phase"].as_str() {
                    Some(p @ ("Succeeded" | "Failed")) => Ok(p.to_owned()),
                    other => Err(format!("phase {other:?}")),
                }
            },
            || self.cluster.pod_log(DB, name, name),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until `kubectl <args>` (a `get ... -o name`) lists nothing.
    async fn wait_none(&self, what: &str, args: &[&str]) {
        let listed = || async {
            let left = self.plane().kubectl(args).await?;
            if left.is_empty() {
                Ok(())
            } else {
                Err(left)
            }
        };
        wait_for(what, STEP, listed, || self.logs())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `kubectl patch tikvcluster <name> -n <namespace> --type=merge -p <patch>`.
    async fn patch(&self, namespace: &str, name: &str, patch: &str) {
        let args = [
            "patch",
            "tikvcluster",
            name,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            patch,
        ];
        self.plane()
            .kubectl(&args)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts client pod `name` writing keys `<prefix>-<n>` through the client Service of
    /// cluster `basic` (and taking TSO timestamps with `tso`); [`Run::stop_load`] ends it.
    async fn start_load(&self, name: &str, prefix: &str, tso: bool) {
        let prefix = format!("--prefix={prefix}");
        let mut command = vec![
            "/usr/local/bin/kvload",
            "--pd=http://basic-placement.db.svc:2379",
            &prefix,
        ];
        if tso {
            command.push("--tso");
        }
        self.plane()
            .apply(&client_pod(name, &command))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Deletes load pod `name` (SIGTERM: it stops, reads every acknowledged key back) and
    /// returns its summary.
    async fn stop_load(&self, name: &str) -> Value {
        self.plane()
            .kubectl(&["delete", "pod", name, "-n", DB, "--wait=false"])
            .await
            .unwrap();
        let summary = wait_for(
            &format!("{name}'s summary"),
            Duration::from_secs(90),
            || async {
                let log = self.cluster.pod_log(DB, name, name);
                log.lines()
                    .find_map(|l| {
                        l.strip_prefix("kvload: {")
                            .map(|rest| parse(&format!("{{{rest}")))
                    })
                    .ok_or_else(|| log.lines().last().unwrap_or_default().to_owned())
            },
            || self.cluster.pod_log(DB, name, name),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        println!("{name}: {summary}");
        summary
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_user_path_on_a_real_control_plane() {
    e2e::init_test_tracing();
    const TEST: &str = "the_user_path_on_a_real_control_plane";
    if let Some(reason) = tools::unavailable().await {
        skip(TEST, &reason);
        return;
    }
    if let Some(reason) = tokio::task::spawn_blocking(e2e::netns::skip_reason)
        .await
        .unwrap()
    {
        skip(TEST, &reason);
        return;
    }
    let started = Instant::now();
    let tools = tools::build()
        .await
        .unwrap_or_else(|e| panic!("building the control plane failed: {e}"));
    println!(
        "control plane binaries: {} ({:?})",
        tools.dir().display(),
        started.elapsed()
    );
    // Kept when the test fails (every pod's log is under `nodes/pods/`), removed when it passes.
    let dir = tempfile::Builder::new()
        .prefix("k8s-")
        .tempdir()
        .unwrap()
        .keep();
    println!("cluster files (kept if the test fails): {}", dir.display());
    let bin_dir = Binaries::other("operator")
        .expect("cargo build --workspace --bins")
        .parent()
        .unwrap()
        .to_path_buf();
    let started = Instant::now();
    let cluster = KubeCluster::start(&tools, &dir, bin_dir, &NODES)
        .await
        .unwrap_or_else(|e| panic!("the cluster did not start: {e}"));
    println!(
        "control plane and {} nodes Ready: {:?}",
        NODES.len(),
        started.elapsed()
    );
    let run = Run {
        cluster,
        http: PdHttp::default(),
    };
    with_deadline(TEST_LIMIT, user_path(&run)).await;
    let operator_log = run.cluster.pod_logs(RELEASE, 100_000);
    let forbidden: Vec<&str> = operator_log
        .lines()
        .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
        .collect();
    assert!(
        forbidden.is_empty(),
        "the chart's RBAC refused the operator:\n{}",
        forbidden.join("\n")
    );
    run.cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn user_path(run: &Run) {
    let plane = run.plane();
    let version = parse(&plane.kubectl(&["version", "-o", "json"]).await.unwrap());
    assert_eq!(
        version["serverVersion"]["gitVersion"],
        tools::KUBERNETES_VERSION
    );

    // 1. helm install: the CRD is established, the operator's pod becomes ready.
    let step = Instant::now();
    let chart = repo_root().join("charts/tikv-operator");
    let out = plane
        .helm(&[
            "install",
            RELEASE,
            &chart.display().to_string(),
            "-n",
            NAMESPACE,
            "--create-namespace",
        ])
        .await
        .unwrap_or_else(|e| panic!("helm install failed: {e}\n{}", plane.logs()));
    assert!(out.contains("STATUS: deployed"), "{out}");
    plane
        .kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/tikvclusters.tikv.ferrokv.io",
            "--timeout=60s",
        ])
        .await
        .unwrap();
    plane
        .kubectl(&[
            "rollout",
            "status",
            "deployment",
            RELEASE,
            "-n",
            NAMESPACE,
            "--timeout=120s",
        ])
        .await
        .unwrap_or_else(|e| panic!("the operator did not become ready: {e}\n{}", run.logs()));
    let operator = get(
        plane,
        &[
            "pods",
            "-n",
            NAMESPACE,
            "-l",
            "app.kubernetes.io/name=tikv-operator",
        ],
    )
    .await
    .unwrap();
    let account = operator["items"][0]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!account.is_empty() && account != "default", "{operator}");
    println!(
        "step 1, helm install and operator ready (as serviceaccount {account}): {:?}",
        step.elapsed()
    );

    // 2. Invalid TikvClusters are refused with the CRD's messages.
    let step = Instant::now();
    plane.kubectl(&["create", "namespace", DB]).await.unwrap();
    let cel = refused(plane, "  maxReplicas: 3\n  store:\n    replicas: 2\n").await;
    assert!(
        cel.contains("store.replicas must be at least maxReplicas"),
        "{cel}"
    );
    let level = refused(
        plane,
        "  topology:\n    locationLabels: [zone, host]\n    isolationLevel: rack\n",
    )
    .await;
    assert!(
        level.contains("isolationLevel must be one of locationLabels"),
        "{level}"
    );
    let minimum = refused(plane, "  store:\n    replicas: 0\n").await;
    assert!(
        minimum.contains("spec.store.replicas") && minimum.contains("greater than or equal to 1"),
        "{minimum}"
    );
    let duration = refused(plane, "  failoverPeriod: soon\n").await;
    assert!(duration.contains("spec.failoverPeriod"), "{duration}");
    let unknown = refused(plane, "  stores: 3\n").await;
    assert!(unknown.contains("stores"), "{unknown}");
    let fixed = "apiVersion: tikv.ferrokv.io/v1alpha1\nkind: TikvCluster\nmetadata:\n  name: classy\n  \
                 namespace: db\nspec:\n  paused: true\n  store:\n    storage:\n      storageClassName: fast\n";
    plane.apply(fixed).await.unwrap();
    let changed = plane
        .apply(&fixed.replace("storageClassName: fast", "storageClassName: slow"))
        .await
        .expect_err("a storage class change must be refused");
    assert!(
        changed.contains("storageClassName cannot change once set"),
        "{changed}"
    );
    plane
        .kubectl(&["delete", "tikvcluster", "classy", "-n", DB, "--timeout=60s"])
        .await
        .unwrap();
    println!("step 2, invalid clusters refused: {:?}", step.elapsed());

    // 3. The minimal cluster becomes Ready; stores carry their Nodes' topology; a client pod
    //    writes and reads.
    let step = Instant::now();
    let minimal = repo_root().join("manifests/tikvcluster-minimal.yaml");
    plane
        .kubectl(&["apply", "-n", DB, "-f", &minimal.display().to_string()])
        .await
        .unwrap();
    let tc = run.wait_ready("basic", 3).await;
    assert!(
        tc["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "{tc}"
    );
    let table = plane
        .kubectl(&["get", "tikvclusters", "-n", DB])
        .await
        .unwrap();
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "PLACEMENT", "STORES", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["basic", "True", "1", "3"], "{table}");
    let pd = run.placement("basic").await;
    let pods = get(
        plane,
        &["pods", "-n", DB, "-l", "app.kubernetes.io/component=store"],
    )
    .await
    .unwrap();
    let node_of: BTreeMap<String, String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    wait_for(
        "placement to label every store with its node's zone and host",
        Duration::from_secs(90),
        || async {
            let stores = run.stores(&pd).await?;
            for (pod, node) in &node_of {
                let zone = NODES.iter().find(|(n, _)| n == node).map(|(_, z)| *z);
                let address = format!("{pod}.basic-store-peer.db.svc:20160");
                let Some((_, state, labels)) = stores.get(&address) else {
                    return Err(format!("{address} not in {stores:?}"));
                };
                let (got_zone, got_host) =
                    (labels.get("zone").map(String::as_str), labels.get("host"));
                if state != "Up" || got_zone != zone || got_host != Some(node) {
                    return Err(format!("{address} on {node}: {state}, labels {labels:?}"));
                }
            }
            Ok(())
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    plane
        .apply(&client_pod(
            "kvcheck",
            &[
                "/usr/local/bin/kvcheck",
                "--pd=http://basic-placement.db.svc:2379",
                "--timeout-secs=100",
            ],
        ))
        .await
        .unwrap();
    let phase = run.finished("kvcheck", Duration::from_secs(150)).await;
    assert_eq!(
        phase,
        "Succeeded",
        "{}",
        run.cluster.pod_log(DB, "kvcheck", "kvcheck")
    );
    println!("step 3, minimal cluster Ready, stores labelled by their nodes, client pod wrote and read: {:?}", step.elapsed());

    // 4. Scale 3 -> 5 -> 3 under a write load; a store is Tombstone before its pod goes.
    let step = Instant::now();
    run.start_load("kvload", "scale", false).await;
    let patch = |n: u32| format!("{{\"spec\":{{\"store\":{{\"replicas\":{n}}}}}}}");
    run.patch(DB, "basic", &patch(5)).await;
    run.wait_ready("basic", 5).await;
    let up = run.stores(&pd).await.unwrap();
    assert_eq!(
        up.values().filter(|(_, s, _)| s == "Up").count(),
        5,
        "{up:?}"
    );
    println!("step 4a, scaled out to 5 stores: {:?}", step.elapsed());
    run.patch(DB, "basic", &patch(3)).await;
    let leaving = ["basic-store-3", "basic-store-4"];
    let mut last_state: BTreeMap<&str, String> = BTreeMap::new();
    let deadline = Instant::now() + STEP;
    let mut operator_restarted = false;
    loop {
        assert!(
            Instant::now() < deadline,
            "scale-in did not finish: {last_state:?}\n{}",
            run.logs()
        );
        let pods = get(plane, &["pods", "-n", DB])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let present: Vec<(String, bool)> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    p["metadata"]["deletionTimestamp"].is_null(),
                )
            })
            .collect();
        if let Ok(stores) = run.stores(&pd).await {
            for pod in leaving {
                if let Some((_, state, _)) =
                    stores.get(&format!("{pod}.basic-store-peer.db.svc:20160"))
                {
                    last_state.insert(pod, state.clone());
                }
            }
        }
        // The operator restarted in the middle of the scale-in resumes the same step.
        if !operator_restarted && last_state.values().any(|s| s == "Offline") {
            plane
                .kubectl(&[
                    "delete",
                    "pod",
                    "-n",
                    NAMESPACE,
                    "-l",
                    "app.kubernetes.io/name=tikv-operator",
                    "--wait=false",
                ])
                .await
                .unwrap();
            operator_restarted = true;
            println!("step 4b, operator pod deleted while a store drains: {last_state:?}");
        }
        for pod in leaving {
            let running = present.iter().any(|(name, live)| name == pod && *live);
            let state = last_state.get(pod).map_or("never seen", String::as_str);
            assert!(
                running || state == "Tombstone",
                "{pod} went while its store was {state}"
            );
        }
        let gone = leaving
            .iter()
            .all(|pod| !present.iter().any(|(name, _)| name == pod));
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.wait_ready("basic", 3).await;
    assert!(
        operator_restarted,
        "the drain was never seen in progress: {last_state:?}"
    );
    let summary = run.stop_load("kvload").await;
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["unverified"], 0, "{summary}");
    assert!(summary["acked"].as_u64().unwrap_or(0) > 0, "{summary}");
    println!(
        "step 4, scaled 3 -> 5 -> 3 under load ({} writes acknowledged, none lost, longest pause {} ms): {:?}",
        summary["acked"], summary["longest_pause_ms"], step.elapsed()
    );

    // 5. A deleted store pod comes back with its data: the same store, no new one.
    let step = Instant::now();
    let address = "basic-store-1.basic-store-peer.db.svc:20160";
    let before = run.stores(&pd).await.unwrap();
    let (id, _, _) = before[address].clone();
    let old = get(plane, &["pod", "basic-store-1", "-n", DB])
        .await
        .unwrap();
    plane
        .kubectl(&["delete", "pod", "basic-store-1", "-n", DB, "--timeout=90s"])
        .await
        .unwrap();
    wait_for(
        "basic-store-1 back, Ready, as the same store",
        STEP,
        || async {
            let pod = get(plane, &["pod", "basic-store-1", "-n", DB]).await?;
            if pod["metadata"]["uid"] == old["metadata"]["uid"] {
                return Err("the old pod is still there".into());
            }
            let ready = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let stores = run.stores(&pd).await?;
            match stores.get(address) {
                Some((now, state, _)) if ready && *now == id && state == "Up" => Ok(()),
                other => Err(format!("ready {ready}, placement has {other:?}")),
            }
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let after = run.stores(&pd).await.unwrap();
    let new_ids: Vec<u64> = after
        .values()
        .map(|(id, _, _)| *id)
        .filter(|id| !before.values().any(|(b, _, _)| b == id))
        .collect();
    assert!(new_ids.is_empty(), "a new store registered: {after:?}");
    run.wait_ready("basic", 3).await;
    println!(
        "step 5, deleted store pod back with its data (store {id}): {:?}",
        step.elapsed()
    );

    // 5b. A node fails: it goes NotReady, after failoverPeriod a replacement store appears and
    //     regions are re-replicated off the lost store; the node returns, its store comes
    //     back, and the extra store leaves through a drain.
    let step = Instant::now();
    let tuned = r#"{"spec":{"failoverPeriod":"15s","placement":{"config":"max-store-down-time = \"30s\"\n"}}}"#;
    run.patch(DB, "basic", tuned).await;
    run.wait_ready("basic", 3).await;
    // The new placement config restarts the placement pod, which may come back on another
    // address: ask for it again once the rollout is done.
    plane
        .kubectl(&[
            "rollout",
            "status",
            "statefulset/basic-placement",
            "-n",
            DB,
            "--timeout=300s",
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run.logs()));
    run.wait_ready("basic", 3).await;
    let pd = run.placement("basic").await;
    let pods = get(plane, &["pods", "-A"]).await.unwrap();
    let mut busy = Vec::new();
    let mut store_nodes = Vec::new();
    for p in pods["items"].as_array().into_iter().flatten() {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        let node = p["spec"]["nodeName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.starts_with("basic-store-") {
            store_nodes.push((name.to_owned(), node));
        } else if p["status"]["phase"] == "Running" {
            busy.push(node);
        }
    }
    let (victim_pod, victim_node) = store_nodes
        .iter()
        .find(|(_, node)| !busy.contains(node))
        .cloned()
        .unwrap_or_else(|| panic!("no store alone on its node: {store_nodes:?}, busy {busy:?}"));
    let zone = NODES
        .iter()
        .find(|(n, _)| *n == victim_node)
        .map(|(_, z)| *z)
        .unwrap();
    let victim_address = format!("{victim_pod}.basic-store-peer.db.svc:20160");
    let (victim_id, _, _) = run.stores(&pd).await.unwrap()[&victim_address].clone();
    run.cluster.crash_node(&victim_node).await;
    println!("step 5b, node {victim_node} ({zone}) crashed with {victim_pod} (store {victim_id})");
    wait_for(
        &format!("node {victim_node} NotReady"),
        STEP,
        || async {
            let node = get(plane, &["node", &victim_node]).await?;
            let ready = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"].as_str().unwrap_or_default().to_owned());
            if ready.as_deref() == Some("True") {
                Err(format!("Ready={ready:?}"))
            } else {
                Ok(())
            }
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!("step 5b, node NotReady: {:?}", step.elapsed());
    let replacement = "basic-store-3.basic-store-peer.db.svc:20160";
    wait_for(
        "a replacement store Up and every region re-replicated off the lost store",
        STEP,
        || async {
            let stores = run.stores(&pd).await?;
            match stores.get(replacement) {
                Some((_, state, _)) if state == "Up" => {}
                other => return Err(format!("replacement: {other:?}")),
            }
            let regions = run.http.regions(&pd).await?;
            let stuck: Vec<u64> = regions
                .iter()
                .filter(|r| r.peers.len() != 3 || r.peers.iter().any(|p| p.store_id == victim_id))
                .map(|r| r.id)
                .collect();
            if stuck.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "regions still on store {victim_id} or short: {stuck:?}"
                ))
            }
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "step 5b, replacement store Up, regions re-replicated: {:?}",
        step.elapsed()
    );
    run.cluster.add_node(&victim_node, zone).await.unwrap();
    wait_for(
        "the returned store Up and the extra store drained to Tombstone and gone",
        STEP,
        || async {
            let stores = run.stores(&pd).await?;
            let back = stores.get(&victim_address).is_some_and(|(id, s, _)| *id == victim_id && s == "Up");
            let extra = stores.get(replacement).map(|(_, s, _)| s.clone());
            let pod = plane.kubectl(&["get", "pod", "basic-store-3", "-n", DB, "-o", "name"]).await;
            let extra_gone = pod.is_err() || pod.as_deref() == Ok("");
            if back && extra_gone && extra.as_deref().is_none_or(|s| s == "Tombstone") {
                Ok(())
            } else {
                Err(format!("store {victim_id} back: {back}; extra store {extra:?}, its pod gone: {extra_gone}"))
            }
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    run.wait_ready("basic", 3).await;
    println!(
        "step 5b, node failure: NotReady, replacement, re-replication, return and drain of the extra store: {:?}",
        step.elapsed()
    );

    // 6. Placement members 1 -> 3, a rolling upgrade of every component, members 3 -> 1, under
    //    a write load that also takes timestamps: none lost, TSO never goes back.
    let step = Instant::now();
    run.start_load("kvload-tso", "members", true).await;
    let members = |n: u32| format!("{{\"spec\":{{\"placement\":{{\"replicas\":{n}}}}}}}");
    run.patch(DB, "basic", &members(3)).await;
    run.wait_placement("basic", 3).await;
    println!(
        "step 6a, placement scaled to 3 members: {:?}",
        step.elapsed()
    );
    let upgrade = Instant::now();
    run.patch(DB, "basic", r#"{"spec":{"version":"v0.1.1"}}"#)
        .await;
    wait_for(
        "every pod of basic on v0.1.1 and Ready",
        STEP,
        || async {
            let pods = get(
                plane,
                &["pods", "-n", DB, "-l", "app.kubernetes.io/instance=basic"],
            )
            .await?;
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            let stale: Vec<String> = items
                .iter()
                .filter(|p| {
                    let image = p["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default();
                    let ready = p["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True");
                    !image.ends_with(":v0.1.1") || !ready
                })
                .map(|p| {
                    p["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect();
            if items.len() == 6 && stale.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} pods, not yet upgraded and ready: {stale:?}",
                    items.len()
                ))
            }
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    run.wait_ready("basic", 3).await;
    println!(
        "step 6b, rolling upgrade to v0.1.1: {:?}",
        upgrade.elapsed()
    );
    run.patch(DB, "basic", &members(1)).await;
    run.wait_placement("basic", 1).await;
    run.wait_ready("basic", 3).await;
    let summary = run.stop_load("kvload-tso").await;
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["unverified"], 0, "{summary}");
    assert_eq!(summary["tso_backwards"], 0, "{summary}");
    assert!(summary["timestamps"].as_u64().unwrap_or(0) > 0, "{summary}");
    let pause = summary["longest_pause_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(pause < WRITE_PAUSE_BOUND.as_millis() as u64, "{summary}");
    println!(
        "step 6, placement 1 -> 3 -> 1 and a rolling upgrade under load ({} writes, {} timestamps, \
         none lost or backwards, longest write pause {pause} ms): {:?}",
        summary["acked"], summary["timestamps"], step.elapsed()
    );

    // 7. Deleting the cluster runs the finalizer; the claims stay (Retain).
    let step = Instant::now();
    plane
        .kubectl(&["delete", "tikvcluster", "basic", "-n", DB, "--timeout=120s"])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run.logs()));
    run.wait_none(
        "the cluster's StatefulSets and pods to go",
        &[
            "get",
            "statefulsets,pods",
            "-n",
            DB,
            "-l",
            "app.kubernetes.io/instance=basic",
            "-o",
            "name",
        ],
    )
    .await;
    let claims = plane
        .kubectl(&["get", "pvc", "-n", DB, "-o", "name"])
        .await
        .unwrap();
    assert!(
        claims.contains("data-basic-store-0"),
        "Retain keeps the claims: {claims}"
    );
    println!(
        "step 7, cluster deleted, claims retained: {:?}",
        step.elapsed()
    );

    // 8. The zones example: six stores, three members, isolation by zone; every region has one
    //    replica per zone. Deleted under `pvReclaimPolicy: Delete`, its claims go.
    let step = Instant::now();
    plane
        .kubectl(&["create", "namespace", "tikv"])
        .await
        .unwrap();
    let class =
        serde_json::to_string(&e2e::k8s::provisioner::class_named("fast-ssd", "Delete")).unwrap();
    plane.apply(&class).await.unwrap();
    // As written, but with store volumes of 4Gi instead of 500Gi: the six share the test
    // machine's disk, and a store reports its volume's size as its capacity, so their free
    // space is judged against what they were given rather than the whole disk.
    let zones =
        std::fs::read_to_string(repo_root().join("manifests/tikvcluster-zones.yaml")).unwrap();
    assert!(zones.contains("size: 500Gi"), "{zones}");
    plane
        .apply(&zones.replace("size: 500Gi", "size: 4Gi"))
        .await
        .unwrap();
    run.wait_ready_in("tikv", "prod", 6).await;
    let pd = run.placement_in("tikv", "prod").await;
    let regions = wait_for(
        "every region of prod with one replica in each zone",
        STEP,
        || async {
            let stores = run.stores(&pd).await?;
            let zone_of: BTreeMap<u64, String> = stores
                .values()
                .map(|(id, _, labels)| (*id, labels.get("zone").cloned().unwrap_or_default()))
                .collect();
            let regions = run.http.regions(&pd).await?;
            // Placement places no replica on a store low on space: say what they report.
            let space = || async {
                let infos = run.http.all_store_infos(&pd).await.unwrap_or_default();
                let each: Vec<String> = infos
                    .iter()
                    .map(|s| {
                        format!(
                            "{} {} of {}",
                            s.store.id, s.status.available, s.status.capacity
                        )
                    })
                    .collect();
                each.join(", ")
            };
            for r in &regions {
                let mut zones: Vec<&str> = r
                    .peers
                    .iter()
                    .map(|p| zone_of.get(&p.store_id).map_or("", String::as_str))
                    .collect();
                zones.sort_unstable();
                zones.dedup();
                if r.peers.len() != 3 || zones.len() != 3 || zones.contains(&"") {
                    return Err(format!(
                        "region {} on zones {zones:?} ({} peers); stores' available space: {}",
                        r.id,
                        r.peers.len(),
                        space().await
                    ));
                }
            }
            Ok(regions.len())
        },
        || run.logs(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    run.patch("tikv", "prod", r#"{"spec":{"pvReclaimPolicy":"Delete"}}"#)
        .await;
    plane
        .kubectl(&[
            "delete",
            "tikvcluster",
            "prod",
            "-n",
            "tikv",
            "--timeout=120s",
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", run.logs()));
    run.wait_none(
        "prod's claims to go (Delete)",
        &["get", "pvc", "-n", "tikv", "-o", "name"],
    )
    .await;
    println!(
        "step 8, zones example Ready, {regions} regions with one replica per zone, deleted with its claims: {:?}",
        step.elapsed()
    );
}
