#!/usr/bin/env bash
# The fault suite's long form: N randomized runs of S seconds of faults each, every run on a
# fresh cluster (3 placement members, 5 stores, each in its own network namespace; needs root),
# histories checked by Porcupine, the Elle-style list-append checker and the bank, monotonic and
# lost-write checks. Prints a line per run and the summary table; the last line is
# `<clean runs> passed, <runs with an anomaly> failed`. Failing runs leave their results
# (histories, nemesis schedule, logs, REPRODUCE) under $TMPDIR/ferrokv-jepsen.
#
#   scripts/jepsen.sh --runs 100 --seconds 30 [--seed 42]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/env.sh
cargo build --workspace --bins
exec "$CARGO_TARGET_DIR/debug/jepsen" "$@"
