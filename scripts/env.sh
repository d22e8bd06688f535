# Sourced by the scripts: one shared build directory outside the checkout so
# later runs (and CI on the same machine) reuse the RocksDB build.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kv-target}"
