"""``python -m sdworker_tools.podrunner``: run the pod runner as its own process until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from sdworker_tools.podrunner.runner import PodRunner


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sdworker_tools.podrunner", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--hosts-dir", type=Path, required=True, help="node N's host root is HOSTS_DIR/N")
    parser.add_argument("--python310", type=Path, help="the Python 3.10 that plays the base image's")
    parser.add_argument("--backoff-initial", type=float, default=10.0, help="crash-loop back-off start (s)")
    args = parser.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with PodRunner(
        args.kubeconfig,
        hosts_dir=args.hosts_dir,
        python310=args.python310,
        backoff_initial=args.backoff_initial,
    ):
        done.wait()


if __name__ == "__main__":
    main()
