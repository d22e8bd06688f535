#!/usr/bin/env bash
# Where the stores spend their CPU under load: builds in release mode, starts `bench` (its own
# placement + 3-store cluster) on one phase, records every store process with `perf` while the
# phase runs, and prints the share of CPU time per library and the hottest functions (self time).
# Writes perf.data (with DWARF call graphs, for `perf report -i DIR/perf.data --children`) and
# the reports under the output directory.
#
#   scripts/profile.sh [--phase raw-put] [--clients 32] [--secs 10] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
phase=raw-put clients=32 secs=10 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --phase) phase="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --secs) secs="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "profile: unknown argument $1" >&2; exit 2 ;;
  esac
done
out="${out:-profile-results/$(date -u +%Y%m%d-%H%M%S)-$phase}"
if ! command -v perf >/dev/null 2>&1; then
  echo "profile: installing linux-perf" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq linux-perf >/dev/null
fi
. scripts/env.sh
cargo build --release -p e2e -p store -p placement --bins
mkdir -p "$out"
store_bin="$CARGO_TARGET_DIR/release/store"
# The phase runs after the cluster is up: give it the recording time plus a margin on each side.
"$CARGO_TARGET_DIR/release/bench" --clients "$clients" --secs $((secs + 10)) --phases "$phase" \
  >"$out/bench.txt" 2>"$out/bench.log" &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT
pids=""
for _ in $(seq 1 120); do
  pids=$(pgrep -d, -f "^$store_bin " || true)
  [ "$(echo "$pids" | tr ',' '\n' | grep -c .)" -ge 3 ] && break
  sleep 0.5
done
[ -n "$pids" ] || { echo "profile: no store process appeared" >&2; exit 1; }
# Cluster readiness, then the phase's first seconds.
sleep 8
echo "profile: recording stores $pids for $secs s during $phase" >&2
perf record -q -F 199 --call-graph dwarf,8192 -p "$pids" -o "$out/perf.data" -- sleep "$secs" 2>"$out/perf.log"
wait $bench || true
trap - EXIT
{
  echo "# $phase, $clients clients: $(grep -h "^bench" "$out/bench.txt" || echo 'bench printed nothing')"
  echo
  echo "## CPU time by thread"
  perf report -i "$out/perf.data" --no-children --sort comm -g none --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -10
  echo
  echo "## CPU time by library"
  perf report -i "$out/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -15
  echo
  echo "## Hottest functions (self time)"
  perf report -i "$out/perf.data" --no-children --sort comm,dso,symbol -g none --stdio 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+$//' | cut -c1-160 | head -40
} | tee "$out/report.txt"
