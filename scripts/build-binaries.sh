#!/usr/bin/env bash
# Build, once, the real control-plane binaries the tests run (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl), helm and versitygw (a real S3
# server), all from the Go module proxy, into a versioned cache directory.
# A second run finds them and returns in seconds.
#
# Kubernetes and etcd cannot be `go install`ed directly: their go.mod files map
# sibling modules with `replace` directives, which only the main module may use.
# So each is built from a small wrapper module that requires the release and
# restates those replaces against published versions, read from the release's
# own go.mod so that a version bump needs no edits here.
set -euo pipefail

K8S_VERSION="${HANLIN_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${HANLIN_ETCD_VERSION:-v3.6.16}"
HELM_VERSION="${HANLIN_HELM_VERSION:-v3.21.4}"
VERSITYGW_VERSION="${HANLIN_VERSITYGW_VERSION:-v1.8.0}"
CACHE="${HANLIN_CACHE:-$HOME/.cache/hanlin}"
OUT="$CACHE/k8s/$K8S_VERSION"
BIN="$OUT/bin"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"

want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl helm versitygw)
missing=()
for b in "${want[@]}"; do [ -x "$BIN/$b" ] || missing+=("$b"); done
# A helm built before it carried its Kubernetes version (see below) is rebuilt once.
if [ -x "$BIN/helm" ] && [ ! -f "$BIN/helm.kube-version" ]; then missing+=(helm); fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "binaries: all present in $BIN (warm)"; exit 0
fi
echo "binaries: building ${missing[*]} into $BIN"
mkdir -p "$BIN"
start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

has() { printf '%s\n' "${missing[@]}" | grep -qx "$1"; }

# wrapper MODULE VERSION DIR PATTERN: a module requiring MODULE@VERSION with every
# `replace X => ./staging/...` (or ../x) of its go.mod restated as `X => X <ver>`.
wrapper() {
  local mod=$1 ver=$2 dir=$3 stagever=$4
  mkdir -p "$dir"
  local gomod
  gomod=$(go mod download -json "$mod@$ver" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module hanlin.dev/buildwrapper"
    echo
    awk '/^go [0-9]/{print; exit}' "$gomod"
    echo
    echo "require $mod $ver"
    echo
    # local replaces in the published go.mod: "X => ./staging/src/X" or "X => ../X"
    # (etcd also replaces modules it forbids with ./FORBIDDEN_DEPENDENCY: not ours to map)
    grep -v FORBIDDEN_DEPENDENCY "$gomod" | sed -n 's/^[[:space:]]*\(replace[[:space:]]\+\)\?\([^ ]\+\)[[:space:]]\+=>[[:space:]]\+\.\.\?\/.*$/\2/p' |
      while read -r m; do echo "replace $m => $m $stagever"; done
  } > "$dir/go.mod"
}

if has kube-apiserver || has kube-controller-manager || has kube-scheduler || has kubectl; then
  w="$work/k8s"
  wrapper k8s.io/kubernetes "$K8S_VERSION" "$w" "v0.${K8S_VERSION#v1.}"
  cat > "$w/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$w" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    has "$b" || continue
    t0=$(date +%s)
    (cd "$w" && go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.}" -o "$BIN/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$BIN/$b.tmp" "$BIN/$b"; echo "built $b in $(( $(date +%s) - t0 ))s"
  done
fi

if has etcd; then
  w="$work/etcd"
  wrapper go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$w" "$ETCD_VERSION"
  cat > "$w/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  (cd "$w" && go mod tidy >/dev/null 2>&1 || go mod tidy)
  t0=$(date +%s)
  (cd "$w" && go build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"; echo "built etcd in $(( $(date +%s) - t0 ))s"
fi

if has helm; then
  t0=$(date +%s)
  # helm's Makefile stamps the Kubernetes version of its client-go (the default of
  # .Capabilities.KubeVersion and of lint's deprecation checks); without it a source
  # build says v1.20.
  helm_gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  kube_minor=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm_gomod")
  [ -n "$kube_minor" ] || { echo "no k8s.io/client-go in helm's go.mod" >&2; exit 1; }
  kube_x="-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kube_minor"
  kube_x+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kube_minor"
  GOBIN="$work/gobin" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION $kube_x" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$work/gobin/helm" "$BIN/helm"; echo "v1.$kube_minor" > "$BIN/helm.kube-version"
  echo "built helm (Kubernetes v1.$kube_minor) in $(( $(date +%s) - t0 ))s"
fi

if has versitygw; then
  t0=$(date +%s)
  GOBIN="$work/gobin" go install -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv "$work/gobin/versitygw" "$BIN/versitygw"; echo "built versitygw in $(( $(date +%s) - t0 ))s"
fi

echo "binaries: cold build took $(( $(date +%s) - start ))s"
