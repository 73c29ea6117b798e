"""The kubelet's part for sdworker's SD pods on kwok nodes: real processes, volumes, probes and status.

``PodRunner`` (runner.py) is the entry point; see the README section "The pod runner" for what it emulates
of the kubelet and what it does not.
"""

from sdworker_tools.podrunner.runner import PodRunner, PodRunnerError

__all__ = ["PodRunner", "PodRunnerError"]
