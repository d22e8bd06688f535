#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine:
# libclang (bindgen for RocksDB) and a C++ toolchain. Idempotent and quiet
# when everything is already there.
set -euo pipefail

need=()
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev clang)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
# The official Python client, for the Python end-to-end test (skipped if absent).
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import tikv_client" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "tikv-client==0.0.4" >/dev/null 2>&1 \
    || echo "setup: could not install the Python tikv-client; its test will be skipped" >&2
fi
