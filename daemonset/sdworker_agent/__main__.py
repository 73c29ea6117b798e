"""``python -m sdworker_agent``: the node agent's command line, logging, health endpoint and signals.

Owns process concerns only: reading ``NODE_NAME`` (the downward API) and flags into a ``Config``,
connecting to the API server (in-cluster service account, or ``--kubeconfig`` in tests), serving
``/healthz``, ``/readyz`` and ``/metrics``, and stopping cleanly on SIGTERM. Stopping never unmounts:
the mounts belong to the node and its pods, not to this process.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import sys

from aiohttp import web

from sdworker.api.constants import MOUNT_ROOT
from sdworker_agent.agent import Agent
from sdworker_agent.config import Config
from sdworker_agent.kubeio import AgentKube
from sdworker_agent.metrics import Metrics, health_app
from sdworker_agent.prefetch import DEFAULT_WORKERS
from sdworker_content.verify import VerifyMode

log = logging.getLogger("sdworker_agent")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sdworker-agent", description="The sdworker node agent.")
    p.add_argument(
        "--node-name", default=os.environ.get("NODE_NAME", ""), help="this node (default: $NODE_NAME)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig to use (default: the pod's service account)")
    p.add_argument("--dev-root", default="/dev", help="where disk/by-id/google-<deviceName> links live")
    p.add_argument("--host-root", default="/host", help="where the host's mount root is visible in this pod")
    p.add_argument("--mount-root", default=MOUNT_ROOT, help="host directory that holds runtime mounts")
    p.add_argument(
        "--health-address", default="0.0.0.0:8080", help="host:port of /healthz, /readyz, /metrics"
    )
    p.add_argument(
        "--device-timeout", type=float, default=120.0, help="seconds to wait for an attached device"
    )
    p.add_argument("--prefetch-workers", type=int, default=DEFAULT_WORKERS, help="parallel prefetch readers")
    p.add_argument(
        "--verify",
        dest="verify_mode",
        type=VerifyMode,
        choices=list(VerifyMode),
        metavar="{" + ",".join(m.value for m in VerifyMode) + "}",
        default=VerifyMode.STAT,
        help="digest: manifest only; stat: plus every path's type and size (default); full: re-hash all",
    )
    p.add_argument("--full-fsck", action="store_true", help="force all e2fsck passes even on a clean disk")
    p.add_argument("--resync-seconds", type=float, default=60.0, help="full reconcile period")
    p.add_argument(
        "--watch-timeout",
        dest="watch_timeout_seconds",
        type=int,
        default=300,
        help="seconds before a watch is renewed",
    )
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.node_name:
        p.error("--node-name or $NODE_NAME is required")
    return args


def config_from(args: argparse.Namespace) -> Config:
    """The ``Config`` the flags say: each flag's destination is the name of the field it sets."""
    given = vars(args)
    return Config(**{f.name: given[f.name] for f in dataclasses.fields(Config) if f.name in given})


async def serve(args: argparse.Namespace) -> None:
    config = config_from(args)
    metrics = Metrics()
    # Kube.connect builds an instance of the class it is called on.
    kube = await AgentKube.connect(args.kubeconfig)
    agent = Agent(kube, config, metrics)
    host, _, port = args.health_address.rpartition(":")
    runner = web.AppRunner(health_app(metrics, alive=agent.alive, ready=agent.ready), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or "0.0.0.0", int(port)).start()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, main.cancel)
    log.info(
        "sdworker agent for node %s: dev root %s, mount root %s%s, health on %s",
        config.node_name,
        config.dev_root,
        config.host_root.rstrip("/"),
        config.mount_root,
        args.health_address,
    )
    try:
        await agent.run()
    except asyncio.CancelledError:
        log.info("stopping (mounts stay in place)")
    finally:
        await agent.stop()
        await runner.cleanup()
        await kube.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
