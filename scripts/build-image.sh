#!/usr/bin/env bash
# Build Hanlin's images without a Docker engine (buildah), then run each one
# (podman, read-only root filesystem, no network) to prove it starts.
#
#   scripts/build-image.sh [TARGET...]     TARGET: operator (default), runtime
#
# BASE_IMAGE (the Dockerfile's build argument) defaults here to a local Debian base
# built from a debootstrap'd rootfs, for machines that reach Debian's and Python's
# package registries but no container registry. Set BASE_IMAGE to use another
# (e.g. the Dockerfile's own default, an official Python slim image).
# The rootfs tarball is cached under $HANLIN_CACHE/images; buildah's layer cache
# makes a rebuild with unchanged dependencies take seconds.
#
# The local base trusts the same extra CAs as this host (a TLS-inspecting proxy is
# common in CI) and points pip at the system bundle; the Dockerfile does not.
#
# TORCH_INDEX_URL (the runtime target's torch wheel index) defaults to the
# Dockerfile's (PyTorch's CPU index); set it to https://pypi.org/simple where only
# PyPI is reachable (its Linux torch is the CUDA build: a GPU-capable, larger image).
# This host's pip cache is the build's pip cache (a volume), so wheels downloaded
# once are not downloaded again; HANLIN_PIP_CACHE=none builds without it.
#
# Containers here run with the chroot isolation (build) and runc with cgroupfs
# (run): crun refuses hybrid cgroup hosts. The storage driver is overlay where
# the kernel allows it and the store is not already vfs, else vfs (which works
# where overlay-on-overlay does not, but copies every layer whole: a runtime
# image with CUDA torch then needs tens of GB).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${HANLIN_CACHE:-$HOME/.cache/hanlin}"
SUITE="${HANLIN_BASE_SUITE:-bookworm}"
TAG="${HANLIN_IMAGE_TAG:-dev}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(operator)
if [ -z "${STORAGE_DRIVER:-}" ]; then
  STORAGE_DRIVER=vfs
  podman --storage-driver overlay images >/dev/null 2>&1 && STORAGE_DRIVER=overlay
fi
export STORAGE_DRIVER
BUILDAH=(buildah --storage-driver "$STORAGE_DRIVER")
PODMAN=(podman --storage-driver "$STORAGE_DRIVER" --runtime runc --cgroup-manager cgroupfs)
t_start=$(date +%s)

need=()
for tool in buildah podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need[*]}: install them (Debian: apt-get install -y buildah podman runc debootstrap)" >&2
    exit 2
  fi
  echo "image: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah podman runc debootstrap >/dev/null
fi

# The Debian mirror this host's apt already uses (so no host is named here).
mirror() {
  local uri
  uri=$(grep -rhoE '^(URIs:|deb) +[^ ]*debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null |
    awk '{print $2}' | head -n1)
  [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt sources" >&2; exit 2; }
  echo "$uri"
}

base_image() {
  local image="localhost/hanlin-base:$SUITE" tarball="$CACHE/images/base-$SUITE.tar"
  if "${BUILDAH[@]}" inspect --type image "$image" >/dev/null 2>&1; then
    echo "$image"; return
  fi
  mkdir -p "$CACHE/images"
  if [ ! -f "$tarball" ]; then
    local work t0
    work=$(mktemp -d); t0=$(date +%s)
    echo "image: debootstrap $SUITE (python3, venv, CA certificates)" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$SUITE" "$work/rootfs" "$(mirror)" >"$work/debootstrap.log" 2>&1 ||
      { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
      cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
      chroot "$work/rootfs" update-ca-certificates >/dev/null
    fi
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$work/rootfs/etc/pip.conf"
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/* \
      "$work"/rootfs/usr/share/{doc,man,locale}
    tar -C "$work/rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"; rm -rf "$work"
    echo "image: rootfs built in $(( $(date +%s) - t0 ))s" >&2
  fi
  local ctx
  ctx=$(mktemp -d)
  ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/bash"]\n' >"$ctx/Containerfile"
  "${BUILDAH[@]}" bud --isolation chroot -q -f "$ctx/Containerfile" -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
  echo "$image"
}

# The versions of the base dependencies this checkout was tested with (when installed
# here), so the image runs what the test suite ran.
constraints=$(python3 - <<'PY'
import re, tomllib
from importlib import metadata
out = ["python-dateutil<3"]
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["runtime"]:
    name = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]
    try:
        out.append(f"{name}=={metadata.version(name)}")
    except metadata.PackageNotFoundError:
        pass
print(" ".join(out))
PY
)
BASE="${BASE_IMAGE:-$(base_image)}"
echo "image: base $BASE (storage driver $STORAGE_DRIVER)"
extra=()
[ -z "${TORCH_INDEX_URL:-}" ] || extra+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")
pip_cache="${HANLIN_PIP_CACHE:-$(python3 -m pip cache dir 2>/dev/null || true)}"
if [ -n "$pip_cache" ] && [ "$pip_cache" != none ]; then
  mkdir -p "$pip_cache"
  extra+=(--volume "$pip_cache:/var/cache/pip")
fi
for target in "${targets[@]}"; do
  t0=$(date +%s)
  "${BUILDAH[@]}" bud --isolation chroot --network host --layers \
    --build-arg "BASE_IMAGE=$BASE" --build-arg "PIP_CONSTRAINTS=$constraints" \
    --build-arg "VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" \
    --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "${extra[@]}" --target "$target" -t "localhost/hanlin-$target:$TAG" -f Dockerfile . >"${TMPDIR:-/tmp}/hanlin-build-$target.log" 2>&1 ||
    { tail -n 40 "${TMPDIR:-/tmp}/hanlin-build-$target.log" >&2; exit 1; }
  size=$("${BUILDAH[@]}" inspect --type image --format '{{.Size}}' "localhost/hanlin-$target:$TAG" 2>/dev/null ||
    "${PODMAN[@]}" image inspect --format '{{.Size}}' "localhost/hanlin-$target:$TAG")
  echo "image: built localhost/hanlin-$target:$TAG in $(( $(date +%s) - t0 ))s, $(( size / 1000000 )) MB"
  # Run it as Kubernetes would: read-only root, its own uid, no network, the chart's
  # writable emptyDirs as tmpfs.
  opts=(run --rm --read-only --network none --tmpfs /tmp --tmpfs /cache
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
  run=("${PODMAN[@]}" "${opts[@]}" "localhost/hanlin-$target:$TAG")
  "${run[@]}" --help >/dev/null
  if [ "$target" = operator ]; then "${run[@]}" operator run --help >/dev/null; fi
  if [ "$target" = runtime ]; then
    "${run[@]}" train --help >/dev/null
    "${PODMAN[@]}" "${opts[@]}" --entrypoint python "localhost/hanlin-$target:$TAG" -c \
      'import os, torch, transformers; assert os.getuid() != 0, "runs as root"; print(f"image: torch {torch.__version__}, transformers {transformers.__version__}, uid {os.getuid()}")'
  fi
  echo "image: localhost/hanlin-$target:$TAG runs with a read-only root filesystem"
done
echo "image: done in $(( $(date +%s) - t_start ))s"
