# Sourced by the scripts: one shared build directory outside the checkout so
# later runs (and CI on the same machine) reuse the RocksDB build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kv-target}"
# No incremental compilation: its per-build session directories pile up in the
# shared target directory (30 GB had) and take the disk the test clusters need.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
