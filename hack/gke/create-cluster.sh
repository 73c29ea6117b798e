#!/usr/bin/env bash
# A GKE cluster for sdworker: Workload Identity, Image Streaming, the optimize-utilization autoscaling
# profile, and a GPU node pool that scales from zero with the sdworker startup taint.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
set -x

gcloud services enable container.googleapis.com compute.googleapis.com containerfilesystem.googleapis.com \
  artifactregistry.googleapis.com --project="$PROJECT"

# System pool: the operator and other controllers run here (no GPU). Image Streaming is a cluster
# default for new pools; Workload Identity gives pods their own GCP identities (no node credentials).
gcloud container clusters create "$CLUSTER" \
  --project="$PROJECT" --region="$REGION" --node-locations="$ZONE" \
  --release-channel="$RELEASE_CHANNEL" \
  --workload-pool="$PROJECT.svc.id.goog" \
  --enable-image-streaming \
  --autoscaling-profile=optimize-utilization \
  --machine-type=e2-standard-4 --num-nodes=1 \
  --enable-autoscaling --min-nodes=1 --max-nodes=3

# GPU pool: scales from 0. The startup taint keeps SD pods off a new node until the sdworker agent has
# mounted and verified its runtime disk; the cluster-autoscaler treats the startup-taint prefix as
# transient, so it still scales up for pending SD pods. GKE installs the NVIDIA driver (gpu-driver-version).
gcloud container node-pools create "$GPU_POOL" \
  --project="$PROJECT" --region="$REGION" --cluster="$CLUSTER" --node-locations="$NODE_LOCATIONS" \
  --machine-type="$MACHINE_TYPE" \
  --accelerator="type=$GPU_TYPE,count=$GPU_COUNT,gpu-driver-version=default" \
  --enable-image-streaming \
  --workload-metadata=GKE_METADATA \
  --enable-autoscaling --min-nodes="$GPU_MIN_NODES" --max-nodes="$GPU_MAX_NODES" \
  --node-taints="$STARTUP_TAINT" \
  --num-nodes=0

gcloud container clusters get-credentials "$CLUSTER" --project="$PROJECT" --region="$REGION"
