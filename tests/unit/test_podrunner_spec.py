"""The kubelet's per-container decisions in the pod runner: $(VAR), env, identity, back-off, probes."""

from __future__ import annotations

from typing import Any

import pytest

from sdworker_tools.podrunner import image, spec

Json = dict[str, Any]
IMAGE = image.parse(
    "FROM x\nENV HOME=/home/sd PATH=/usr/bin\nRUN useradd --uid 10001 --user-group sd\n"
    "USER 10001:10001\nWORKDIR /home/sd\n"
)
SECRETS = {"auth": {"api": b"user:pass", "gradio": b"g:p"}}


def _pod(containers: list[Json] | None = None, /, **spec_fields: Any) -> Json:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"nodeName": "n1", "containers": containers or [{"name": "c"}], **spec_fields},
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x-$(A)-$(B)", "x-a-b"),
        ("$$(A)", "$(A)"),  # escaped
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),  # unknown: left as written
        ("$(A", "$(A"),  # unterminated
        ("$A", "$A"),  # not a reference
        ("cost: 5$", "cost: 5$"),
        ("$()", "$()"),
    ],
)
def test_expand_matches_the_kubelets_expansion(text: str, expected: str) -> None:
    assert spec.expand(text, {"A": "a", "B": "b"}) == expected


def test_env_values_expand_against_earlier_entries_only_and_secrets_resolve() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "LATER_REF", "value": "$(B)"},  # B is declared after: stays literal
            {"name": "B", "value": "b"},
            {"name": "C", "value": "$(B)-$(HOME)"},  # the image's ENV is unknown to the kubelet
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "api"}}},
            {"name": "O", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "nope", "optional": True}}},
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        ],
    }
    declared, env = spec.container_env(_pod([container]), container, IMAGE, SECRETS.get)
    assert declared == {"LATER_REF": "$(B)", "B": "b", "C": "b-$(HOME)", "S": "user:pass", "N": "n1"}
    assert env["HOME"] == "/home/sd"  # the image's ENV reaches the process
    assert env["HOSTNAME"] == "p"
    assert "O" not in env


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"name": "auth", "key": "missing"}, "couldn't find key missing in Secret ns/auth"),
        ({"name": "absent", "key": "api"}, 'secret "absent" not found'),
    ],
)
def test_a_missing_required_secret_key_is_a_container_config_error(ref: Json, message: str) -> None:
    container = {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": ref}}]}
    with pytest.raises(spec.ContainerConfigError) as err:
        spec.container_env(_pod([container]), container, IMAGE, SECRETS.get)
    assert str(err.value) == message


def test_env_from_secrets_and_config_maps_with_prefix_optional_and_missing() -> None:
    """envFrom as the kubelet does it (kubelet_pods.go ``makeEnvironmentVariables``): every key, behind the
    prefix; an optional source that is missing adds nothing, a required one is a config error."""
    maps = {"settings": {"MODE": "fast"}}
    container = {
        "name": "c",
        "envFrom": [
            {"secretRef": {"name": "auth"}, "prefix": "S_"},
            {"configMapRef": {"name": "settings"}},
            {"configMapRef": {"name": "absent", "optional": True}},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
    }
    declared, _ = spec.container_env(_pod([container]), container, IMAGE, SECRETS.get, maps.get)
    assert declared == {"S_api": "user:pass", "S_gradio": "g:p", "MODE": "fast"}
    for ref, message in (
        ("secretRef", 'secret "gone" not found'),
        ("configMapRef", 'configmap "gone" not found'),
    ):
        required = {"name": "c", "envFrom": [{ref: {"name": "gone"}}]}
        with pytest.raises(spec.ContainerConfigError) as err:
            spec.container_env(_pod([required]), required, IMAGE, SECRETS.get, maps.get)
        assert str(err.value) == message


def test_command_and_args_expand_against_the_declared_environment() -> None:
    container = {"name": "c", "command": ["/bin/$(SH)"], "args": ["-c", "echo $(X) $$(X)"]}
    assert spec.command_line(container, {"SH": "sh", "X": "1"}) == ["/bin/sh", "-c", "echo 1 $(X)"]
    with pytest.raises(spec.ContainerConfigError, match="no command"):
        spec.command_line({"name": "c", "args": ["x"]}, {})


def test_identity_takes_container_over_pod_over_image() -> None:
    pod = _pod(
        securityContext={"runAsUser": 2000, "runAsGroup": 3000, "fsGroup": 4000, "supplementalGroups": [5]}
    )
    container = {"name": "c", "securityContext": {"runAsUser": 2001, "allowPrivilegeEscalation": False}}
    who = spec.identity(pod, container, IMAGE)
    assert (who.uid, who.gid, who.groups, who.fs_group) == (2001, 3000, (3000, 4000, 5), 4000)
    assert who.no_new_privs
    assert not who.read_only_root
    plain = spec.identity(_pod(), {"name": "c"}, IMAGE)
    assert (plain.uid, plain.gid, plain.groups, plain.no_new_privs) == (10001, 10001, (10001,), False)
    assert spec.working_dir({"name": "c"}, IMAGE) == "/home/sd"
    assert spec.working_dir({"name": "c", "workingDir": "/w"}, IMAGE) == "/w"


def test_run_as_non_root_is_verified_as_the_kubelet_does() -> None:
    root_image = image.parse("FROM x\n")
    named_image = image.parse("FROM x\nUSER someone\n")
    non_root: dict[str, Any] = {"securityContext": {"runAsNonRoot": True}}
    with pytest.raises(spec.ContainerConfigError, match="image will run as root"):
        spec.identity(_pod(**non_root), {"name": "c"}, root_image)
    with pytest.raises(spec.ContainerConfigError, match=r"non-numeric user \(someone\)"):
        spec.identity(_pod(**non_root), {"name": "c"}, named_image)
    with pytest.raises(
        spec.ContainerConfigError, match=r"runAsUser breaks non-root policy \(pod: \"p_ns\(u-1\)\""
    ):
        spec.identity(_pod(securityContext={"runAsNonRoot": True, "runAsUser": 0}), {"name": "c"}, IMAGE)
    assert spec.identity(_pod(**non_root), {"name": "c"}, IMAGE).uid == 10001
    assert (
        spec.identity(
            _pod(securityContext={"runAsNonRoot": True, "runAsUser": 7}), {"name": "c"}, root_image
        ).uid
        == 7
    )


def test_backoff_restarts_at_once_then_doubles_to_the_cap_and_resets() -> None:
    backoff = spec.Backoff(initial=10, cap=40)
    assert backoff.wait(finished=0, now=0) == 0  # the first exit restarts at once
    backoff.restarted(0)
    waits = []
    t = 0.0
    for _ in range(4):
        t += 1  # the container runs 1 s and exits again
        wait = backoff.wait(finished=t, now=t)
        waits.append(wait)
        t += wait
        backoff.restarted(t)
    assert waits == [10, 20, 40, 40]
    assert backoff.wait(finished=t + 5, now=t + 100) == 0  # waited long enough already
    # An exit more than 2 * cap after the last restart starts over at the initial delay.
    later = t + 81
    assert backoff.wait(finished=later, now=later) == 0
    backoff.restarted(later)
    assert backoff.delay == 10


def test_probe_defaults_and_named_ports() -> None:
    container = {
        "name": "c",
        "ports": [{"name": "http", "containerPort": 7860}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "livenessProbe": {
            "httpGet": {"port": 80},
            "periodSeconds": 20,
            "failureThreshold": 6,
            "timeoutSeconds": 10,
        },
        "startupProbe": {"exec": {"command": ["true"]}},
    }
    ready = spec.probe(container, "readiness")
    assert ready is not None
    assert (ready.path, ready.port, ready.period, ready.timeout, ready.failure_threshold) == (
        "/ready",
        7860,
        10,
        1,
        3,
    )
    live = spec.probe(container, "liveness")
    assert live is not None
    assert (live.path, live.port, live.period, live.timeout, live.failure_threshold) == ("/", 80, 20, 10, 6)
    with pytest.raises(ValueError, match="only httpGet"):
        spec.probe(container, "startup")
    with pytest.raises(ValueError, match="'web' names no container port"):
        spec.probe({"name": "c", "readinessProbe": {"httpGet": {"port": "web"}}}, "readiness")
    assert spec.probe({"name": "c"}, "liveness") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Mi", 2**20),
        ("2Gi", 2 * 2**30),
        ("500M", 500 * 10**6),
        ("1e3", 1000),
        (128, 128),
        ("1.5Ki", 1536),
        ("100m", 1),
    ],
)
def test_quantities(text: str | int, expected: int) -> None:
    assert spec.parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "1 Gi", "Gi", "1Gb", "1e3Mi"])
def test_bad_quantities_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a resource quantity"):
        spec.parse_quantity(text)
