#!/usr/bin/env bash
# Install (or upgrade) the chart with the operator bound to its GCP service account.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/env.sh"
helm=${HELM:-$("$repo/tools/helm/build.sh")}
set -x
"$helm" upgrade --install "$RELEASE" "$repo/charts/sdworker" \
  --namespace="$NAMESPACE" --create-namespace \
  --set-string=operator.image.repository="$REGISTRY/sdworker-operator" \
  --set-string=operator.image.tag="$VERSION" \
  --set-string=agent.image.repository="$REGISTRY/sdworker-agent" \
  --set-string=agent.image.tag="$VERSION" \
  --set-string=operator.clusterName="$CLUSTER" \
  --set-string=operator.serviceAccount.gcpServiceAccount="$GSA_EMAIL" \
  "$@" \
  --wait
kubectl -n "$NAMESPACE" get deploy,ds,sa
