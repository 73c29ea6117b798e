#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy into a cache outside the repository, keyed by
# the inputs' hash (go.mod, go.sum, this script). A second run with the same inputs is a no-op.
# Prints the path of the helm binary as the last line of stdout; progress goes to stderr.
#
# The wrapper module pins helm and every dependency (go.sum is committed) and names helm's
# main package with a `tool` directive, so `go build` builds exactly the pinned graph.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
HELM_VERSION=$(awk '$1 == "helm.sh/helm/v3" { print $2 }' "$here/go.mod")
cache_root=${SDWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sdworker}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
out="$cache_root/helm/$HELM_VERSION-$key"

log() { printf '[helm] %s\n' "$*" >&2; }

if [[ -x "$out/helm" && -f "$out/.complete" ]]; then
  log "cached: $out/helm"
  echo "$out/helm"
  exit 0
fi

command -v go >/dev/null || { log "Go >= 1.26 is required (not found on PATH)"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

progress() {
  local total=$1
  awk -v total="$total" '
    /^#|: / { print > "/dev/stderr"; fflush("/dev/stderr"); next }
    { n++; step = int(total / 20); if (step < 1) step = 1
      if (n % step == 0) { printf "[helm] %d/~%d packages compiled\n", n, total > "/dev/stderr"; fflush("/dev/stderr") } }'
}

start=$(date +%s)
log "building helm $HELM_VERSION into $out"
( cd "$here"
  log "downloading modules..."
  go mod download
  total=$(go list -deps helm.sh/helm/v3/cmd/helm | wc -l)
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  # As helm's Makefile does: the default Kubernetes version (`helm template`, `helm lint`) is the one of
  # the client-go helm is built with (v0.37 -> 1.37), not the library's fallback 1.20.
  k8s=$(go list -f '{{.Version}}' -m k8s.io/client-go)
  minor=$(cut -d. -f2 <<<"$k8s")
  for pkg in chartutil lint/rules; do
    ldflags+=" -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$minor"
  done
  go build -v -ldflags "$ldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm 2>&1 | progress "$total"
  test "${PIPESTATUS[0]}" -eq 0
)
"$tmp/helm" version --short >&2
touch "$tmp/.complete"
rm -rf "$out"; mv "$tmp" "$out"; trap - EXIT
log "done in $(( $(date +%s) - start ))s: $(du -sh "$out/helm" | cut -f1) $out/helm"
echo "$out/helm"
