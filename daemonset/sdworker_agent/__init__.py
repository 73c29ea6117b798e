"""sdworker's node agent: one process per GPU node that mounts, verifies and prefetches its runtime disks.

The operator creates a RuntimeDisk per (node, runtime) and attaches the cloud disk; this agent, running in
a privileged DaemonSet pod on that node, finishes the job: it mounts the disk read-only, checks its
manifest digest, warms the page cache, marks the RuntimeDisk ``Ready`` and lifts the node's startup
taint. It holds no cloud credentials and may only touch its own Node and RuntimeDisks (an admission
policy in ``daemonset/manifests`` enforces that). From the operator package it imports
``sdworker.api``, ``sdworker.kube`` (its status updater too) and ``sdworker.workqueue`` (the one reconcile
engine), never its cloud code; the content index it verifies with is ``sdworker_content``, shared with the
image builder.

Modules: ``agent`` (watch and reconcile loop), ``bringup`` (one disk from Attached to Ready), ``plan`` and
``nodepatch`` (pure decisions), ``system`` (the host), ``kubeio``, ``prefetch``, ``mountinfo``, ``metrics``,
``config``.
"""
