#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and integration tests,
# and the end-to-end tests against real placement and store processes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo fmt --all -- --check
cargo build --workspace --bins
cargo clippy --workspace --all-targets -- -D warnings
# The suites for Go, Java, Python, namespaces and mounts must run here, not skip.
export FERROKV_REQUIRE_TOOLS=1
# A failing test's own message is the last thing it prints (CI keeps the tail).
export RUST_BACKTRACE=0
cargo test --workspace -- --test-threads 2
