"""sdworker's node agent: one process per GPU node that mounts, verifies and prefetches its runtime disks.

The operator creates a RuntimeDisk per (node, runtime) and attaches the cloud disk; this agent, running in
a privileged DaemonSet pod on that node, finishes the job: it mounts the disk read-only, checks its
manifest digest, warms the page cache, marks the RuntimeDisk ``Ready`` and lifts the node's startup
taint. It holds no cloud credentials and may only touch its own Node and RuntimeDisks (an admission
policy in ``daemonset/manifests`` enforces that). It imports ``sdworker.api``, ``sdworker.kube`` and
``sdworker.manifest`` from the operator package, nothing else.
"""
