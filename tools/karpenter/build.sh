#!/usr/bin/env bash
# Builds the rig's Karpenter (upstream sigs.k8s.io/karpenter controllers with the GCE-shaped kwok
# provider in this folder) from the Go module proxy into a cache outside the repository, keyed by
# the inputs' hash (go.mod, go.sum, *.go, this script). A second run with the same inputs is a
# no-op. Prints the cache directory as the last line of stdout; progress goes to stderr.
#
# The cache directory holds the `karpenter` binary and `crds/`: the CRDs of that Karpenter
# version (NodePool, NodeClaim, NodeOverlay, KWOKNodeClass), copied from the module, so the
# launcher applies exactly the CRDs the binary was built against. They are the kwok chart's
# copies, which (hack/kwok/requirements.sh upstream) allow the karpenter.kwok.sh label domain.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
KARPENTER_VERSION=$(awk '$1 == "sigs.k8s.io/karpenter" { print $2 }' "$here/go.mod")
# sigs.k8s.io/karpenter v1.15.0 declares `go 1.26.9`; the go command fetches this toolchain
# through the module proxy when the installed one is older (seconds, cached in GOMODCACHE).
GO_TOOLCHAIN=go1.26.9
cache_root=${SDWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sdworker}
key=$(cat "$here/go.mod" "$here/go.sum" "$here"/*.go "$here/build.sh" | sha256sum | cut -c1-16)
out="$cache_root/karpenter/$KARPENTER_VERSION-$key"

log() { printf '[karpenter] %s\n' "$*" >&2; }

if [[ -x "$out/karpenter" && -f "$out/.complete" ]]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { log "Go is required (not found on PATH)"; exit 1; }
export GOTOOLCHAIN=$GO_TOOLCHAIN CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

progress() {
  local total=$1
  awk -v total="$total" '
    /^#|: / { print > "/dev/stderr"; fflush("/dev/stderr"); next }
    { n++; step = int(total / 20); if (step < 1) step = 1
      if (n % step == 0) { printf "[karpenter] %d/~%d packages compiled\n", n, total > "/dev/stderr"; fflush("/dev/stderr") } }'
}

start=$(date +%s)
log "building Karpenter $KARPENTER_VERSION (GCE-shaped kwok provider, $GO_TOOLCHAIN) into $out (cold build: ~5 min on 2 cores)"
( cd "$here"
  log "downloading modules..."
  go mod download
  total=$(go list -deps . | wc -l)
  go build -v -ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=$KARPENTER_VERSION" \
    -o "$tmp/karpenter" . 2>&1 | progress "$total"
  test "${PIPESTATUS[0]}" -eq 0
  module=$(go list -m -f '{{.Dir}}' sigs.k8s.io/karpenter)
  mkdir -p "$tmp/crds"
  cp "$module"/kwok/charts/crds/karpenter.sh_*.yaml "$module"/kwok/apis/crds/*.yaml "$tmp/crds/"
  chmod -R u+w "$tmp/crds"
)
touch "$tmp/.complete"
rm -rf "$out"; mv "$tmp" "$out"; trap - EXIT
log "done in $(( $(date +%s) - start ))s: $(du -sh "$out" | cut -f1) in $out"
echo "$out"
