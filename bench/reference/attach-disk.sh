#!/usr/bin/env bash
# The reference: what users run today, re-created (written for this benchmark from the behaviour described
# in ../../../shared/research/seed_repos.md §1.3-1.4; no code copied) so it can be timed against the same
# compute API simulator as sdworker. One copy runs per node, as the published DaemonSet's init container
# (attach-disk.sh) followed by its mount container (startup-script:v2, which retries every 30 s).
#
#   1. the node's zone: instances list filtered by name;  2. describe the instance: a sd-lib-disk- already
#   attached ends here;  3. the project (config get-value);  4. disks list named ^sd-lib-disk in the zone,
#   shuffled;  5. describe each until one has no users, attach it (on failure: sleep 5, next one);
#   6. none free: disks create --image, then attach;  7. mount the device, retrying every 30 s.
#
# Inputs (env): MY_NODE_NAME, IMAGE_NAME, CLOUDSDK_CONFIG (a gcloud configuration pointing at the
# simulator: tools/sdworker_tools/computesim/gcloud.py), DEV_ROOT (the node's /dev in the simulator),
# MOUNT_DIR (the node's /var/lib/runtime-lib), MARKS (a file: one "step epoch-seconds" line per step done).
#
# Deviations, each in the reference's favour or needed to run here: `value(zone.basename())` instead of
# `value(zone)` (gcloud prints a zone URL otherwise); the device is the simulator's by-id link of the first
# attached disk instead of /dev/sdb; the mount is read-only without journal replay (`ro,noload`, as
# sdworker's agent mounts); the published `sleep 10` after mounting and the marker file are left out, and the
# clock starts when the node is created (no pod scheduling or image pull). Like the original: no set -e.

mark() { echo "$1 $(date +%s.%N)" >> "$MARKS"; }

mark start
ZONE=$(gcloud compute instances list --filter="name:$MY_NODE_NAME" --format="value(zone.basename())" --quiet)
mark zone
attached=$(gcloud compute instances describe "$MY_NODE_NAME" --zone="$ZONE" --quiet | grep sd-lib-disk-)
mark describe
if [ "$attached" != "" ]; then
    echo "node $MY_NODE_NAME already has a disk attached"
else
    flag=0
    PROJECT_ID=$(gcloud config get-value project --quiet 2>/dev/null)
    mark project
    disks=$(gcloud compute disks list --zones="$ZONE" --format="value(name)" --filter="name ~ ^sd-lib-disk" --quiet)
    mark list
    disks_arr=($disks)
    if [ ${#disks_arr[@]} -gt 0 ]; then disks_arr=($(shuf -e "${disks_arr[@]}")); fi
    for i in "${disks_arr[@]}"; do
        users=$(gcloud compute disks describe "$i" --zone="$ZONE" --format="value(users)" --quiet)
        mark describe-disk
        if [ "$users" = "" ]; then
            gcloud compute instances attach-disk "$MY_NODE_NAME" --disk="projects/$PROJECT_ID/zones/$ZONE/disks/$i" --zone="$ZONE" --quiet
            rc=$?
            if [ "$rc" -eq 0 ]; then flag=1; mark attach; break
            else echo "disk $i is free, but booked by another node"; sleep 5; continue; fi
        else
            echo "disk $i is busy"
        fi
    done
    if [ $flag = 0 ]; then
        # The published name has no day and one-second resolution (it collides); the node name keeps
        # parallel runs apart here.
        NOW=$(date +"%Y%m%H%M%S")
        gcloud compute disks create "sd-lib-disk-$NOW-$MY_NODE_NAME" --type=pd-balanced --size=30GB --zone="$ZONE" --image="$IMAGE_NAME" --quiet
        mark create
        gcloud compute instances attach-disk "$MY_NODE_NAME" --disk="projects/$PROJECT_ID/zones/$ZONE/disks/sd-lib-disk-$NOW-$MY_NODE_NAME" --zone="$ZONE" --quiet
        mark attach
    fi
fi

# The mount container: retry every 30 s until the mount succeeds.
mkdir -p "$MOUNT_DIR"
until dev=$(ls "$DEV_ROOT"/disk/by-id/google-persistent-disk-* 2>/dev/null | head -n1) && [ -n "$dev" ] \
        && mount -o ro,noload "$(readlink -f "$dev")" "$MOUNT_DIR"; do
    mark mount-retry
    sleep 30
done
mark mounted
