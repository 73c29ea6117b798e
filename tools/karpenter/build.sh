#!/usr/bin/env bash
# Builds the rig's Karpenter (upstream sigs.k8s.io/karpenter controllers with the GCE-shaped kwok
# provider in this folder) from the Go module proxy into a cache outside the repository, keyed by
# the inputs' hash (go.mod, go.sum, *.go, this script, tools/lib/gobuild.sh). A second run with the
# same inputs is a no-op. Prints the cache directory as the last line of stdout; progress goes to stderr.
#
# The cache directory holds the `karpenter` binary and `crds/`: the CRDs of that Karpenter
# version (NodePool, NodeClaim, NodeOverlay, KWOKNodeClass), copied from the module, so the
# launcher applies exactly the CRDs the binary was built against. They are the kwok chart's
# copies, which (hack/kwok/requirements.sh upstream) allow the karpenter.kwok.sh label domain.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/gobuild.sh"
KARPENTER_VERSION=$(awk '$1 == "sigs.k8s.io/karpenter" { print $2 }' "$here/go.mod")
# sigs.k8s.io/karpenter v1.15.0 declares `go 1.26.9`; the go command fetches this toolchain
# through the module proxy when the installed one is older (seconds, cached in GOMODCACHE).
GO_TOOLCHAIN=go1.26.9
gobuild_setup karpenter "$KARPENTER_VERSION" "$here/go.mod" "$here/go.sum" "$here"/*.go "$here/build.sh"
gobuild_exit_if_cached "$GOBUILD_OUT" karpenter

gobuild_start "$GO_TOOLCHAIN" "$GOBUILD_OUT" karpenter
gobuild_log "building Karpenter $KARPENTER_VERSION (GCE-shaped kwok provider, $GO_TOOLCHAIN) into $GOBUILD_OUT (cold build: ~5 min on 2 cores)"
( cd "$here"
  total=$(gobuild_modules .)
  gobuild_go "" "$total" build -v -ldflags "-s -w -X sigs.k8s.io/karpenter/pkg/operator.Version=$KARPENTER_VERSION" \
    -o "$GOBUILD_TMP/karpenter" .
  module=$(go list -m -f '{{.Dir}}' sigs.k8s.io/karpenter)
  mkdir -p "$GOBUILD_TMP/crds"
  cp "$module"/kwok/charts/crds/karpenter.sh_*.yaml "$module"/kwok/apis/crds/*.yaml "$GOBUILD_TMP/crds/"
  chmod -R u+w "$GOBUILD_TMP/crds"
)
gobuild_install "$GOBUILD_OUT"
