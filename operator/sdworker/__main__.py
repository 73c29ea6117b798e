"""``python -m sdworker`` / ``sdworker``: run the operator against the current kubeconfig or in-cluster.

Owns the command line and the kopf settings; the handlers themselves live in ``sdworker.handlers``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any


def _run(args: argparse.Namespace) -> int:
    # kopf reads credentials through the kubernetes client's own loader, which honours $KUBECONFIG.
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf

    from sdworker import handlers

    kopf.configure(verbose=args.verbose)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    opts = handlers.OPTIONS
    opts.kubeconfig = args.kubeconfig
    opts.resync_seconds = args.resync_seconds
    opts.cluster = args.cluster_name
    opts.cloud = args.cloud
    opts.compute_endpoint = args.compute_endpoint
    opts.anonymous_credentials = args.anonymous_credentials
    opts.write_quota = args.write_quota
    opts.write_burst = args.write_burst
    opts.sweep_seconds = args.sweep_seconds
    opts.metrics_address = args.metrics_address
    opts.preprovision = args.preprovision
    kopf.run(
        clusterwide=True,
        # One replica by default; with more, kopf peering (KopfPeering objects) elects the active one.
        standalone=not args.peering,
        peering_name=args.peering or None,
        liveness_endpoint=f"http://{args.health_address}/healthz",
    )
    return 0


async def _read_status(kubeconfig: str | None, namespace: str | None) -> dict[str, Any]:
    from sdworker.api import constants as c
    from sdworker.kube.client import Kube
    from sdworker.status_view import summarize

    kube = await Kube.connect(kubeconfig)
    try:
        sdworkers = await kube.list(c.SDWORKER_KIND, namespace)
        disks = await kube.list(c.RUNTIMEDISK_KIND)
    finally:
        await kube.close()
    return summarize(sdworkers, disks)


def _status(args: argparse.Namespace) -> int:
    from sdworker.status_view import render, render_svg

    model = asyncio.run(_read_status(args.kubeconfig, args.namespace))
    if args.output == "json":
        print(json.dumps(model, indent=2, sort_keys=True))
    elif args.output == "svg":
        sys.stdout.write(render_svg(model))
    else:
        print(render(model))
    return 0


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list[:1] == ["image"]:
        # The runtime disk image builder has its own command line (sdworker image -h).
        from sdworker_images.__main__ import main as image_main

        return image_main(args_list[1:])
    parser = argparse.ArgumentParser(prog="sdworker", description="The sdworker operator.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="build, publish and verify runtime disk images (sdworker image -h)")
    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    run.add_argument("--health-address", default="0.0.0.0:8080", help="host:port of the /healthz endpoint")
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0:9090",
        help="host:port of the Prometheus /metrics endpoint (empty: none)",
    )
    run.add_argument("--peering", default="", help="kopf peering name for multi-replica leader election")
    run.add_argument("--resync-seconds", type=float, default=60.0, help="full reconcile period")
    run.add_argument(
        "--cluster-name", default="sdworker", help="label on every cloud disk (sdworker-cluster)"
    )
    run.add_argument(
        "--cloud",
        choices=["gce", "none"],
        default="gce",
        help="gce: create and attach disks (credentials: ADC / Workload Identity); none: API only",
    )
    run.add_argument("--compute-endpoint", help="compute API endpoint override (the local simulator)")
    run.add_argument("--anonymous-credentials", action="store_true", help="for the simulator only")
    run.add_argument(
        "--write-quota", type=float, default=20.0, help="cloud writes per second (regional quota)"
    )
    run.add_argument("--write-burst", type=int, default=5, help="token-bucket burst above the write rate")
    run.add_argument("--sweep-seconds", type=float, default=300.0, help="orphaned-disk sweep period")
    run.add_argument(
        "--preprovision",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with Karpenter: create and attach runtime disks for NodeClaims, before nodes register",
    )
    run.add_argument("--verbose", action="store_true")
    status = sub.add_parser(
        "status", help="SDWorkers and the per-node cold-start timeline of their RuntimeDisks"
    )
    status.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    status.add_argument("--namespace", "-n", help="SDWorkers of this namespace only (default: all)")
    status.add_argument(
        "--output", "-o", choices=["table", "json", "svg"], default="table", help="svg: the timeline chart"
    )
    args = parser.parse_args(args_list)
    if args.command == "status":
        return _status(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
