"""``python -m sdworker_tools.computesim``: the simulator as a process, for the demo and manual use.

Prints its URL as the first line of stdout (``--url-file`` also writes it to a file, for a parent
process to wait on), then serves until SIGTERM/SIGINT and releases every loop device and file.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sdworker_tools.computesim.config import DEFAULT_ZONES, SimConfig
from sdworker_tools.computesim.latency import PROFILES
from sdworker_tools.computesim.server import ComputeSim


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sdworker_tools.computesim", description=__doc__)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    p.add_argument("--state-dir", type=Path, help="image/disk files (default: a temporary directory)")
    p.add_argument("--dev-base", type=Path, help="instance dev roots: <dev-base>/<instance>/dev")
    p.add_argument("--latency-profile", choices=sorted(PROFILES), default="fast")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--zones", default=",".join(DEFAULT_ZONES), help="comma-separated zone names")
    p.add_argument("--write-quota", type=float, default=20.0, help="writes/s per region (0: off)")
    p.add_argument("--pending-ops", type=int, default=32, help="pending operations per resource")
    p.add_argument("--no-block-devices", action="store_true", help="API only: no files, no loop devices")
    p.add_argument("--gcs-root", type=Path, help="directory standing in for gs://")
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="PROJECT/NAME=FILE[@FAMILY]",
        help="register an image at start (repeatable)",
    )
    p.add_argument(
        "--instance",
        action="append",
        default=[],
        metavar="PROJECT/ZONE/NAME",
        help="create an instance at start",
    )
    p.add_argument("--url-file", type=Path, help="also write the URL here once serving")
    p.add_argument("--exit-after", type=float, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = SimConfig(
        state_dir=args.state_dir,
        dev_base=args.dev_base,
        port=args.port,
        zones=tuple(z for z in args.zones.split(",") if z),
        block_devices=not args.no_block_devices,
        gcs_root=args.gcs_root,
        latency=args.latency_profile,
        seed=args.seed,
        write_quota_per_s=args.write_quota or None,
        pending_ops_per_resource=args.pending_ops,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with ComputeSim(config) as sim:
        for spec in args.image:
            ref, _, rest = spec.partition("=")
            project, _, name = ref.rpartition("/")
            file, _, family = rest.partition("@")
            sim.register_image(name, Path(file), project=project or "sim-project", family=family or None)
        for spec in args.instance:
            project, zone, name = spec.split("/")
            sim.create_instance(name, zone=zone, project=project)
        print(sim.url, flush=True)
        print(
            json.dumps(
                {
                    "url": sim.url,
                    "apiEndpoint": sim.endpoint,
                    "gcloudApiEndpointOverride": sim.api_base,
                    "stateDir": str(sim.state_dir),
                    "devBase": str(sim.dev_base),
                    "latencyProfile": config.latency,
                }
            ),
            flush=True,
        )
        if args.url_file:
            args.url_file.write_text(sim.url + "\n")
        stop.wait(args.exit_after)
    print("computesim: stopped; loop devices and files released", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
