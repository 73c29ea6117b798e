"""``sdworker-dev``: developer commands around the local control plane.

``sdworker-dev build``                  build (or find cached) control-plane binaries
``sdworker-dev cluster up [options]``   run a control plane with kwok GPU nodes until Ctrl-C
``sdworker-dev demo [options]``         the whole system, scaled by Karpenter (sdworker_tools.demo)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sdworker_tools.binaries import ensure_built
from sdworker_tools.cluster import LocalCluster


def _cluster_up(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with LocalCluster(log=lambda m: print(m, flush=True)) as cluster:
        for i in range(args.gpu_nodes):
            zone = args.zones[i % len(args.zones)]
            cluster.add_gpu_node(f"gpu-node-{i}", zone=zone)
        if args.kubeconfig:
            Path(args.kubeconfig).write_text(cluster.kubeconfig.read_text())
            kubeconfig = args.kubeconfig
        else:
            kubeconfig = str(cluster.kubeconfig)
        print(cluster.kubectl("get", "nodes", "-o", "wide"), flush=True)
        print(f"export KUBECONFIG={kubeconfig}   # Ctrl-C stops the cluster and removes it", flush=True)
        stop.wait(args.exit_after)
    print("[cluster] stopped; nothing left behind", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sdworker-dev", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or locate the control-plane binaries; print their directory")
    cluster = sub.add_parser("cluster", help="local control plane")
    cluster_sub = cluster.add_subparsers(dest="action", required=True)
    up = cluster_sub.add_parser("up", help="start it and keep it running until Ctrl-C")
    up.add_argument("--gpu-nodes", type=int, default=3, help="kwok GPU nodes to add (default 3)")
    up.add_argument("--zones", nargs="+", default=["us-central1-a", "us-central1-b"])
    up.add_argument("--kubeconfig", help="also copy the admin kubeconfig here (removed copy is yours)")
    up.add_argument("--exit-after", type=float, default=None, help="stop after this many seconds")
    from sdworker_tools import demo

    demo.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.main(args)
    if args.command == "build":
        print(ensure_built().directory)
        return 0
    return _cluster_up(args)


if __name__ == "__main__":
    sys.exit(main())
