#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into a cache outside the repository, keyed by
# the inputs' hash (go.mod, go.sum, this script, tools/lib/gobuild.sh). A second run with the same
# inputs is a no-op. Prints the path of the helm binary as the last line of stdout; progress goes to stderr.
#
# The wrapper module pins helm and every dependency (go.sum is committed) and names helm's
# main package with a `tool` directive, so `go build` builds exactly the pinned graph.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/gobuild.sh"
HELM_VERSION=$(awk '$1 == "helm.sh/helm/v3" { print $2 }' "$here/go.mod")
gobuild_setup helm "$HELM_VERSION" "$here/go.mod" "$here/go.sum" "$here/build.sh"
gobuild_exit_if_cached "$GOBUILD_OUT/helm" helm

gobuild_start local "$GOBUILD_OUT/helm" helm
gobuild_log "building helm $HELM_VERSION into $GOBUILD_OUT"
( cd "$here"
  total=$(gobuild_modules helm.sh/helm/v3/cmd/helm)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  # As helm's Makefile does: the default Kubernetes version (`helm template`, `helm lint`) is the one of
  # the client-go helm is built with (v0.37 -> 1.37), not the library's fallback 1.20.
  k8s=$(go list -f '{{.Version}}' -m k8s.io/client-go)
  minor=$(cut -d. -f2 <<<"$k8s")
  for pkg in chartutil lint/rules; do
    ldflags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$minor"
  done
  gobuild_go "" "$total" build -v -ldflags "$ldflags" -o "$GOBUILD_TMP/helm" helm.sh/helm/v3/cmd/helm
)
"$GOBUILD_TMP/helm" version --short >&2
gobuild_install "$GOBUILD_OUT/helm"
