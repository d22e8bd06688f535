//! The control plane's binaries, built once from the Go module proxy.
//!
//! `e2e/k8s/` holds three wrapper modules: `kubernetes` (kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubectl of one pinned release, every staging module pinned to its tag),
//! `etcd` (`go.etcd.io/etcd/server/v3`) and `helm` (`helm.sh/helm/v4`). [`build`] compiles all six
//! into one directory of the client cache ([`crate::foreign::cached_build`], keyed by the hash of
//! those modules), so a later run, or CI on the same machine, reuses them; `scripts/k8s-tools.sh`
//! does the same from a shell and prints the directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result};
use crate::foreign::{cached_build, must_succeed, tool_unavailable};

/// The Kubernetes release the wrapper module pins (its `require k8s.io/kubernetes` line).
pub const KUBERNETES_VERSION: &str = "v1.36.3";

/// How long building all six binaries may take on a cold two-core machine.
const BUILD_LIMIT: Duration = Duration::from_secs(3600);

/// The directory holding the built control plane.
#[derive(Clone, Debug)]
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// The binaries in `dir` (as [`build`] lays them out).
    pub fn in_dir(dir: PathBuf) -> Tools {
        Tools { dir }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one binary: `etcd`, `kube-apiserver`, `kube-controller-manager`,
    /// `kube-scheduler`, `kubectl` or `helm`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Why the control plane cannot be built here (no Go toolchain), or `None`.
pub async fn unavailable() -> Option<String> {
    tool_unavailable("go", &["version"])
        .await
        .map(|reason| format!("the Go toolchain is not available ({reason})"))
}

/// The version stamp upstream's `hack/lib/version.sh` puts on its builds, for both
/// component-base and client-go (what `kubectl version` and `/version` report).
fn version_ldflags() -> String {
    let minor = KUBERNETES_VERSION
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .unwrap_or("0");
    let mut flags = String::from("-s -w");
    for pkg in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.push_str(&format!(
            " -X {pkg}.gitVersion={KUBERNETES_VERSION} -X {pkg}.gitMajor=1 -X {pkg}.gitMinor={minor} \
             -X {pkg}.gitTreeState=clean"
        ));
    }
    flags
}

/// Builds (or finds in the cache) the six binaries and returns their directory.
pub async fn build() -> Result<Tools> {
    let dir = cached_build("k8s", "bin", |project, out| async move {
        std::fs::create_dir_all(&out).map_err(|e| Error::Command {
            command: format!("mkdir {}", out.display()),
            reason: e.to_string(),
        })?;
        let steps: [(&str, &[&str], String); 3] = [
            (
                "kubernetes",
                &[
                    "k8s.io/kubernetes/cmd/kube-apiserver",
                    "k8s.io/kubernetes/cmd/kube-controller-manager",
                    "k8s.io/kubernetes/cmd/kube-scheduler",
                    "k8s.io/kubernetes/cmd/kubectl",
                ],
                version_ldflags(),
            ),
            ("etcd", &["go.etcd.io/etcd/server/v3"], "-s -w".to_owned()),
            ("helm", &["helm.sh/helm/v4/cmd/helm"], "-s -w".to_owned()),
        ];
        for (module, packages, ldflags) in steps {
            let mut go = Command::new("go");
            go.current_dir(project.join(module)).args([
                "build",
                "-trimpath",
                "-ldflags",
                &ldflags,
                "-o",
            ]);
            if packages.len() == 1 {
                // One package: `-o` names the file (etcd's package path ends in `v3`).
                let name = if module == "etcd" { "etcd" } else { module };
                go.arg(out.join(name));
            } else {
                go.arg(format!("{}/", out.display()));
            }
            go.args(packages);
            must_succeed(&format!("go build ({module}, e2e/k8s)"), go, BUILD_LIMIT).await?;
        }
        Ok(())
    })
    .await?;
    Ok(Tools::in_dir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_stamp_names_the_pinned_release() {
        let flags = version_ldflags();
        assert!(flags.contains("k8s.io/component-base/version.gitVersion=v1.36.3"));
        assert!(flags.contains("k8s.io/client-go/pkg/version.gitMinor=36"));
    }

    #[test]
    fn the_wrapper_module_pins_every_staging_module_to_the_release() {
        let gomod =
            std::fs::read_to_string(crate::foreign::project_dir("k8s").join("kubernetes/go.mod"))
                .unwrap();
        let pinned = format!("k8s.io/kubernetes {KUBERNETES_VERSION}");
        assert!(
            gomod.lines().any(|l| l.trim().starts_with(&pinned)),
            "{pinned}"
        );
        let staging = format!("v0.{}", KUBERNETES_VERSION.trim_start_matches("v1."));
        let replaced: Vec<&str> = gomod
            .lines()
            .filter(|l| l.trim_start().starts_with("k8s.io/") && l.contains("=>"))
            .collect();
        assert!(replaced.len() >= 31, "{replaced:?}");
        for line in replaced {
            assert!(line.trim_end().ends_with(&staging), "{line}");
        }
    }
}
