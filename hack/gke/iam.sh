#!/usr/bin/env bash
# The operator's GCP identity: a service account holding only the custom sdworker role, usable only by the
# operator's Kubernetes ServiceAccount through Workload Identity. No key is ever created.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
set -x

if gcloud iam roles describe "$ROLE_ID" --project="$PROJECT" >/dev/null 2>&1; then
  gcloud iam roles update "$ROLE_ID" --project="$PROJECT" --file="$here/sdworker-operator-role.yaml" --quiet
else
  gcloud iam roles create "$ROLE_ID" --project="$PROJECT" --file="$here/sdworker-operator-role.yaml"
fi

gcloud iam service-accounts describe "$GSA_EMAIL" --project="$PROJECT" >/dev/null 2>&1 ||
  gcloud iam service-accounts create "$GSA_NAME" --project="$PROJECT" \
    --display-name="sdworker operator (runtime disks)"

gcloud projects add-iam-policy-binding "$PROJECT" \
  --member="serviceAccount:$GSA_EMAIL" --role="projects/$PROJECT/roles/$ROLE_ID" --condition=None

# Only the operator's KSA in $NAMESPACE may act as the GSA.
gcloud iam service-accounts add-iam-policy-binding "$GSA_EMAIL" --project="$PROJECT" \
  --role=roles/iam.workloadIdentityUser \
  --member="serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/$KSA]"
