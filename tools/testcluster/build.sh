#!/usr/bin/env bash
# Builds the real Kubernetes control plane (one multi-call binary: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) and kwok from the Go module proxy,
# into a cache outside the repository keyed by the inputs' hash (go.mod, go.sum, main.go, this
# script, tools/lib/gobuild.sh). A second run with the same inputs is a no-op. Prints the cache
# directory as the last line of stdout.
#
# Why a script and not `go install`: k8s.io/kubernetes cannot be `go install`ed (its
# staging modules are required at v0.0.0), so it is built from the wrapper module in
# this folder, whose replace directives pin every staging module to the release.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/gobuild.sh"
K8S_VERSION=v1.36.3
KWOK_VERSION=v0.8.0
gobuild_setup testcluster "$K8S_VERSION-kwok$KWOK_VERSION" "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh"
gobuild_exit_if_cached "$GOBUILD_OUT" testcluster kwok

gobuild_start local "$GOBUILD_OUT" testcluster kwok
gobuild_log "building Kubernetes $K8S_VERSION control plane into $GOBUILD_OUT (cold build: ~20-30 min on 2 cores)"
( cd "$here"
  total=$(gobuild_modules .)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  gobuild_go "control plane" "$total" build -v -ldflags "$ldflags" -o "$GOBUILD_TMP/testcluster" .
)
gobuild_log "control plane built in $(($(date +%s) - GOBUILD_STARTED))s"

kstart=$(date +%s)
gobuild_log "building kwok $KWOK_VERSION..."
GOBIN="$GOBUILD_TMP" gobuild_go kwok 600 install -v -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
gobuild_log "kwok built in $(($(date +%s) - kstart))s"

# kwok v0.8.0 has no built-in stages; ship the upstream "fast" node/pod stages with the binary.
stages=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage
mkdir -p "$GOBUILD_TMP/stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
  cp "$stages/$f" "$GOBUILD_TMP/stages/"
done
chmod -R u+w "$GOBUILD_TMP/stages"

for c in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  ln -s testcluster "$GOBUILD_TMP/$c"
done
gobuild_install "$GOBUILD_OUT"
ls -la "$GOBUILD_OUT" >&2
