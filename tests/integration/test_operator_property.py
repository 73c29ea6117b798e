"""Property: any spec the API server accepts reaches a defined condition, and the operator survives it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from sdworker.domain import status as status_mod
from sdworker_tools.wait import wait_for
from tests.integration.conftest import OperatorProcess

GROUP, VERSION = "sdworker.dev", "v1alpha1"
KNOWN_REASONS = {v for k, v in vars(status_mod).items() if k.startswith("REASON_") and isinstance(v, str)}
_counter = itertools.count()

label_part = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)
prefetch_path = st.lists(label_part, min_size=1, max_size=4).map("/".join)
runtime_image = st.builds(
    lambda project, name, family: f"projects/{project}/global/images/{'family/' if family else ''}{name}",
    st.from_regex(r"[a-z][-a-z0-9]{4,10}[a-z0-9]", fullmatch=True),
    st.from_regex(r"[a-z]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
    st.booleans(),
)


@st.composite
def sdworker_specs(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(["PerNode", "SharedReadOnly"]))
    disk_type = draw(
        st.sampled_from(
            ["pd-balanced", "pd-ssd", "hyperdisk-ml"]
            if mode == "SharedReadOnly"
            else ["pd-balanced", "pd-ssd", "hyperdisk-balanced", "hyperdisk-ml"]
        )
    )
    runtime: dict[str, Any] = {
        "image": draw(runtime_image),
        "diskType": disk_type,
        "diskSizeGb": draw(st.integers(10, 2000)),
        "mode": mode,
        "prefetch": draw(st.lists(prefetch_path, max_size=3, unique=True)),
    }
    if mode == "PerNode":
        runtime["warmPool"] = {"size": draw(st.integers(0, 5))}
    webui: dict[str, Any] = {
        "baseImage": draw(
            st.sampled_from(["registry.example/sd-base:1", "us-docker.pkg.dev/p/r/sd-base:cuda12"])
        ),
        "args": draw(
            st.lists(st.sampled_from(["--api", "--xformers", "--medvram", "--no-half-vae"]), unique=True)
        ),
        "port": draw(st.integers(1024, 65535)),
        "model": draw(st.sampled_from(["v1-5-pruned-emaonly.safetensors", "sd-xl-base.ckpt"])),
    }
    if draw(st.booleans()):
        webui["authSecretRef"] = {"name": "webui-auth"}
    return {
        "replicas": draw(st.integers(0, 4)),
        "runtime": runtime,
        "webui": webui,
        "nodeSelector": draw(st.dictionaries(label_part, label_part, min_size=1, max_size=3)),
        "tolerations": draw(
            st.lists(
                st.sampled_from(
                    [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "pool", "operator": "Equal", "value": "sd", "effect": "NoExecute"},
                    ]
                ),
                max_size=2,
                unique_by=lambda t: t["key"],
            )
        ),
        "resources": {"limits": {"nvidia.com/gpu": draw(st.integers(1, 8))}},
    }


@pytest.mark.usefixtures("operator")
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=sdworker_specs())
def test_accepted_specs_reach_a_defined_condition(
    api: client.ApiClient, namespace: str, operator: OperatorProcess, spec: dict[str, Any]
) -> None:
    custom = client.CustomObjectsApi(api)
    name = f"prop-{next(_counter)}"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SDWorker", "metadata": {"name": name}, "spec": spec}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", body)
    generation = created["metadata"]["generation"]

    def settled() -> dict[str, Any] | None:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "sdworkers", name
        )
        status = obj.get("status") or {}
        types = {c["type"]: c for c in status.get("conditions") or []}
        if status.get("observedGeneration") == generation and "Ready" in types:
            return types
        return None

    conditions = wait_for(settled, timeout=30, what=f"conditions on {name} for {spec}")
    assert set(conditions) == {"Ready", "RuntimeAvailable", "Progressing", "Degraded"}
    for cond in conditions.values():
        assert cond["status"] in {"True", "False", "Unknown"}
        assert cond["reason"] in KNOWN_REASONS, cond
    assert conditions["Degraded"]["reason"] != "InvalidSpec", conditions["Degraded"]
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "sdworkers", name)
    assert operator.proc is not None
    assert operator.proc.alive()
