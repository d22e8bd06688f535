#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine:
# libclang (bindgen for RocksDB) and a C++ toolchain. Idempotent and quiet
# when everything is already there.
set -euo pipefail

need=()
# libclang itself (libclang.so or libclang-N.so), not libclang-cpp, which other packages pull in.
have_libclang() {
  local p
  for p in '/usr/lib/llvm-*/lib/libclang.so*' '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' \
    '/usr/lib/*-linux-gnu/libclang.so*' '/usr/lib/*-linux-gnu/libclang-[0-9]*.so*'; do
    compgen -G "$p" >/dev/null && return 0
  done
  return 1
}
if ! have_libclang; then
  need+=(libclang-dev clang)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
# ip and tc: the fault suite's network namespaces, cuts and throttles.
{ command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; } || need+=(iproute2)
command -v make >/dev/null 2>&1 || need+=(make)
# openssl: the Kubernetes suite's throwaway certificates.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
# Python packages the tests use (each test says SKIPPED if its package is absent):
# the official Python client, and the real Helm library plus Kubernetes schema
# validation for the chart and manifests.
pip_need() {
  python3 -c "import $1" >/dev/null 2>&1 && return 0
  python3 -m pip install --quiet --disable-pip-version-check "$2" >/dev/null 2>&1 \
    || echo "setup: could not install $2; the tests needing it will be skipped" >&2
}
if command -v python3 >/dev/null 2>&1; then
  pip_need tikv_client "tikv-client==0.0.4"
  pip_need helm_python "helm-python-sdk"
  pip_need kubernetes_validate "kubernetes-validate"
  pip_need jsonschema "jsonschema"
  pip_need yaml "pyyaml"
fi
# The Go, Java and go-ycsb client suites (each says SKIPPED where its tools are absent):
# Java 17 and Maven, and etcd for go-ycsb's etcd comparison, from Debian's packages. Go
# itself comes with the machine: Debian's golang-go (1.19) is too old for client-go, so it is
# not installed here; without Go >= 1.26 those suites skip, saying so.
apt_need=()
command -v java >/dev/null 2>&1 || apt_need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || apt_need+=(maven)
command -v etcd >/dev/null 2>&1 || apt_need+=(etcd-server)
if [ ${#apt_need[@]} -gt 0 ]; then
  echo "setup: installing ${apt_need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  { $SUDO apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_need[@]}" >/dev/null; } \
    || echo "setup: could not install ${apt_need[*]}; the tests needing them will be skipped" >&2
fi
command -v go >/dev/null 2>&1 \
  || echo "setup: go is absent; the Go client and go-ycsb suites will be skipped" >&2
