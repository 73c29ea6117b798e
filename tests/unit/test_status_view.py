"""``sdworker status`` formatting: the model from API objects, the tables, the timeline's arithmetic."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from sdworker import status_view
from sdworker.api.types import Phase, ResolvedImage, RolloutStatus
from sdworker.domain import rollout
from sdworker.domain import status as st
from sdworker.domain.status import DeploymentObservation
from sdworker.status_view import render, render_svg, summarize, table, timeline
from tests.unit.test_status import NOW, disk


def rd(node: str, phase: str, **timings: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{node}-rt"},
        "spec": {"nodeName": node, "runtimeId": "rt1", "zone": "z", "diskName": f"d-{node}"},
        "status": {"phase": phase, "reason": phase, "message": "", "timings": timings},
    }


READY = rd(
    "gpu-1",
    "Ready",
    nodeCreated="2026-01-01T00:00:00Z",
    diskCreated="2026-01-01T00:00:07Z",
    attached="2026-01-01T00:00:10Z",
    mounted="2026-01-01T00:00:11Z",
    verified="2026-01-01T00:00:12Z",
    prefetched="2026-01-01T00:00:15Z",
    durationsSeconds={
        "createDisk": 6.5,
        "attach": 3.1,
        "fsck": 0.2,
        "mount": 0.4,
        "verify": 0.9,
        "prefetch": 2.7,
    },
)
ATTACHING = rd("gpu-0", "Attaching", nodeCreated="2026-01-01T00:00:00Z", diskCreated="2026-01-01T00:00:06Z")
SDW = {
    "metadata": {"namespace": "default", "name": "sd-webui"},
    "spec": {"replicas": 2, "runtime": {"image": "projects/p/global/images/family/f"}},
    "status": {
        "readyReplicas": 1,
        "nodes": {"ready": 1, "provisioning": 1, "failed": 0},
        "runtime": {"image": "projects/p/global/images/i", "runtimeId": "rt1", "digest": "sha256:x"},
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "1/2"},
            {"type": "RuntimeAvailable", "status": "True", "reason": "RuntimeReady"},
        ],
    },
}


def test_timeline_offsets_durations_and_ready_time() -> None:
    t = timeline(READY)
    assert t["offsetsSeconds"] == {
        "nodeCreated": 0.0,
        "diskCreated": 7.0,
        "attached": 10.0,
        "mounted": 11.0,
        "verified": 12.0,
        "prefetched": 15.0,
    }
    assert t["readySeconds"] == 15.0
    assert list(t["durationsSeconds"]) == ["createDisk", "attach", "fsck", "mount", "verify", "prefetch"]
    not_yet = timeline(ATTACHING)
    assert not_yet["readySeconds"] is None
    assert not_yet["offsetsSeconds"]["attached"] is None


def test_summary_sorts_by_node_and_is_json() -> None:
    model = summarize([SDW], [READY, ATTACHING])
    assert [t["node"] for t in model["runtimeDisks"]] == ["gpu-0", "gpu-1"]
    assert model["summary"] == {
        "runtimeDisks": 2,
        "ready": 1,
        "readySecondsMin": 15.0,
        "readySecondsMedian": 15.0,
        "readySecondsMax": 15.0,
    }
    w = model["sdworkers"][0]
    assert (w["replicas"], w["readyReplicas"], w["nodes"]) == (
        2,
        1,
        {"ready": 1, "provisioning": 1, "failed": 0},
    )
    json.dumps(model)


def test_render_tables() -> None:
    text = render(summarize([SDW], [READY, ATTACHING]))
    lines = text.splitlines()
    headers = ["SDWORKER", "REPLICAS", "READY", "NODES", "R/P/F", "RUNTIME", "ROLLOUT", "CONDITIONS"]
    assert lines[0].split() == headers
    assert lines[1].split()[:6] == ["default/sd-webui", "2", "1/2", "1/1/0", "rt1", "-"]
    assert "!Ready(ReplicasNotReady)" in lines[1]
    assert "RuntimeAvailable(RuntimeReady)" in lines[1]
    row = next(line for line in lines if line.startswith("gpu-1"))
    assert row.split()[:10] == [
        "gpu-1",
        "Ready",
        "new",
        "+7.0s",
        "+10.0s",
        "+11.0s",
        "+12.0s",
        "+15.0s",
        "15.0s",
        "createDisk=6.50",
    ]
    row0 = next(line for line in lines if line.startswith("gpu-0"))
    assert row0.split()[:6] == ["gpu-0", "Attaching", "new", "+6.0s", "-", "-"]
    assert "1/2 Ready; node created -> runtime Ready: min 15.0s, median 15.0s, max 15.0s" in text


def test_failed_disks_say_why_and_empty_cluster() -> None:
    failed = rd("gpu-2", "Failed")
    failed["status"].update(reason="ImageNotFound", message="no such image")
    text = render(summarize([], [failed]))
    assert "No SDWorkers." in text
    assert "gpu-2: Failed ImageNotFound: no such image" in text
    assert render(summarize([], [])).endswith("No RuntimeDisks.")


def test_table_aligns_columns() -> None:
    assert table(["A", "BB"], [["xxx", "y"]]) == "A    BB\nxxx  y"


def test_svg_chart_has_a_bar_per_step_reached() -> None:
    svg = render_svg(summarize([SDW], [READY, ATTACHING]))
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    # gpu-1: five steps; gpu-0: only node -> disk created so far.
    assert len(bars) == 6
    texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
    assert "gpu-1 (Ready)" in texts
    assert "gpu-0 (Attaching)" in texts
    ET.fromstring(render_svg(summarize([], [])))


def test_disk_source_from_the_name() -> None:
    pooled = rd("gpu-3", "Attaching")
    pooled["spec"]["diskName"] = "sdwp-abc-rt1-0"
    assert timeline(pooled)["diskSource"] == "pool"
    shared = rd("gpu-4", "Attaching")
    shared["spec"]["diskName"] = "sdws-abc-rt1"
    assert timeline(shared)["diskSource"] == "shared"


@pytest.mark.parametrize(
    ("value", "plus", "shown"),
    [
        (13.14, True, "+13.1s"),
        (-13.14, True, "-13.1s"),
        (0.0, True, "+0.0s"),
        (150.0, False, "150s"),
        (None, True, "-"),
    ],
)
def test_offsets_before_the_node_registered_are_negative_not_plus_minus(
    value: float | None, plus: bool, shown: str
) -> None:
    """A disk made for a NodeClaim is ready before its node registers: "-13.1s", never "+-13.1s"."""
    assert status_view._secs(value, plus=plus) == shown


# --- a runtime rollout in progress: status.rollout as the operator's status producer writes it ----------


def rolling_sdworker(*, paused: bool, updated: int) -> dict[str, Any]:
    """An SDWorker rolling from sd-1 to sd-2, its status made by ``domain.rollout`` and ``domain.status``
    as the controller makes it (``Controller._reconcile_sdworker``); RuntimeDisk phases are observations."""
    served = st.served_runtime(ResolvedImage("projects/p/global/images/sd-1", "sha256:a"), None)
    assert served is not None
    target = rollout.target_runtime(
        st.served_runtime(ResolvedImage("projects/p/global/images/sd-2", "sha256:b"), None),
        served=served,
        recorded_target=None,
        pinned=False,
    )
    assert target is not None
    decision = rollout.decide(
        served=served,
        target=target,
        observed=rollout.Observed(runtime_id=served.runtime_id, complete=True),
        target_ready_everywhere=False,
        other_runtime_pods=2 - updated,
        paused=paused,
    )
    assert decision.rolling
    on_target = [disk("n1", Phase.READY), disk("n2", Phase.READY), disk("n3", Phase.ATTACHING)]
    on_served = [disk(n, Phase.READY) for n in ("n1", "n2", "n3")]
    status = st.aggregate_status(
        name="sd-webui",
        generation=4,
        desired_replicas=2,
        deployment=DeploymentObservation(replicas=2, ready_replicas=2, updated_replicas=2),
        disks=on_served,
        matching_nodes=3,
        runtime=decision.served,
        previous=(),
        now=NOW,
        rollout=RolloutStatus(
            target=decision.target,
            paused=decision.paused,
            target_nodes=st.count_nodes(on_target),
            served_nodes=st.count_nodes(on_served),
            updated_replicas=updated,
        ),
    )
    return {
        "metadata": {"namespace": "default", "name": "sd-webui"},
        "spec": {"replicas": 2, "runtime": {"image": "projects/p/global/images/family/sd"}},
        "status": status.to_dict(),
    }


def test_a_rollout_shows_in_json_and_table() -> None:
    body = rolling_sdworker(paused=False, updated=1)
    target_id = body["status"]["rollout"]["target"]["runtimeId"]
    model = json.loads(json.dumps(summarize([body], [])))
    assert model["sdworkers"][0]["rollout"] == {
        "target": {"image": "projects/p/global/images/sd-2", "digest": "sha256:b", "runtimeId": target_id},
        "paused": False,
        "targetNodes": {"ready": 2, "provisioning": 1, "failed": 0},
        "servedNodes": {"ready": 3, "provisioning": 0, "failed": 0},
        "updatedReplicas": 1,
    }
    lines = render(model).splitlines()
    column = lines[0].index("ROLLOUT")
    assert lines[1][column:].startswith(f"to {target_id} nodes 2/1/0 replicas 1/2 ")
    assert "(paused)" not in lines[1]
    # The served runtime stays what the SDWorker serves until the rollout is done.
    assert model["sdworkers"][0]["runtime"]["runtimeId"] != target_id


def test_a_paused_rollout_says_so_and_a_steady_sdworker_has_none() -> None:
    model = summarize([rolling_sdworker(paused=True, updated=0)], [])
    assert model["sdworkers"][0]["rollout"]["paused"] is True
    assert "replicas 0/2 (paused)" in render(model).splitlines()[1]
    steady = summarize([SDW], [])
    assert steady["sdworkers"][0]["rollout"] is None
