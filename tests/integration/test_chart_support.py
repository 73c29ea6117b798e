"""Helpers for the Helm chart's tests (no tests here): the helm CLI, rendering, installing, identities.

- ``helm`` is the real CLI, built from the Go module proxy by ``tools/helm/build.sh`` (cached outside the
  repository; a no-op when cached), run with its config, cache and data homes in a throwaway folder so
  tests never read or write the user's helm state.
- Identities are real: a ServiceAccount token comes from the TokenRequest API (optionally bound to a pod,
  which is how the kubelet issues it and how the API server learns the pod's node), and every check is
  either a ``SelfSubjectAccessReview`` made with that token or a real request answered by the API server.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from sdworker_tools import procs
from sdworker_tools.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sdworker"
BUILD_SCRIPT = REPO / "tools" / "helm" / "build.sh"
Json = dict[str, Any]
# The GPU type of the chart tests' kwok nodes: one no other test's SDWorker selects.
TEST_ACCELERATOR = "sdworker-chart-test"


@functools.cache
def helm_binary() -> Path:
    """The helm CLI, built on first use (progress on stderr)."""
    return Path(procs.run_streaming([str(BUILD_SCRIPT)]).strip().splitlines()[-1])


@dataclass(frozen=True)
class Helm:
    home: Path
    kubeconfig: Path | None = None

    def run(self, *args: str, check: bool = True, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        env.pop("KUBECONFIG", None)
        argv = [str(helm_binary()), *args]
        if self.kubeconfig is not None:
            argv.append(f"--kubeconfig={self.kubeconfig}")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def template(
        self,
        *,
        values: Sequence[Path] = (),
        sets: Mapping[str, str] | None = None,
        release: str = "sdworker",
        namespace: str = "sdworker-system",
    ) -> list[Json]:
        args = ["template", release, str(CHART), f"--namespace={namespace}"]
        args += [f"--values={v}" for v in values]
        args += [f"--set={k}={v}" for k, v in (sets or {}).items()]
        return [d for d in yaml.safe_load_all(self.run(*args).stdout) if d]


def find(docs: Sequence[Json], kind: str, name: str | None = None) -> Json:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (
        f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    )
    return found[0]


def kinds(docs: Sequence[Json]) -> set[tuple[str, str]]:
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


# --- identities ------------------------------------------------------------------------------------


def sa_token(core: client.CoreV1Api, namespace: str, service_account: str, pod: Json | None = None) -> str:
    """A TokenRequest token for the ServiceAccount; bound to ``pod`` (name, uid) when given."""
    spec: Json = {"audiences": [], "expirationSeconds": 3600}
    if pod is not None:
        spec["boundObjectRef"] = {"apiVersion": "v1", "kind": "Pod", "name": pod["name"], "uid": pod["uid"]}
    result = core.create_namespaced_service_account_token(service_account, namespace, {"spec": spec})
    return str(result.status.token)


@contextlib.contextmanager
def api_for(cluster: LocalCluster, workdir: Path, name: str, token: str) -> Iterator[client.ApiClient]:
    kubeconfig = cluster.write_token_kubeconfig(workdir / f"{name}.kubeconfig", token, user=name)
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        yield api


@dataclass(frozen=True)
class Access:
    """One question for SelfSubjectAccessReview: may I <verb> <group>/<resource>[/<sub>] [in ns]?"""

    verb: str
    resource: str
    group: str = ""
    namespace: str | None = None
    subresource: str | None = None
    name: str | None = None

    def __str__(self) -> str:
        res = f"{self.group + '/' if self.group else ''}{self.resource}"
        res += f"/{self.subresource}" if self.subresource else ""
        where = f" in {self.namespace}" if self.namespace else " (cluster-wide)"
        return f"{self.verb} {res}{' ' + self.name if self.name else ''}{where}"


def allowed(api: client.ApiClient, access: Access) -> bool:
    attrs: Json = {"verb": access.verb, "resource": access.resource, "group": access.group}
    for key, value in (
        ("namespace", access.namespace),
        ("subresource", access.subresource),
        ("name", access.name),
    ):
        if value is not None:
            attrs[key] = value
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
    )
    return bool(review.status.allowed)


def status_of(call: Any) -> int:
    """The HTTP status of a client call: 200 when it succeeds, the ApiException's status otherwise."""
    try:
        call()
    except client.ApiException as exc:
        return int(exc.status)
    return 200


def error_message(exc: client.ApiException) -> str:
    try:
        return str(json.loads(exc.body).get("message", ""))
    except (TypeError, ValueError):
        return str(exc.body)
