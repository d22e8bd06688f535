#!/usr/bin/env bash
# Builds the real Kubernetes control plane the operator suite (e2e/tests/k8s.rs) runs:
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl (k8s.io/kubernetes, one
# pinned release), etcd (go.etcd.io/etcd/server/v3) and helm (helm.sh/helm/v4), from the wrapper
# modules in e2e/k8s through the Go module proxy, into a cache outside the clone
# ($FERROKV_CLIENT_CACHE, default ~/.cache/ferrokv-clients/k8s-<hash>/bin), and prints that
# directory. Later runs and the test suite reuse it. Put it first in PATH to use the same
# kubectl and helm by hand:  export PATH="$(scripts/k8s-tools.sh):$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >&2
. scripts/env.sh
cargo build -q -p e2e --bin k8s-tools >&2
exec "$CARGO_TARGET_DIR/debug/k8s-tools"
