#!/usr/bin/env bash
# Build, once, promtool (Prometheus's rule and PromQL checker) from the Go module proxy,
# and fetch the prometheus-operator CRDs (ServiceMonitor, PodMonitor, PrometheusRule, ...)
# that its published Go module ships, into a versioned cache directory. The chart tests
# use both: promtool parses every alert and dashboard expression, and the CRDs let the
# real API server accept the chart's monitoring objects. A second run returns in seconds.
#
#   scripts/build-promtool.sh [all|promtool|crds]     (default: all)
#
# Prometheus 3.x is published to the Go proxy as v0.3XX.Y (the module path has no /v3);
# its go.mod has no replace directives, so a plain `go install` builds it.
set -euo pipefail

PROMETHEUS_VERSION="${HANLIN_PROMETHEUS_VERSION:-v0.316.0}"
PROM_OPERATOR_VERSION="${HANLIN_PROM_OPERATOR_VERSION:-v0.85.0}"
CACHE="${HANLIN_CACHE:-$HOME/.cache/hanlin}"
BIN="$CACHE/prometheus/$PROMETHEUS_VERSION/bin"
CRDS="$CACHE/prometheus-operator/$PROM_OPERATOR_VERSION/crds"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
WHAT="${1:-all}"
case "$WHAT" in all|promtool|crds) ;; *) echo "usage: $0 [all|promtool|crds]" >&2; exit 2 ;; esac

if [ "$WHAT" = crds ]; then
  :
elif [ -x "$BIN/promtool" ]; then
  echo "promtool: present in $BIN (warm)"
else
  echo "promtool: building $PROMETHEUS_VERSION into $BIN"
  mkdir -p "$BIN"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  t0=$(date +%s)
  # v0.316.0 -> 3.16.0: the release number promtool --version should print.
  minor=${PROMETHEUS_VERSION#v0.3}
  release="3.${minor%%.*}.${PROMETHEUS_VERSION##*.}"
  GOBIN="$work/gobin" go install \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$release" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  mv "$work/gobin/promtool" "$BIN/promtool"
  echo "built promtool in $(( $(date +%s) - t0 ))s"
fi

if [ "$WHAT" = promtool ]; then
  :
elif [ -f "$CRDS/.complete" ]; then
  echo "prometheus-operator CRDs: present in $CRDS (warm)"
else
  mkdir -p "$CRDS"
  dir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  # example/prometheus-operator-crd/ holds the CRDs as the project releases them
  # (the -full variant adds descriptions we do not need).
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_*.yaml "$CRDS/"
  chmod u+w "$CRDS"/*.yaml
  touch "$CRDS/.complete"
  echo "prometheus-operator CRDs: $(ls "$CRDS"/*.yaml | wc -l) files in $CRDS"
fi
