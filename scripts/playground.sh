#!/usr/bin/env bash
# Starts a local cluster: one placement and N stores (default 3) as processes.
# Arguments are passed to the playground binary (see `--help`).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build --workspace --bins
exec "$CARGO_TARGET_DIR/debug/playground" "$@"
