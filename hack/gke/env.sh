# Settings shared by the hack/gke scripts. Override any of them in the environment before sourcing.
# shellcheck shell=bash
: "${PROJECT:?set PROJECT to your GCP project id}"
: "${REGION:=us-central1}"
: "${ZONE:=us-central1-a}"
: "${NODE_LOCATIONS:=$ZONE}"                 # comma-separated zones for the GPU pool
: "${CLUSTER:=sdworker}"
: "${RELEASE_CHANNEL:=regular}"              # GKE 1.32+ (pod-bound token node names for the agent policy)
: "${GPU_POOL:=gpu-t4}"
: "${GPU_TYPE:=nvidia-tesla-t4}"
: "${GPU_COUNT:=1}"
: "${MACHINE_TYPE:=n1-standard-8}"
: "${GPU_MIN_NODES:=0}"
: "${GPU_MAX_NODES:=10}"
: "${NAMESPACE:=sdworker-system}"
: "${RELEASE:=sdworker}"
: "${GSA_NAME:=sdworker-operator}"
: "${ROLE_ID:=sdworkerOperator}"
: "${REGISTRY:=$REGION-docker.pkg.dev/$PROJECT/sdworker}"
: "${VERSION:=0.1.0}"
GSA_EMAIL="$GSA_NAME@$PROJECT.iam.gserviceaccount.com"
# The KSA the chart creates for the operator: <release>-sdworker-operator, or <release>-operator when the
# release name already contains "sdworker" (the chart's fullname rule).
if [[ $RELEASE == *sdworker* ]]; then KSA="$RELEASE-operator"; else KSA="$RELEASE-sdworker-operator"; fi
STARTUP_TAINT="startup-taint.cluster-autoscaler.kubernetes.io/sdworker=pending:NoSchedule"
export PROJECT REGION ZONE NODE_LOCATIONS CLUSTER GPU_POOL NAMESPACE RELEASE GSA_EMAIL KSA STARTUP_TAINT
