//! `k8s-tools`: builds the real Kubernetes control plane the operator suite runs
//! (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, etcd, helm; see
//! `e2e::k8s::tools`) into the cache outside the clone, or finds it there, and prints the
//! directory. `scripts/k8s-tools.sh` runs it.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Some(reason) = e2e::k8s::tools::unavailable().await {
        eprintln!("k8s-tools: {reason}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "k8s-tools: building Kubernetes {} (kube-apiserver, kube-controller-manager, \
         kube-scheduler, kubectl), etcd and helm from the Go module proxy unless cached; \
         a cold build takes 20-30 minutes on two cores",
        e2e::k8s::tools::KUBERNETES_VERSION
    );
    match e2e::k8s::tools::build().await {
        Ok(tools) => {
            println!("{}", tools.dir().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("k8s-tools: {e}");
            ExitCode::FAILURE
        }
    }
}
