//! The operator on a real Kubernetes cluster: kind, the chart, and `manifests/`.
//!
//! [`operator_runs_a_cluster_on_kind`] runs only when `kind`, `kubectl`, `helm` (or the
//! helm-python-sdk) and a Docker engine are all available and `FERROKV_KIND=1` is set;
//! otherwise it prints `SKIPPED: kind suite needs ... (set FERROKV_KIND=1)` and passes. When it
//! runs it builds the images (`scripts/images.sh --debug`, tagged with the chart's appVersion),
//! creates a kind cluster of its own under a kubeconfig of its own, loads the images, installs
//! the chart from `charts/tikv-operator`, applies `manifests/tikvcluster-minimal.yaml`, waits
//! for the TikvCluster's `Ready` condition with three stores `Up`, checks placement through a
//! port-forward of its Service, does a raw put and get with the official client from a pod
//! (`raw-probe`: the stores advertise pod DNS names, which resolve only inside the cluster, so
//! a client behind a port-forward could not follow them), scales the stores 3 → 4 → 3 checking the status each time, and
//! deletes the TikvCluster and the kind cluster.
//!
//! The other tests here check the pure parts of `e2e::kind` (skip rule, command lines, status
//! reading) and that the versions the images, chart and manifests name agree; they always run.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use e2e::docker::{self, OPERATOR_REPO};
use e2e::kind::{
    app_version, forwarded_port, probe_tools, ready_with_stores, Helm, KindCluster, KindPlan,
    Tools, ENABLE_ENV, OPERATOR_NAMESPACE,
};
use e2e::pd_api::PdHttp;
use e2e::{wait_for, with_deadline};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// One kubectl or helm call.
const KUBECTL: Duration = Duration::from_secs(120);
/// Creating the kind cluster, building the images, installing the chart.
const SLOW: Duration = Duration::from_secs(1200);
/// A TikvCluster becoming Ready after a create or a scale.
const CONVERGE: Duration = Duration::from_secs(600);
/// Name of the TikvCluster in manifests/tikvcluster-minimal.yaml.
const CLUSTER: &str = "basic";

fn chart_dir() -> std::path::PathBuf {
    docker::repo_root().join("charts/tikv-operator")
}

fn chart_app_version() -> String {
    let path = chart_dir().join("Chart.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    app_version(&text).unwrap_or_else(|| panic!("no appVersion in {}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_runs_a_cluster_on_kind() {
    e2e::init_test_tracing();
    let tools = probe_tools().await;
    if let Some(reason) = tools.skip_reason() {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let helm = tools.helm().expect("skip_reason checked helm");
    with_deadline(SLOW * 2 + CONVERGE * 3, run_on_kind(helm)).await;
}

fn must(what: &str, result: Result<String, String>) -> String {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn run_on_kind(helm: Helm) {
    let tag = chart_app_version();
    let mut images = docker::build_images(&tag, SLOW)
        .await
        .unwrap_or_else(|e| panic!("scripts/images.sh: {e}"));
    let probe = docker::build_probe_image(
        Path::new(env!("CARGO_BIN_EXE_raw-probe")),
        &format!("{OPERATOR_REPO}:{tag}"),
        &tag,
    )
    .await
    .unwrap_or_else(|e| panic!("build the probe image: {e}"));
    images.push(probe.clone());
    eprintln!("images: {images:?}");

    let dir = tempfile::tempdir().expect("temp dir");
    let plan = KindPlan {
        name: docker::unique_name("ferrokv-e2e"),
        kubeconfig: dir.path().join("kubeconfig"),
    };
    let kind = KindCluster::create(plan, SLOW)
        .await
        .unwrap_or_else(|e| panic!("kind create cluster: {e}"));
    for image in &images {
        let args = kind.plan.load_image(image);
        must(
            "kind load docker-image",
            docker::run_program("kind", &args, &[], SLOW).await,
        );
    }

    install_chart(&kind, helm, &tag, dir.path()).await;
    let manifest = docker::repo_root().join("manifests/tikvcluster-minimal.yaml");
    let manifest = manifest.to_string_lossy().into_owned();
    must(
        "kubectl apply",
        kind.kubectl(&["apply", "-n", "default", "-f", &manifest], KUBECTL)
            .await,
    );
    must_converge(&kind, 3).await;
    check_placement(&kind, 3).await;
    raw_put_get(&kind, &probe).await;

    for stores in [4, 3] {
        let patch = json!({"spec": {"store": {"replicas": stores}}}).to_string();
        must(
            "kubectl patch",
            kind.kubectl(
                &[
                    "patch",
                    "tikvcluster",
                    CLUSTER,
                    "-n",
                    "default",
                    "--type",
                    "merge",
                    "-p",
                    &patch,
                ],
                KUBECTL,
            )
            .await,
        );
        must_converge(&kind, stores).await;
        check_placement(&kind, stores).await;
    }

    must(
        "kubectl delete",
        kind.kubectl(
            &[
                "delete",
                "-n",
                "default",
                "-f",
                &manifest,
                "--wait",
                "--timeout=300s",
            ],
            Duration::from_secs(330),
        )
        .await,
    );
    // Dropping `kind` deletes the cluster.
    drop(kind);
}

/// A raw put and get through the official client from a pod (`raw-probe`), where the stores'
/// advertised pod DNS names resolve, as an application in the cluster would connect.
async fn raw_put_get(kind: &KindCluster, probe: &str) {
    let pod = docker::unique_name("raw-probe");
    let image = format!("--image={probe}");
    let pd = format!("http://{CLUSTER}-placement.default.svc:2379");
    let value = docker::unique_name("v");
    must(
        "kubectl run raw-probe",
        kind.kubectl(
            &[
                "run",
                &pod,
                "-n",
                "default",
                &image,
                "--image-pull-policy=Never",
                "--restart=Never",
                "--",
                &pd,
                "kind-probe",
                &value,
            ],
            KUBECTL,
        )
        .await,
    );
    let pod_ref = format!("pod/{pod}");
    let done = kind
        .kubectl(
            &[
                "wait",
                "-n",
                "default",
                "--for=jsonpath={.status.phase}=Succeeded",
                &pod_ref,
                "--timeout=180s",
            ],
            Duration::from_secs(200),
        )
        .await;
    let logs = kind
        .kubectl(&["logs", "-n", "default", &pod_ref], KUBECTL)
        .await
        .unwrap_or_else(|e| e);
    if let Err(e) = done {
        panic!("raw-probe pod did not succeed: {e}\n{logs}");
    }
    assert_eq!(logs.trim(), format!("ok kind-probe={value}"));
    must(
        "kubectl delete pod",
        kind.kubectl(&["delete", "-n", "default", &pod_ref], KUBECTL)
            .await,
    );
}

/// `helm install`, or the helm-python-sdk's rendering applied with kubectl (CRDs first, as
/// helm does), then waits for the operator's Deployment.
async fn install_chart(kind: &KindCluster, helm: Helm, tag: &str, dir: &Path) {
    let chart = chart_dir();
    match helm {
        Helm::Cli => {
            let kubeconfig = kind.plan.kubeconfig.to_string_lossy().into_owned();
            must(
                "helm install",
                docker::run_program(
                    "helm",
                    &kind.plan.helm_install(&chart, tag),
                    &[("KUBECONFIG", &kubeconfig)],
                    SLOW,
                )
                .await,
            );
        }
        Helm::PythonSdk => {
            let rendered = must(
                "render the chart with helm-python-sdk",
                docker::run_program(
                    "python3",
                    &["-c".into(), KindPlan::python_render(&chart, tag)],
                    &[],
                    KUBECTL,
                )
                .await,
            );
            let file = dir.join("chart.yaml");
            std::fs::write(&file, rendered).expect("write the rendered chart");
            let crds = chart.join("crds").to_string_lossy().into_owned();
            let file = file.to_string_lossy().into_owned();
            for args in [
                vec!["apply", "-f", crds.as_str()],
                vec!["create", "namespace", OPERATOR_NAMESPACE],
                vec!["apply", "-n", OPERATOR_NAMESPACE, "-f", file.as_str()],
            ] {
                must("install the chart", kind.kubectl(&args, KUBECTL).await);
            }
            must(
                "operator rollout",
                kind.kubectl(
                    &[
                        "rollout",
                        "status",
                        "-n",
                        OPERATOR_NAMESPACE,
                        "deployment",
                        "--timeout=300s",
                    ],
                    Duration::from_secs(330),
                )
                .await,
            );
        }
    }
}

/// Waits until the TikvCluster is Ready with `stores` stores Up, reporting its status and the
/// pods on timeout.
async fn must_converge(kind: &KindCluster, stores: usize) {
    let waited = wait_for(
        &format!("TikvCluster {CLUSTER} Ready with {stores} stores Up"),
        CONVERGE,
        || async {
            let out = kind
                .kubectl(
                    &["get", "tikvcluster", CLUSTER, "-n", "default", "-o", "json"],
                    KUBECTL,
                )
                .await?;
            let tc: serde_json::Value =
                serde_json::from_str(&out).map_err(|e| format!("bad JSON ({e}): {out}"))?;
            ready_with_stores(&tc, stores)
        },
        String::new,
    )
    .await;
    if let Err(e) = waited {
        let pods = kind
            .kubectl(&["get", "pods", "-A", "-o", "wide"], KUBECTL)
            .await
            .unwrap_or_else(|e| e);
        panic!("{e}\n{pods}");
    }
}

/// Port-forwards placement's client Service and checks through its PD API that `stores`
/// stores are Up.
async fn check_placement(kind: &KindCluster, stores: usize) {
    let kubeconfig = kind.plan.kubeconfig.to_string_lossy().into_owned();
    let service = format!("svc/{CLUSTER}-placement");
    let mut child = Command::new("kubectl")
        .args(
            kind.plan
                .kubectl(&["port-forward", "-n", "default", &service, ":2379"]),
        )
        .env("KUBECONFIG", &kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("run kubectl port-forward");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(KUBECTL, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(port) = forwarded_port(&line) {
                return Some(port);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("kubectl port-forward printed no local port");
    // Keep draining its output so the forward never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let pd = format!("127.0.0.1:{port}");
    let http = PdHttp::default();
    wait_for(
        &format!("{stores} stores Up through the port-forward"),
        Duration::from_secs(60),
        || async {
            let all = http.stores(&pd).await?;
            let up = all.iter().filter(|s| s.state_name == "Up").count();
            if up == stores {
                Ok(())
            } else {
                Err(format!("{up} Up of {all:?}"))
            }
        },
        String::new,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    drop(child);
}

fn tools_all_present() -> Tools {
    Tools {
        kind: true,
        kubectl: true,
        helm_cli: true,
        helm_python_sdk: false,
        docker: None,
        enabled: Some("1".into()),
    }
}

#[test]
fn skips_unless_every_tool_and_the_switch_are_there() {
    assert_eq!(tools_all_present().skip_reason(), None);
    assert_eq!(tools_all_present().helm(), Some(Helm::Cli));

    let sdk_only = Tools {
        helm_cli: false,
        helm_python_sdk: true,
        ..tools_all_present()
    };
    assert_eq!(sdk_only.skip_reason(), None);
    assert_eq!(sdk_only.helm(), Some(Helm::PythonSdk));

    let off = Tools {
        enabled: Some("0".into()),
        ..tools_all_present()
    };
    let reason = off.skip_reason().expect("FERROKV_KIND=0 skips");
    assert!(reason.starts_with("kind suite needs "), "{reason}");
    assert!(
        reason.ends_with(&format!("(set {ENABLE_ENV}=1)")),
        "{reason}"
    );
    assert!(reason.contains("missing: FERROKV_KIND=1 "), "{reason}");

    let bare = Tools::default();
    let reason = bare.skip_reason().expect("nothing present skips");
    for tool in [
        "kind",
        "kubectl",
        "helm (or the helm-python-sdk)",
        "FERROKV_KIND=1",
    ] {
        assert!(reason.contains(tool), "{tool} not named: {reason}");
    }
    let no_docker = Tools {
        docker: Some("no engine".into()),
        ..tools_all_present()
    };
    assert!(no_docker
        .skip_reason()
        .is_some_and(|r| r.contains("docker (no engine)")));
}

#[test]
fn every_command_names_only_the_suites_cluster_and_kubeconfig() {
    let plan = KindPlan {
        name: "ferrokv-e2e-1-2-3".into(),
        kubeconfig: "/tmp/x/kubeconfig".into(),
    };
    let has_pair = |args: &[String], flag: &str, value: &str| {
        args.windows(2).any(|w| w[0] == flag && w[1] == value)
    };
    for args in [plan.create(), plan.delete()] {
        assert!(has_pair(&args, "--name", &plan.name), "{args:?}");
        assert!(
            has_pair(&args, "--kubeconfig", "/tmp/x/kubeconfig"),
            "{args:?}"
        );
    }
    assert_eq!(&plan.create()[..2], ["create", "cluster"]);
    assert_eq!(&plan.delete()[..2], ["delete", "cluster"]);
    let load = plan.load_image("ghcr.io/ferrokv/ferrokv:v0.1.0");
    assert_eq!(
        load,
        [
            "load",
            "docker-image",
            "ghcr.io/ferrokv/ferrokv:v0.1.0",
            "--name",
            "ferrokv-e2e-1-2-3"
        ]
    );
    let get = plan.kubectl(&["get", "pods"]);
    assert_eq!(get, ["--kubeconfig", "/tmp/x/kubeconfig", "get", "pods"]);

    let install = plan.helm_install(Path::new("/repo/charts/tikv-operator"), "0.1.0");
    assert_eq!(
        &install[..3],
        ["install", "tikv-operator", "/repo/charts/tikv-operator"]
    );
    assert!(has_pair(&install, "--kubeconfig", "/tmp/x/kubeconfig"));
    assert!(has_pair(&install, "--namespace", OPERATOR_NAMESPACE));
    assert!(has_pair(&install, "--set", "image.tag=0.1.0"));
    assert!(has_pair(&install, "--set", "image.pullPolicy=Never"));
    assert!(install.contains(&"--wait".to_owned()));

    let render = KindPlan::python_render(Path::new("/repo/charts/tikv-operator"), "0.1.0");
    assert!(render.contains("helm.Chart.load(\"/repo/charts/tikv-operator\")"));
    assert!(render.contains("'tag': \"0.1.0\""), "{render}");
}

#[test]
fn port_forward_output_gives_the_local_port() {
    assert_eq!(
        forwarded_port("Forwarding from 127.0.0.1:43615 -> 2379"),
        Some(43615)
    );
    assert_eq!(forwarded_port("Forwarding from [::1]:43615 -> 2379"), None);
    assert_eq!(forwarded_port("Handling connection for 43615"), None);
    assert_eq!(forwarded_port("Forwarding from 127.0.0.1:x -> 2379"), None);
}

fn tikv_cluster(
    generation: i64,
    observed: i64,
    ready: &str,
    pods: u64,
    up: usize,
) -> serde_json::Value {
    let stores: Vec<_> = (0..up)
        .map(|i| json!({"id": i + 1, "address": format!("s{i}:20160"), "state": "Up"}))
        .chain([json!({"id": 99, "address": "gone:20160", "state": "Tombstone"})])
        .collect();
    json!({
        "metadata": {"name": CLUSTER, "generation": generation},
        "status": {
            "observedGeneration": observed,
            "conditions": [
                {"type": "Progressing", "status": "False", "reason": "Idle", "message": ""},
                {"type": "Ready", "status": ready, "reason": "R", "message": "M"},
            ],
            "store": {"readyReplicas": pods, "stores": stores},
        },
    })
}

#[test]
fn readiness_needs_the_condition_the_generation_and_the_stores() {
    assert_eq!(
        ready_with_stores(&tikv_cluster(2, 2, "True", 3, 3), 3),
        Ok(())
    );
    // Tombstones do not count; a fourth Up store is missing.
    let err = ready_with_stores(&tikv_cluster(2, 2, "True", 4, 3), 4).unwrap_err();
    assert!(err.contains("3 stores Up"), "{err}");
    let err = ready_with_stores(&tikv_cluster(3, 2, "True", 3, 3), 3).unwrap_err();
    assert!(err.contains("generation"), "{err}");
    let err = ready_with_stores(&tikv_cluster(2, 2, "False", 3, 3), 3).unwrap_err();
    assert!(err.contains("Ready is \"False\""), "{err}");
    let err = ready_with_stores(&json!({"metadata": {"generation": 1}}), 3).unwrap_err();
    assert!(err.contains("generation"), "{err}");
    let no_condition = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1}});
    let err = ready_with_stores(&no_condition, 3).unwrap_err();
    assert!(err.contains("no Ready condition"), "{err}");
}

/// The image tags the script builds by default, the chart's appVersion, the workspace version
/// the binaries print and the TikvCluster version in manifests/ must name the same release, or
/// `kind load` + `helm install` + `kubectl apply` would look for images nobody built.
#[test]
fn chart_manifest_and_binary_versions_agree() {
    let app = chart_app_version();
    assert_eq!(app, env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion");
    let manifest =
        std::fs::read_to_string(docker::repo_root().join("manifests/tikvcluster-minimal.yaml"))
            .expect("read manifests/tikvcluster-minimal.yaml");
    let version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("version:"))
        .map(str::trim)
        .expect("spec.version in the minimal manifest");
    assert_eq!(version, format!("v{app}"));
    let values = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    assert!(
        values.contains(&format!("repository: {OPERATOR_REPO}")),
        "values.yaml names another operator image"
    );
    assert_eq!(app_version("appVersion: \"1.2.3\"\n"), Some("1.2.3".into()));
    assert_eq!(
        app_version("version: 1\nappVersion: 4.5.6"),
        Some("4.5.6".into())
    );
    assert_eq!(app_version("version: 1\n"), None);
}

/// The helm-python-sdk fallback renders the chart with the suite's values (runs where the SDK
/// is installed; prints why not otherwise).
#[tokio::test]
async fn python_sdk_renders_the_chart_with_the_local_image() {
    let program = KindPlan::python_render(&chart_dir(), "9.9.9");
    let out = docker::run_program("python3", &["-c".into(), program], &[], KUBECTL).await;
    let rendered = match out {
        Ok(out) => out,
        Err(e) if e.contains("No module named 'helm_python'") || e.contains("could not be run") => {
            eprintln!("SKIPPED: python_sdk_renders_the_chart_with_the_local_image: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    assert!(rendered.contains("kind: Deployment"), "{rendered}");
    assert!(
        rendered.contains(&format!("image: \"{OPERATOR_REPO}:9.9.9\"")),
        "{rendered}"
    );
    assert!(rendered.contains("imagePullPolicy: Never"), "{rendered}");
    assert!(
        rendered.contains(&format!("namespace: {OPERATOR_NAMESPACE}")),
        "{rendered}"
    );
}
