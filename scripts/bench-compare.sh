#!/usr/bin/env bash
# Side-by-side benchmark on this machine: the project (release build) against a 3-member etcd
# and RocksDB's synced-write ceiling, with go-ycsb, the project's `bench` (official Rust client)
# and db_bench. Prints progress, then one table; writes table.md and results.json under
# bench-results/<UTC time> (or --out DIR). Arguments go to `bench-compare` (see `--help`):
# --records, --operations, --threads, --value-size, --secs, --stores, --no-ycsb.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# db_bench (RocksDB's own benchmark) comes with Debian's rocksdb-tools; etcd with etcd-server
# (setup.sh installs it too).
need=()
command -v db_bench >/dev/null 2>&1 || need+=(rocksdb-tools)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench-compare: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null \
    || echo "bench-compare: could not install ${need[*]}; those columns will be left out" >&2
fi
. scripts/env.sh
cargo build --release --workspace --bins
case " $* " in
  *" --out "*) exec "$CARGO_TARGET_DIR/release/bench-compare" "$@" ;;
  *) exec "$CARGO_TARGET_DIR/release/bench-compare" --out "bench-results/$(date -u +%Y%m%d-%H%M%S)" "$@" ;;
esac
