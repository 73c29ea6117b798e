"""``python -m sdworker`` / ``sdworker``: run the operator against the current kubeconfig or in-cluster.

Owns the command line and the kopf settings; ``sdworker.config`` turns the flags into the one validated
``OperatorConfig``, and the handlers themselves live in ``sdworker.handlers``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import time
from typing import Any

from sdworker.config import CLOUDS, ConfigError, OperatorConfig
from sdworker.domain.leadership import TIEBREAKS, oldest_wins


def _run(config: OperatorConfig) -> int:
    # kopf reads credentials through the kubernetes client's own loader, which honours $KUBECONFIG.
    if config.kubeconfig:
        os.environ["KUBECONFIG"] = config.kubeconfig
    import kopf
    from kopf._core.engines.peering import detect_own_id

    from sdworker import handlers

    kopf.configure(verbose=config.verbose)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # The replica's peering identity: POD_ID (the pod's name, from the Downward API), else kopf's own.
    identity = detect_own_id(manual=False)
    priority = _peering_priority(config)
    kopf.run(
        clusterwide=True,
        # One replica by default; with more, kopf peering (a ClusterKopfPeering object) elects the active
        # one: the highest priority, which kopf needs distinct per replica (equal ones all pause).
        standalone=not config.peering,
        peering_name=config.peering or None,
        identity=identity,
        priority=priority,
        liveness_endpoint=f"http://{config.health_address}/healthz",
        # The startup handler takes the whole configuration from here (handlers.startup).
        memo=handlers.memo_of(config, identity=identity, priority=priority),
    )
    return 0


def _peering_priority(config: OperatorConfig) -> int:
    """``--peering-priority``, else "oldest wins": from this process's start, random below the millisecond."""
    if config.peering_priority is not None:
        return config.peering_priority
    return oldest_wins(time.time_ns() // 1_000_000, random.SystemRandom().randrange(TIEBREAKS))


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
    cli = parser()
    args = cli.parse_args(args_list)
    if args.command == "status":
        return _status(args)
    try:
        config = OperatorConfig.from_args(args)
    except ConfigError as err:
        cli.error(str(err))  # exits 2 with the usage and the flag at fault
    return _run(config)


# ``sdworker run``'s valued flags: (flag, type, help). Each flag's dest (argparse's: --write-quota ->
# write_quota) is the name of its OperatorConfig field, and the field's default is the flag's.
_RUN_VALUES: tuple[tuple[str, type, str], ...] = (
    ("--health-address", str, "host:port of the /healthz endpoint"),
    ("--metrics-address", str, "host:port of the Prometheus /metrics endpoint (empty: none)"),
    ("--peering", str, "kopf peering name for multi-replica leader election"),
    (
        "--peering-priority",
        int,
        "kopf peering priority, the highest live one is active (default: the oldest replica's; every "
        "replica needs its own, so give one only to an operator outside the Deployment)",
    ),
    ("--resync-seconds", float, "full reconcile period"),
    ("--cluster-name", str, "label on every cloud disk (sdworker-cluster)"),
    ("--compute-endpoint", str, "compute API endpoint override (the local simulator)"),
    ("--project", str, "GCE project swept for orphaned disks (default: the credentials' project)"),
    ("--write-quota", float, "cloud writes per second (regional quota)"),
    ("--write-burst", int, "token-bucket burst above the write rate"),
    ("--cloud-threads", int, "cloud calls in flight at once (each operation's wait holds one)"),
    ("--sweep-seconds", float, "orphaned-disk sweep period"),
    ("--failed-retry-seconds", float, "longest wait to retry a RuntimeDisk Failed on a fatal cloud error"),
)


def parser() -> argparse.ArgumentParser:
    """The ``sdworker`` command line; ``run``'s defaults are ``OperatorConfig``'s."""
    defaults = OperatorConfig()
    cli = argparse.ArgumentParser(prog="sdworker", description="The sdworker operator.")
    sub = cli.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="build, publish and verify runtime disk images (sdworker image -h)")
    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", help="kubeconfig to use (default: in-cluster, then $KUBECONFIG)")
    for flag, kind, text in _RUN_VALUES:
        field = flag.removeprefix("--").replace("-", "_")
        run.add_argument(flag, type=kind, default=getattr(defaults, field), help=text)
    run.add_argument(
        "--cloud",
        choices=CLOUDS,
        default=defaults.cloud,
        help="gce: create and attach disks (credentials: ADC / Workload Identity); none: API only",
    )
    run.add_argument("--anonymous-credentials", action="store_true", help="for the simulator only")
    run.add_argument(
        "--preprovision",
        action=argparse.BooleanOptionalAction,
        default=defaults.preprovision,
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
    return cli


if __name__ == "__main__":
    sys.exit(main())
