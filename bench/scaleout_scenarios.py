"""The scale-out benchmark's scenario matrix: which scenarios exist, and the quick and full sets.

Kept apart from the runner so the matrix is plain data that a unit test can check without a control plane
(tests/unit/test_bench_scaleout.py). A scenario names how many nodes join, how (burst or ramp), which
runtime mode the SDWorker uses, and on which host layer its agents run: ``loop`` (one real agent process
per node, real loop-device mounts) or ``simulated`` (``sdworker_tools.simhost``: the same agent code in a
few processes, the mount layer simulated; the 1000-node scenario, clearly labelled in every table).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sdworker.api import constants as c
from sdworker.api.schema import spec_schema

# prepro: PerNode with disks made before the node registers (Karpenter's NodeClaims; join "autoscaler")
MODES = {"pernode": "PerNode", "pool": "PerNode", "shared": "SharedReadOnly", "prepro": "PerNode"}
JOINS = ("burst", "ramp", "autoscaler")
HOSTS = ("loop", "simulated")
SIMULATED_WORKERS = 4  # processes that host the simulated-mount agents (250 each at 1000 nodes)


@dataclass(frozen=True)
class Scenario:
    name: str
    nodes: int
    mode: str  # pernode | pool (warm pool of `nodes` disks) | shared
    join: str = "burst"  # burst: all at once; ramp: one every `interval` s; autoscaler: Karpenter adds them
    interval: float = 0.0
    reference: bool = True  # the published DaemonSet has no shared mode
    hosts: str = "loop"  # loop: a real agent process per node; simulated: simhost, mount layer simulated

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(
                f"scenario {self.name}: mode must be one of {sorted(MODES)}, found {self.mode!r}"
            )
        if self.join not in JOINS:
            raise ValueError(f"scenario {self.name}: join must be one of {list(JOINS)}, not {self.join!r}")
        if (self.join == "autoscaler") != (self.mode == "prepro"):
            raise ValueError(f"scenario {self.name}: join autoscaler goes with mode prepro and only with it")
        if self.hosts not in HOSTS:
            raise ValueError(
                f"scenario {self.name}: hosts must be one of {list(HOSTS)}, found {self.hosts!r}"
            )
        if self.nodes < 1:
            raise ValueError(f"scenario {self.name}: nodes must be at least 1, found {self.nodes}")
        if self.warm_pool > warm_pool_max():
            raise ValueError(
                f"scenario {self.name}: a warm pool of {self.warm_pool} is over the CRD's maximum "
                f"spec.runtime.warmPool.size {warm_pool_max()} (disks per zone; the API server refuses it)"
            )

    @property
    def label(self) -> str:
        """The name the tables show: how the nodes join, and a simulated mount layer said out loud."""
        sim = ", SIMULATED mount layer" if self.hosts == "simulated" else ""
        return f"{self.name} ({self.join}{sim})"

    @property
    def warm_pool(self) -> int:
        return self.nodes if self.mode == "pool" else 0


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sdworker.yaml"


def sdworker_manifest(nodes: int, mode: str, warm_pool: int) -> dict[str, Any]:
    """The SDWorker a run applies: ``examples/sdworker.yaml`` with the scenario's replicas, mode and pool."""
    sdw: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    sdw["spec"]["replicas"] = nodes
    sdw["spec"]["runtime"]["mode"] = MODES[mode]
    sdw["spec"]["runtime"]["warmPool"] = {"size": warm_pool}
    return sdw


def warm_pool_max() -> int:
    """The CRD's largest warm pool (per zone): the bench's scenarios join their nodes in one zone."""
    size = spec_schema(c.SDWORKER_PLURAL)["properties"]["runtime"]["properties"]["warmPool"]["properties"][
        "size"
    ]
    return int(size["maximum"])


def _scenarios() -> dict[str, Scenario]:
    out = {}
    for n in (1, 10, 100):
        join, interval = ("ramp", 0.25) if n >= 100 else ("burst", 0.0)
        out[f"pernode-{n}"] = Scenario(f"pernode-{n}", n, "pernode", join, interval)
        if n <= warm_pool_max():
            out[f"pool-{n}"] = Scenario(f"pool-{n}", n, "pool", join, interval)
        out[f"shared-{n}"] = Scenario(f"shared-{n}", n, "shared", join, interval, reference=False)
        # The reference's equivalent is its fresh disk: it cannot make one before its node exists.
        out[f"prepro-{n}"] = Scenario(f"prepro-{n}", n, "prepro", "autoscaler")
    # The largest warm pool the CRD allows in one zone, all of it claimed at once.
    out[f"pool-{warm_pool_max()}"] = Scenario(f"pool-{warm_pool_max()}", warm_pool_max(), "pool")
    # 1000 agents cannot run as processes with loop devices on a small machine: the simulated mount layer.
    # No reference: 1000 parallel attach-disk.sh (6-8 gcloud starts of ~0.9 CPU s each) measure only the VM.
    for mode in ("pernode", "shared"):
        name = f"{mode}-1000"
        out[name] = Scenario(name, 1000, mode, "burst", 0.0, reference=False, hosts="simulated")
    return out


SCENARIOS = _scenarios()
QUICK = ("pernode-1", "pernode-10", "pool-10", "shared-10", "prepro-10")
FULL = (
    "pernode-1",
    "pool-1",
    "pernode-10",
    "pool-10",
    "shared-10",
    "prepro-10",
    "pernode-100",
    f"pool-{warm_pool_max()}",
    "shared-100",
    "pernode-1000",
)
