#!/usr/bin/env bash
# Builds the real Kubernetes control plane (one multi-call binary: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) and kwok from the Go module proxy,
# into a cache outside the repository keyed by the inputs' hash. A second run with the
# same inputs is a no-op. Prints the cache directory as the last line of stdout.
#
# Why a script and not `go install`: k8s.io/kubernetes cannot be `go install`ed (its
# staging modules are required at v0.0.0), so it is built from the wrapper module in
# this folder, whose replace directives pin every staging module to the release.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
cache_root=${SDWORKER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sdworker}
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh" | sha256sum | cut -c1-16)
out="$cache_root/testcluster/$K8S_VERSION-kwok$KWOK_VERSION-$key"

log() { printf '[testcluster] %s\n' "$*" >&2; }

if [[ -x "$out/testcluster" && -x "$out/kwok" && -f "$out/.complete" ]]; then
  log "cached: $out"
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { log "Go >= 1.26 is required (not found on PATH)"; exit 1; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"
tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# `go build -v` names each package as it is compiled; turn that into a progress line
# every ~5% so a cold build (tens of minutes on 2 cores) is visibly alive.
progress() {
  local what=$1 total=$2
  awk -v what="$what" -v total="$total" '
    /^#|: / { print > "/dev/stderr"; fflush("/dev/stderr"); next }
    { n++; step = int(total / 20); if (step < 1) step = 1
      if (n % step == 0) { printf "[testcluster] %s: %d/~%d packages compiled\n", what, n, total > "/dev/stderr"; fflush("/dev/stderr") } }'
}

start=$(date +%s)
log "building Kubernetes $K8S_VERSION control plane into $out (cold build: ~20-30 min on 2 cores)"
( cd "$here"
  log "downloading modules..."
  go mod download
  total=$(go list -deps . | wc -l)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  go build -v -ldflags "$ldflags" -o "$tmp/testcluster" . 2>&1 | progress "control plane" "$total"
  test "${PIPESTATUS[0]}" -eq 0
)
log "control plane built in $(( $(date +%s) - start ))s"

kstart=$(date +%s)
log "building kwok $KWOK_VERSION..."
GOBIN="$tmp" GOFLAGS="-trimpath -buildvcs=false" go install -v -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" 2>&1 | progress "kwok" 600
test "${PIPESTATUS[0]}" -eq 0
log "kwok built in $(( $(date +%s) - kstart ))s"

# kwok v0.8.0 has no built-in stages; ship the upstream "fast" node/pod stages with the binary.
stages=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
mkdir -p "$tmp/stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cp "$stages/$f" "$tmp/stages/"
done
chmod -R u+w "$tmp/stages"

for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  ln -s testcluster "$tmp/$c"
done
touch "$tmp/.complete"
rm -rf "$out"; mv "$tmp" "$out"; trap - EXIT
log "done in $(( $(date +%s) - start ))s: $(du -sh "$out" | cut -f1) in $out"
ls -la "$out" >&2
echo "$out"
