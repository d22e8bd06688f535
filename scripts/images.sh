#!/usr/bin/env bash
# Builds the two container images from locally built binaries, FROM scratch (no base image is
# pulled, so no registry is needed):
#   ghcr.io/ferrokv/ferrokv:<tag>        placement and store, at /usr/local/bin/<name>
#   ghcr.io/ferrokv/tikv-operator:<tag>  the operator, at /usr/local/bin/operator
# Each image holds its binaries, exactly the shared libraries `ldd` lists plus the dynamic
# loader, an /etc/passwd naming the non-root user 65532, and /tmp; the operator image also holds
# the CA bundle. The ferrokv image is tagged `v<tag>` as well when <tag> starts with a digit:
# TikvCluster `spec.version` (manifests/) names it that way, the chart's appVersion without.
#
#   scripts/images.sh [--debug] [--no-build] [TAG]
#     TAG         default: the chart's appVersion (charts/tikv-operator/Chart.yaml)
#     --debug     package the debug binaries (fast, for tests) instead of a release build
#     --no-build  package the binaries already in the target directory; build nothing
#
# The staging directory is a temporary one under the cargo target directory, never in the
# checkout. Re-running rebuilds it from scratch and reuses Docker's layer cache.
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "images: $*" >&2
  exit 1
}

profile=release
build=1
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --no-build) build=0 ;;
    -h | --help)
      sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [ -z "$tag" ] || die "more than one tag given: $tag and $1"
      tag="$1"
      ;;
  esac
  shift
done

if [ -z "$tag" ]; then
  tag="$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}.*$/\1/p' \
    charts/tikv-operator/Chart.yaml)"
  [ -n "$tag" ] || die "no appVersion in charts/tikv-operator/Chart.yaml; pass a tag"
fi
# Docker's tag grammar: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid image tag: $tag"

command -v docker >/dev/null 2>&1 \
  || die "docker is not installed; it is needed to build images (https://docs.docker.com/engine/install/)"
if ! out="$(docker info 2>&1 >/dev/null)"; then
  die "cannot reach the Docker engine (is it running, and may this user use it?): $out"
fi
command -v ldd >/dev/null 2>&1 || die "ldd is needed to find the binaries' shared libraries"

. scripts/env.sh
if [ "$build" = 1 ]; then
  ./scripts/setup.sh
  flags=()
  [ "$profile" = release ] && flags+=(--release)
  echo "images: cargo build ${flags[*]:-} -p store -p placement -p operator --bins" >&2
  cargo build ${flags[@]+"${flags[@]}"} -p store -p placement -p operator --bins
fi
bin_dir="$CARGO_TARGET_DIR/$profile"
# A fresh staging directory per run, so concurrent runs cannot mix their files.
mkdir -p "$CARGO_TARGET_DIR"
stage_root="$(mktemp -d "$CARGO_TARGET_DIR/images-stage.XXXXXX")"
trap 'rm -rf "$stage_root"' EXIT

# Copies `$2` (an absolute path) into the rootfs `$1` at the same path, following symlinks.
put() {
  local root="$1" path="$2"
  mkdir -p "$root$(dirname "$path")"
  cp -L "$path" "$root$path"
}

# Copies the binary `$2` to /usr/local/bin in the rootfs `$1`, with every library it loads.
put_binary() {
  local root="$1" bin="$2" listing lib
  [ -x "$bin" ] || die "$bin is missing; build it first (or drop --no-build)"
  mkdir -p "$root/usr/local/bin"
  cp -L "$bin" "$root/usr/local/bin/"
  # A static binary has nothing to add ("not a dynamic executable", with a non-zero status).
  listing="$(ldd "$bin" 2>&1)" || return 0
  if grep -q 'not found' <<<"$listing"; then
    die "$bin needs libraries this machine lacks:"$'\n'"$listing"
  fi
  # `libfoo.so => /path (0x...)` and the loader's own `/lib64/ld-linux-x86-64.so.2 (0x...)`;
  # linux-vdso has no path and is provided by the kernel.
  while read -r lib; do
    put "$root" "$lib"
  done < <(sed -n -e 's/^.*=> \(\/[^ ]*\) (0x.*$/\1/p' -e 's/^[[:space:]]*\(\/[^ ]*\) (0x.*$/\1/p' <<<"$listing" | sort -u)
}

# The files every image shares: users, groups and a sticky world-writable /tmp.
put_base() {
  local root="$1"
  mkdir -p "$root/etc" "$root/tmp"
  chmod 1777 "$root/tmp"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$root/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nonroot:x:65532:' >"$root/etc/group"
}

# Builds images/`$1`.Dockerfile with the staging directory `$2` as its context, tagging the
# image with every further argument.
build_image() {
  local dockerfile="images/$1.Dockerfile" stage="$2" tags=() t
  shift 2
  for t in "$@"; do tags+=(-t "$t"); done
  echo "images: docker build ${tags[*]}" >&2
  local out
  if ! out="$(docker build --quiet -f "$dockerfile" --build-arg "VERSION=$tag" "${tags[@]}" "$stage" 2>&1)"; then
    die "docker build of $dockerfile failed:"$'\n'"$out"
  fi
}

ferrokv="$stage_root/ferrokv"
put_base "$ferrokv/rootfs"
put_binary "$ferrokv/rootfs" "$bin_dir/placement"
put_binary "$ferrokv/rootfs" "$bin_dir/store"
mkdir -p "$ferrokv/data/placement" "$ferrokv/data/store"
ferrokv_tags=("ghcr.io/ferrokv/ferrokv:$tag")
[[ "$tag" =~ ^[0-9] ]] && ferrokv_tags+=("ghcr.io/ferrokv/ferrokv:v$tag")
build_image ferrokv "$ferrokv" "${ferrokv_tags[@]}"

operator="$stage_root/operator"
put_base "$operator/rootfs"
put_binary "$operator/rootfs" "$bin_dir/operator"
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || die "$ca is missing (install ca-certificates); the operator needs it for TLS"
put "$operator/rootfs" "$ca"
build_image operator "$operator" "ghcr.io/ferrokv/tikv-operator:$tag"

printf '%s\n' "${ferrokv_tags[@]}" "ghcr.io/ferrokv/tikv-operator:$tag"
