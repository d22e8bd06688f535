//! The operator on a real Kubernetes control plane, built from the official sources.
//!
//! `e2e::k8s` builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd and
//! helm (v1.36.3, etcd 3.6, helm 4) once from the Go module proxy and runs the control plane as
//! processes on loopback, RBAC on. [`operator_under_its_chart_rbac_on_a_real_control_plane`]:
//!
//! 1. installs `charts/tikv-operator` with the real helm CLI; the API server accepts the CRD
//!    (structural schema, CEL rules within their cost budget) and marks it Established;
//! 2. has the API server refuse invalid TikvClusters with the CRD's own messages (schema
//!    minimums, patterns, the CEL rules, the storage-class transition rule, unknown fields);
//! 3. runs the operator with the token of the ServiceAccount the chart created and the very
//!    arguments the chart's Deployment renders, never as admin, so a verb missing from the
//!    chart's RBAC fails the test; applies `manifests/tikvcluster-minimal.yaml` and requires
//!    the operator to create the cluster's Services, ConfigMaps and StatefulSets, the
//!    controller manager to create their pods, and the operator to report status (conditions,
//!    printer columns) and log no `forbidden`;
//! 4. deletes the TikvCluster: the operator's finalizer runs and the object goes.
//!
//! Pods stay Pending here: the node agent that runs them as processes is the next slice of
//! this suite. Without Go the test prints `SKIPPED` and passes (fails under
//! `FERROKV_REQUIRE_TOOLS=1`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e::docker::repo_root;
use e2e::k8s::{tools, ControlPlane};
use e2e::process::{Binaries, Node};
use e2e::testing::skip;
use e2e::{must_eventually, with_deadline};
use serde_json::{json as object, Value};

const NAMESPACE: &str = "tikv-operator-system";
const RELEASE: &str = "tikv-operator";
const CLUSTER_NAMESPACE: &str = "db";
const STEP: Duration = Duration::from_secs(120);

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Applies `spec` as TikvCluster `bad` and returns the API server's refusal.
async fn refused(plane: &ControlPlane, spec: &str) -> String {
    let manifest = format!(
        "apiVersion: tikv.ferrokv.io/v1alpha1\nkind: TikvCluster\nmetadata:\n  name: bad\n  \
         namespace: {CLUSTER_NAMESPACE}\nspec:\n{spec}"
    );
    match plane.apply(&manifest).await {
        Ok(out) => panic!("the API server accepted an invalid TikvCluster:\n{manifest}\n{out}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_under_its_chart_rbac_on_a_real_control_plane() {
    e2e::init_test_tracing();
    const TEST: &str = "operator_under_its_chart_rbac_on_a_real_control_plane";
    if let Some(reason) = tools::unavailable().await {
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
    let dir = tempfile::tempdir().unwrap();
    with_deadline(Duration::from_secs(600), async {
        let plane = ControlPlane::start(&tools, dir.path(), Ipv4Addr::LOCALHOST)
            .await
            .unwrap_or_else(|e| panic!("control plane did not start: {e}"));
        let version = plane.kubectl(&["version", "-o", "json"]).await.unwrap();
        let version = json(&version);
        assert_eq!(
            version["serverVersion"]["gitVersion"],
            tools::KUBERNETES_VERSION
        );

        // 1. helm install; the CRD is accepted and established.
        let step = Instant::now();
        let chart = repo_root().join("charts/tikv-operator");
        let out = plane
            .helm(&[
                "install",
                RELEASE,
                &chart.display().to_string(),
                "--namespace",
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
        let releases = json(
            &plane
                .helm(&["list", "-n", NAMESPACE, "-o", "json"])
                .await
                .unwrap(),
        );
        assert_eq!(releases[0]["status"], "deployed", "{releases}");
        println!("step 1, helm install: {:?}", step.elapsed());

        // 2. Invalid TikvClusters are refused with the CRD's messages.
        let step = Instant::now();
        plane
            .kubectl(&["create", "namespace", CLUSTER_NAMESPACE])
            .await
            .unwrap();
        let cel = refused(&plane, "  maxReplicas: 3\n  store:\n    replicas: 2\n").await;
        assert!(
            cel.contains("store.replicas must be at least maxReplicas"),
            "{cel}"
        );
        let level = refused(
            &plane,
            "  topology:\n    locationLabels: [zone, host]\n    isolationLevel: rack\n",
        )
        .await;
        assert!(
            level.contains("isolationLevel must be one of locationLabels"),
            "{level}"
        );
        let minimum = refused(&plane, "  store:\n    replicas: 0\n").await;
        assert!(
            minimum.contains("spec.store.replicas")
                && minimum.contains("greater than or equal to 1"),
            "{minimum}"
        );
        let duration = refused(&plane, "  failoverPeriod: soon\n").await;
        assert!(duration.contains("spec.failoverPeriod"), "{duration}");
        let unknown = refused(&plane, "  stores: 3\n").await;
        assert!(unknown.contains("stores"), "{unknown}");
        // The transition rule: a store's storage class is fixed once set.
        let fixed = "apiVersion: tikv.ferrokv.io/v1alpha1\nkind: TikvCluster\nmetadata:\n  \
                     name: classy\n  namespace: db\nspec:\n  paused: true\n  store:\n    \
                     storage:\n      storageClassName: fast\n";
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
            .kubectl(&[
                "delete",
                "tikvcluster",
                "classy",
                "-n",
                CLUSTER_NAMESPACE,
                "--wait=false",
            ])
            .await
            .unwrap();
        println!("step 2, invalid clusters refused: {:?}", step.elapsed());

        // 3. The operator, as the chart's ServiceAccount with the chart's arguments.
        let step = Instant::now();
        let deployment = json(
            &plane
                .kubectl(&["get", "deployment", RELEASE, "-n", NAMESPACE, "-o", "json"])
                .await
                .unwrap(),
        );
        let pod = &deployment["spec"]["template"]["spec"];
        let account = pod["serviceAccountName"].as_str().unwrap().to_owned();
        let kubeconfig = plane
            .service_account_kubeconfig(NAMESPACE, &account)
            .await
            .unwrap();
        let whoami = plane
            .kubectl_as(&kubeconfig, &["auth", "whoami", "-o", "json"])
            .await
            .unwrap();
        assert_eq!(
            json(&whoami)["status"]["userInfo"]["username"],
            format!("system:serviceaccount:{NAMESPACE}:{account}")
        );
        let args = operator_args(&pod["containers"][0]);
        let mut operator = Node::new(
            "operator",
            Binaries::other("operator").expect("cargo build --workspace --bins"),
            dir.path().join("operator.log"),
        );
        operator.set_env(vec![
            ("KUBECONFIG".into(), kubeconfig.display().to_string()),
            ("POD_NAME".into(), "tikv-operator-e2e".into()),
            ("POD_NAMESPACE".into(), NAMESPACE.into()),
            ("RUST_LOG".into(), "info".into()),
        ]);
        operator.spawn(&args).unwrap();

        let minimal =
            std::fs::read_to_string(repo_root().join("manifests/tikvcluster-minimal.yaml"))
                .unwrap();
        plane
            .kubectl(&[
                "apply",
                "-n",
                CLUSTER_NAMESPACE,
                "-f",
                &repo_root()
                    .join("manifests/tikvcluster-minimal.yaml")
                    .display()
                    .to_string(),
            ])
            .await
            .unwrap_or_else(|e| panic!("{minimal}\n{e}"));
        for (kind, name) in [
            ("statefulset", "basic-placement"),
            ("statefulset", "basic-store"),
            ("service", "basic-placement"),
            ("service", "basic-placement-peer"),
            ("service", "basic-store-peer"),
            ("configmap", "basic-placement-config"),
            ("configmap", "basic-store-config"),
        ] {
            must_eventually(
                &format!("the operator to create {kind}/{name}"),
                STEP,
                || {
                    let plane = &plane;
                    async move {
                        plane
                            .kubectl(&["get", kind, name, "-n", CLUSTER_NAMESPACE, "-o", "name"])
                            .await
                    }
                },
            )
            .await;
        }
        // The StatefulSet controller makes the pods (Pending: no node runs them yet).
        must_eventually(
            "the controller manager to create pod basic-placement-0",
            STEP,
            || {
                let plane = &plane;
                async move {
                    plane
                        .kubectl(&[
                            "get",
                            "pod",
                            "basic-placement-0",
                            "-n",
                            CLUSTER_NAMESPACE,
                            "-o",
                            "name",
                        ])
                        .await
                }
            },
        )
        .await;
        let status = must_eventually("the operator to report conditions", STEP, || {
            let plane = &plane;
            async move {
                let tc = json(
                    &plane
                        .kubectl(&[
                            "get",
                            "tikvcluster",
                            "basic",
                            "-n",
                            CLUSTER_NAMESPACE,
                            "-o",
                            "json",
                        ])
                        .await?,
                );
                let conditions = tc["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if conditions.iter().any(|c| c["type"] == "Ready") {
                    Ok(tc)
                } else {
                    Err(format!("status so far: {}", tc["status"]))
                }
            }
        })
        .await;
        assert!(
            status["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "the operator puts its finalizer on: {status}"
        );
        let table = plane
            .kubectl(&["get", "tikvclusters", "-n", CLUSTER_NAMESPACE])
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
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("basic ") && l.contains("False")),
            "{table}"
        );
        println!(
            "step 3, operator reconciles under its RBAC: {:?}",
            step.elapsed()
        );

        // 4. Deleting the cluster runs the finalizer.
        let step = Instant::now();
        plane
            .kubectl(&[
                "delete",
                "tikvcluster",
                "basic",
                "-n",
                CLUSTER_NAMESPACE,
                "--timeout=90s",
            ])
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", operator.log_tail(40)));
        must_eventually("the StatefulSets to go with their cluster", STEP, || {
            let plane = &plane;
            async move {
                let left = plane
                    .kubectl(&["get", "statefulsets", "-n", CLUSTER_NAMESPACE, "-o", "name"])
                    .await?;
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(left)
                }
            }
        })
        .await;
        println!("step 4, delete: {:?}", step.elapsed());

        let log = std::fs::read_to_string(operator.log_path()).unwrap_or_default();
        let forbidden: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .collect();
        assert!(
            forbidden.is_empty(),
            "the chart's RBAC refused the operator:\n{}",
            forbidden.join("\n")
        );
        assert!(operator.exited().is_none(), "{}", operator.log_tail(40));
        operator.kill().await.unwrap();
    })
    .await;
}

/// The operator's arguments as the chart's Deployment renders them, with the metrics address
/// moved to a free loopback port (the test runs it on the host, not in a pod).
fn operator_args(container: &Value) -> Vec<String> {
    let port = e2e::ports::free_port().unwrap();
    container["args"]
        .as_array()
        .expect("the chart's operator container has args")
        .iter()
        .filter_map(Value::as_str)
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                format!("--metrics-addr=127.0.0.1:{port}")
            } else {
                a.to_owned()
            }
        })
        .collect()
}

/// `kubectl get <what> -o json` as JSON.
async fn get_json(plane: &ControlPlane, args: &[&str]) -> Result<Value, String> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    plane.kubectl(&all).await.map(|t| json(&t))
}

/// The user path on nodes: helm install brings the operator pod up under its ServiceAccount
/// (a projected token, in-cluster config), a TikvCluster becomes Ready on node agents spread
/// over three zones, and a client pod writes and reads through the client Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tikv_cluster_on_node_agents_of_a_real_control_plane() {
    e2e::init_test_tracing();
    const TEST: &str = "a_tikv_cluster_on_node_agents_of_a_real_control_plane";
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
    let tools = tools::build()
        .await
        .unwrap_or_else(|e| panic!("building the control plane failed: {e}"));
    let dir = tempfile::Builder::new()
        .prefix("k8s-nodes-")
        .tempdir()
        .unwrap();
    let bin_dir = Binaries::other("operator")
        .expect("cargo build --workspace --bins")
        .parent()
        .unwrap()
        .to_path_buf();
    let started = Instant::now();
    let cluster = e2e::k8s::KubeCluster::start(
        &tools,
        dir.path(),
        bin_dir,
        &[
            ("node-a", "zone-a"),
            ("node-b", "zone-b"),
            ("node-c", "zone-c"),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("the cluster did not start: {e}"));
    println!("control plane and 3 nodes Ready: {:?}", started.elapsed());
    let plane = cluster.plane();
    let body = async {
        // The operator runs as the chart's Deployment.
        let step = Instant::now();
        let chart = repo_root().join("charts/tikv-operator");
        plane
            .helm(&[
                "install",
                RELEASE,
                &chart.display().to_string(),
                "-n",
                NAMESPACE,
                "--create-namespace",
            ])
            .await
            .unwrap_or_else(|e| panic!("helm install failed: {e}"));
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
            .unwrap_or_else(|e| {
                panic!(
                    "the operator did not become ready: {e}\n{}",
                    cluster.pod_logs(RELEASE, 40)
                )
            });
        println!("helm install, operator pod Ready: {:?}", step.elapsed());

        // The smallest cluster becomes Ready.
        let step = Instant::now();
        plane
            .kubectl(&["create", "namespace", CLUSTER_NAMESPACE])
            .await
            .unwrap();
        let minimal = repo_root().join("manifests/tikvcluster-minimal.yaml");
        plane
            .kubectl(&[
                "apply",
                "-n",
                CLUSTER_NAMESPACE,
                "-f",
                &minimal.display().to_string(),
            ])
            .await
            .unwrap();
        let ready = e2e::wait_for(
            "TikvCluster basic Ready with 3 stores",
            Duration::from_secs(300),
            || async {
                let tc =
                    get_json(plane, &["tikvcluster", "basic", "-n", CLUSTER_NAMESPACE]).await?;
                let ready = tc["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                if ready && tc["status"]["store"]["readyReplicas"] == 3 {
                    Ok(tc)
                } else {
                    Err(tc["status"].to_string())
                }
            },
            || {
                format!(
                    "{}{}",
                    cluster.pod_logs("basic", 30),
                    cluster.pod_logs(RELEASE, 30)
                )
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        println!(
            "TikvCluster basic Ready: {:?}\n{}",
            step.elapsed(),
            ready["status"]
        );
        let table = plane
            .kubectl(&["get", "tikvclusters", "-n", CLUSTER_NAMESPACE])
            .await
            .unwrap();
        println!("{table}");
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("basic ") && l.contains("True")),
            "{table}"
        );

        // A client pod writes and reads through the client Service.
        let step = Instant::now();
        let client_pod = object!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "kvcheck", "namespace": CLUSTER_NAMESPACE},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "kvcheck",
                    "image": "ghcr.io/ferrokv/kvcheck:e2e",
                    "command": ["/usr/local/bin/kvcheck", "--pd=http://basic-placement.db.svc:2379", "--timeout-secs=100"],
                }],
            },
        });
        plane.apply(&client_pod.to_string()).await.unwrap();
        let phase = e2e::wait_for(
            "the client pod to finish",
            Duration::from_secs(150),
            || async {
                let pod = get_json(plane, &["pod", "kvcheck", "-n", CLUSTER_NAMESPACE]).await?;
                match pod["status"]["phase"].as_str() {
                    Some(p @ ("Succeeded" | "Failed")) => Ok(p.to_owned()),
                    other => Err(format!("phase {other:?}")),
                }
            },
            || cluster.pod_logs("kvcheck", 40),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(phase, "Succeeded", "{}", cluster.pod_logs("kvcheck", 60));
        println!("client pod wrote and read: {:?}", step.elapsed());
    };
    with_deadline(Duration::from_secs(900), body).await;
    cluster.stop().await;
}
