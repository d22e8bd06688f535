//! A throwaway kind cluster for the Kubernetes suite (`tests/kind.rs`), and the pure parts of
//! driving it: which tools must be present, the exact `kind`, `kubectl` and `helm` command
//! lines, and reading a TikvCluster's status.
//!
//! Every `kubectl` and `helm` command carries `--kubeconfig` naming the suite's own file (and
//! runs with `KUBECONFIG` set to it), and every `kind` command names the suite's own cluster, so
//! the suite never reads or changes a cluster or kubeconfig it did not create. [`KindCluster`]
//! deletes its cluster on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::docker::{run_blocking, run_program};

/// Env var that must be `1` for the suite to run: creating a cluster takes minutes.
pub const ENABLE_ENV: &str = "FERROKV_KIND";
/// Namespace the chart is installed into.
pub const OPERATOR_NAMESPACE: &str = "tikv-operator-system";
/// Helm release name of the chart.
pub const RELEASE: &str = "tikv-operator";

/// How the chart gets installed: the `helm` CLI, or (without it) the chart rendered by the
/// helm-python-sdk and applied with `kubectl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helm {
    Cli,
    PythonSdk,
}

/// What the suite found on this machine.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    pub kind: bool,
    pub kubectl: bool,
    pub helm_cli: bool,
    pub helm_python_sdk: bool,
    /// `None` when a Docker engine answers, else why not.
    pub docker: Option<String>,
    /// The value of [`ENABLE_ENV`].
    pub enabled: Option<String>,
}

impl Tools {
    /// How the chart would be installed, if at all.
    pub fn helm(&self) -> Option<Helm> {
        if self.helm_cli {
            Some(Helm::Cli)
        } else if self.helm_python_sdk {
            Some(Helm::PythonSdk)
        } else {
            None
        }
    }

    /// `None` when the suite can run, else the line to print (after `SKIPPED: `).
    pub fn skip_reason(&self) -> Option<String> {
        let mut missing = Vec::new();
        if !self.kind {
            missing.push("kind".to_owned());
        }
        if !self.kubectl {
            missing.push("kubectl".to_owned());
        }
        if self.helm().is_none() {
            missing.push("helm (or the helm-python-sdk)".to_owned());
        }
        if let Some(why) = &self.docker {
            missing.push(format!("docker ({why})"));
        }
        let enabled = self.enabled.as_deref() == Some("1");
        if !enabled {
            missing.push(format!("{ENABLE_ENV}=1"));
        }
        (!missing.is_empty()).then(|| {
            format!(
                "kind suite needs kind, kubectl, helm (or the helm-python-sdk) and docker, \
                 and {ENABLE_ENV}=1; missing: {} (set {ENABLE_ENV}=1)",
                missing.join(", ")
            )
        })
    }
}

/// Whether `name` is an executable file in a directory of `PATH`.
pub fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let file = dir.join(name);
        std::fs::metadata(&file).is_ok_and(|m| m.is_file() && is_executable(&m))
    })
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

/// What is available here: tools on `PATH`, the Python SDK, Docker and [`ENABLE_ENV`].
pub async fn probe_tools() -> Tools {
    let sdk = run_program(
        "python3",
        &["-c".into(), "import helm_python".into()],
        &[],
        Duration::from_secs(30),
    )
    .await
    .is_ok();
    Tools {
        kind: on_path("kind"),
        kubectl: on_path("kubectl"),
        helm_cli: on_path("helm"),
        helm_python_sdk: sdk,
        docker: crate::docker::unavailable().await,
        enabled: std::env::var(ENABLE_ENV).ok(),
    }
}

/// The command lines for one cluster named `name` whose kubeconfig is `kubeconfig`.
#[derive(Clone, Debug)]
pub struct KindPlan {
    pub name: String,
    pub kubeconfig: PathBuf,
}

impl KindPlan {
    fn kubeconfig(&self) -> String {
        self.kubeconfig.to_string_lossy().into_owned()
    }

    /// `kind create cluster`, writing only the suite's kubeconfig.
    pub fn create(&self) -> Vec<String> {
        strings(&[
            "create",
            "cluster",
            "--name",
            &self.name,
            "--kubeconfig",
            &self.kubeconfig(),
            "--wait",
            "180s",
        ])
    }

    /// `kind delete cluster` of this cluster only.
    pub fn delete(&self) -> Vec<String> {
        strings(&[
            "delete",
            "cluster",
            "--name",
            &self.name,
            "--kubeconfig",
            &self.kubeconfig(),
        ])
    }

    /// `kind load docker-image` into this cluster's nodes.
    pub fn load_image(&self, image: &str) -> Vec<String> {
        strings(&["load", "docker-image", image, "--name", &self.name])
    }

    /// `kubectl --kubeconfig <ours> args...`.
    pub fn kubectl(&self, args: &[&str]) -> Vec<String> {
        let mut out = strings(&["--kubeconfig", &self.kubeconfig()]);
        out.extend(strings(args));
        out
    }

    /// `helm install` of the chart with the operator image at `tag`, never pulled (kind holds
    /// it), waiting for the operator's Deployment.
    pub fn helm_install(&self, chart: &Path, tag: &str) -> Vec<String> {
        strings(&[
            "install",
            RELEASE,
            &chart.to_string_lossy(),
            "--kubeconfig",
            &self.kubeconfig(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "300s",
        ])
    }

    /// A Python program printing the chart rendered by the helm-python-sdk (same values as
    /// [`helm_install`](Self::helm_install)), for `kubectl apply -f -`. The chart's CRDs are
    /// applied separately, as `helm install` does first.
    pub fn python_render(chart: &Path, tag: &str) -> String {
        format!(
            "import helm_python as helm\n\
             chart = helm.Chart.load({chart:?})\n\
             values = {{'image': {{'tag': {tag:?}, 'pullPolicy': 'Never'}}}}\n\
             out = chart.render(values, name={RELEASE:?}, namespace={OPERATOR_NAMESPACE:?}, \
             is_install=True)\n\
             for path in sorted(out):\n    \
                 if path.endswith(('.yaml', '.yml')) and out[path].strip():\n        \
                     print('---')\n        \
                     print(out[path])\n",
            chart = chart.to_string_lossy(),
        )
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|&a| a.to_owned()).collect()
}

/// A kind cluster the suite created; deleted (with its kubeconfig entries) on drop.
#[derive(Debug)]
pub struct KindCluster {
    pub plan: KindPlan,
}

impl KindCluster {
    /// Creates the cluster (at most `timeout`); on failure deletes whatever was created.
    pub async fn create(plan: KindPlan, timeout: Duration) -> Result<KindCluster, String> {
        let cluster = KindCluster { plan };
        run_program("kind", &cluster.plan.create(), &[], timeout).await?;
        Ok(cluster)
    }

    /// `kubectl args...` against this cluster only, at most `timeout`.
    pub async fn kubectl(&self, args: &[&str], timeout: Duration) -> Result<String, String> {
        let kubeconfig = self.plan.kubeconfig();
        run_program(
            "kubectl",
            &self.plan.kubectl(args),
            &[("KUBECONFIG", &kubeconfig)],
            timeout,
        )
        .await
    }
}

impl Drop for KindCluster {
    fn drop(&mut self) {
        let args = self.plan.delete();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if !run_blocking("kind", &args, Duration::from_secs(300)) {
            eprintln!(
                "could not delete kind cluster {0}: run `kind delete cluster --name {0}`",
                self.plan.name
            );
        }
    }
}

/// The chart's `appVersion` from Chart.yaml text: the operator image tag the chart defaults to.
pub fn app_version(chart_yaml: &str) -> Option<String> {
    chart_yaml.lines().find_map(|line| {
        let value = line.strip_prefix("appVersion:")?.trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The local port of a `kubectl port-forward` line `Forwarding from 127.0.0.1:43615 -> 2379`.
pub fn forwarded_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("Forwarding from 127.0.0.1:")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `Ok` when a TikvCluster (JSON, as `kubectl get -o json` prints it) is `Ready` for its current
/// generation with `stores` store pods ready and exactly `stores` stores `Up`; else what it
/// shows instead.
pub fn ready_with_stores(tc: &Value, stores: usize) -> Result<(), String> {
    let status = &tc["status"];
    let generation = tc["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    if generation.is_none() || observed < generation {
        return Err(format!(
            "status describes generation {observed:?}, the spec is at {generation:?}"
        ));
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let ready = conditions.iter().find(|c| c["type"] == "Ready");
    match ready {
        Some(c) if c["status"] == "True" => {}
        Some(c) => {
            return Err(format!(
                "Ready is {} ({}: {})",
                c["status"], c["reason"], c["message"]
            ))
        }
        None => return Err(format!("no Ready condition yet: {conditions:?}")),
    }
    let ready_pods = status["store"]["readyReplicas"].as_u64().unwrap_or(0);
    let up = status["store"]["stores"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|s| s["state"] == "Up").count());
    if ready_pods == stores as u64 && up == stores {
        Ok(())
    } else {
        Err(format!(
            "{ready_pods} store pods ready and {up} stores Up, want {stores} of each"
        ))
    }
}
