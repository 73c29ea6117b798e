"""The kubelet's decisions about one container, from the pod spec alone: pure functions, no I/O.

Each function reproduces a kubelet behaviour and names where it lives upstream (kubernetes v1.36):

- ``expand``: ``$(VAR)`` references in env values, command and args
  (third_party/forked/golang/expansion/expand.go, ``Expand`` with ``MappingFuncFor``);
- ``container_env``: env entries in order, each expanded against those before it, ``secretKeyRef`` and
  ``configMapKeyRef`` with ``optional``, ``fieldRef`` (pkg/kubelet/kubelet_pods.go,
  ``makeEnvironmentVariables``); a failure is the kubelet's ``CreateContainerConfigError``;
- ``identity``: runAsUser/runAsGroup/fsGroup/supplementalGroups with the container's securityContext
  over the pod's, falling back to the image's USER, and the ``runAsNonRoot`` check
  (pkg/kubelet/kuberuntime/security_context_others.go, ``verifyRunAsNonRoot``);
- ``Backoff``: the crash-loop back-off, 10 s doubling to 5 min, reset after 10 min without a failure
  (pkg/kubelet/kubelet.go ``backOffPeriod``/``MaxContainerBackOff``, client-go util/flowcontrol/backoff.go);
- ``Probe``: a probe's fields with the API defaults (pkg/apis/core/v1/defaults.go ``SetDefaults_Probe``);
- ``parse_quantity``: resource quantities such as an emptyDir ``sizeLimit``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sdworker_tools.podrunner.image import BaseImage

Json = dict[str, Any]
SecretLookup = Callable[[str], Mapping[str, bytes] | None]  # Secret name -> data, None if absent
ConfigMapLookup = Callable[[str], Mapping[str, str] | None]
T = TypeVar("T", str, bytes)


class ContainerConfigError(Exception):
    """The kubelet cannot build the container's config: waiting reason CreateContainerConfigError."""


def _pod_ref(pod: Json) -> str:
    """The kubelet's ``format.Pod``: ``name_namespace(uid)``."""
    meta = pod["metadata"]
    return f"{meta['name']}_{meta['namespace']}({meta.get('uid', '')})"


# --- $(VAR) expansion ------------------------------------------------------------------------------


def expand(text: str, *contexts: Mapping[str, str]) -> str:
    """Replace ``$(NAME)`` with its value from the first context that has it; ``$$`` is a literal ``$``;
    an unknown or unterminated reference stays as written."""

    def lookup(name: str) -> str:
        for context in contexts:
            if name in context:
                return context[name]
        return f"$({name})"

    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    out.append(lookup(rest[1:close]))
                    advance = close + 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


# --- environment -----------------------------------------------------------------------------------


def _labels_text(items: Mapping[str, str] | None) -> str:
    """Labels or annotations as the downward API writes them: sorted ``key="value"`` lines."""
    return "\n".join(f"{k}={json_quote(v)}" for k, v in sorted((items or {}).items()))


def json_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


FIELD_PATHS: dict[str, Callable[[Json], str]] = {
    "metadata.name": lambda p: str(p["metadata"]["name"]),
    "metadata.namespace": lambda p: str(p["metadata"]["namespace"]),
    "metadata.uid": lambda p: str(p["metadata"].get("uid", "")),
    "spec.nodeName": lambda p: str(p["spec"].get("nodeName", "")),
    "spec.serviceAccountName": lambda p: str(p["spec"].get("serviceAccountName", "")),
    "status.hostIP": lambda p: str(p.get("status", {}).get("hostIP", "")),
    "status.podIP": lambda p: str(p.get("status", {}).get("podIP", "")),
}
# Only the downward API volume may expose all labels or annotations (API validation).
VOLUME_FIELD_PATHS: dict[str, Callable[[Json], str]] = {
    **FIELD_PATHS,
    "metadata.labels": lambda p: _labels_text(p["metadata"].get("labels")),
    "metadata.annotations": lambda p: _labels_text(p["metadata"].get("annotations")),
}


def _env_from(ref: Json, lookup: Callable[[str], Mapping[str, T] | None], kind: str) -> Mapping[str, T]:
    """The data of an ``envFrom`` Secret or ConfigMap (``kind`` as the kubelet's message says it); an
    optional one that is missing contributes nothing."""
    data = lookup(ref.get("name", ""))
    if data is None:
        if ref.get("optional"):
            return {}
        raise ContainerConfigError(f'{kind} "{ref.get("name", "")}" not found')
    return data


def _key_ref_value(
    pod: Json, ref: Json, lookup: Callable[[str], Mapping[str, T] | None], kind: str
) -> T | None:
    """A ``secretKeyRef`` / ``configMapKeyRef`` value, with the kubelet's messages (``kind``: Secret or
    ConfigMap; kubelet_pods.go ``makeEnvironmentVariables``)."""
    namespace = pod["metadata"]["namespace"]
    name, key, optional = ref.get("name", ""), ref["key"], bool(ref.get("optional", False))
    data = lookup(name)
    if data is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    if key not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


def container_env(
    pod: Json,
    container: Json,
    image: BaseImage,
    secrets: SecretLookup,
    config_maps: ConfigMapLookup = lambda _name: None,
) -> tuple[dict[str, str], dict[str, str]]:
    """(the variables the pod spec declares, the process environment).

    The declared ones (envFrom, then env; later entries win) are what ``$(VAR)`` in command and args
    expands against; the process gets the image's ENV, the runtime's HOSTNAME, then the declared ones.
    """
    env: dict[str, str] = dict(image.env)
    env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
    declared: dict[str, str] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "secretRef" in source:
            secret = _env_from(source["secretRef"], secrets, "secret")
            declared.update({prefix + k: v.decode() for k, v in secret.items()})
        elif "configMapRef" in source:
            config_map = _env_from(source["configMapRef"], config_maps, "configmap")
            declared.update({prefix + k: v for k, v in config_map.items()})
    for entry in container.get("env", []):
        name = entry["name"]
        value: str | None
        if "valueFrom" not in entry:
            # Expanded against the variables declared before it (the kubelet knows no image ENV).
            value = expand(entry.get("value", ""), declared)
        else:
            source = entry["valueFrom"]
            if "secretKeyRef" in source:
                raw = _key_ref_value(pod, source["secretKeyRef"], secrets, "Secret")
                value = None if raw is None else raw.decode()
            elif "configMapKeyRef" in source:
                value = _key_ref_value(pod, source["configMapKeyRef"], config_maps, "ConfigMap")
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                if path not in FIELD_PATHS:
                    raise ContainerConfigError(
                        f"env {name}: fieldRef {path} is not supported by the pod runner"
                    )
                value = FIELD_PATHS[path](pod)
            else:
                raise ContainerConfigError(f"env {name}: valueFrom {sorted(source)} is not supported")
            if value is None:  # an optional reference that is absent: the variable is not set
                continue
        declared[name] = value
    env.update(declared)
    return declared, env


def command_line(container: Json, env: Mapping[str, str]) -> list[str]:
    """command + args with ``$(VAR)`` expanded; the base image has no ENTRYPOINT/CMD to fall back on."""
    command = [expand(word, env) for word in container.get("command", [])]
    args = [expand(word, env) for word in container.get("args", [])]
    if not command:
        raise ContainerConfigError(
            f"container {container['name']}: no command: the sdworker base image has no ENTRYPOINT or CMD"
        )
    return command + args


# --- identity --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups (fsGroup, supplementalGroups)
    fs_group: int | None
    no_new_privs: bool
    read_only_root: bool


def identity(pod: Json, container: Json, image: BaseImage) -> Identity:
    pod_sc: Json = pod["spec"].get("securityContext") or {}
    sc: Json = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return sc[key] if sc.get(key) is not None else pod_sc.get(key)

    image_uid, image_gid = image.uid_gid()
    run_as_user = pick("runAsUser")
    uid = int(run_as_user) if run_as_user is not None else image_uid
    if pick("runAsNonRoot"):
        ref = _pod_ref(pod)  # Go's %q of format.Pod(pod)
        if run_as_user is not None and int(run_as_user) == 0:
            raise ContainerConfigError(
                f'container\'s runAsUser breaks non-root policy (pod: "{ref}", '
                f"container: {container['name']})"
            )
        if run_as_user is None and image_uid is None:
            raise ContainerConfigError(
                f"container has runAsNonRoot and image has non-numeric user ({image.user}), "
                f'cannot verify user is non-root (pod: "{ref}", container: {container["name"]})'
            )
        if run_as_user is None and image_uid == 0:
            raise ContainerConfigError(
                f'container has runAsNonRoot and image will run as root (pod: "{ref}", '
                f"container: {container['name']})"
            )
    if uid is None:
        raise ContainerConfigError(f"image user {image.user!r} is not in the image's /etc/passwd")
    run_as_group = pick("runAsGroup")
    gid = int(run_as_group) if run_as_group is not None else (image_gid if image_gid is not None else 0)
    fs_group = pod_sc.get("fsGroup")
    # containerd lists the primary group among the supplementary ones too: `id` in a pod with runAsGroup
    # 3000 and fsGroup 2000 prints "gid=3000 groups=2000,3000" (Kubernetes docs, "Configure a Security
    # Context for a Pod or Container").
    groups = [gid]
    if fs_group is not None:
        groups.append(int(fs_group))
    groups += [int(g) for g in pod_sc.get("supplementalGroups", [])]
    # Groups the image's /etc/group gives the user (useradd --user-group: the primary group only).
    groups += [login.gid for login in image.logins if login.uid == uid and login.gid != gid]
    allow_escalation = sc.get("allowPrivilegeEscalation")
    return Identity(
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys(groups)),
        fs_group=int(fs_group) if fs_group is not None else None,
        no_new_privs=allow_escalation is False,
        read_only_root=bool(sc.get("readOnlyRootFilesystem", False)),
    )


def working_dir(container: Json, image: BaseImage) -> str:
    return str(container.get("workingDir") or image.workdir)


# --- back-off --------------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Per-container restart back-off, as client-go's ``flowcontrol.Backoff`` used by the kubelet.

    The first exit restarts at once and arms ``initial``; each later restart doubles it up to ``cap``; an
    exit more than ``2 * cap`` after the last restart starts over. While armed, a container that exited at
    ``finished`` waits until ``finished + delay`` (``IsInBackOffSince``), shown as CrashLoopBackOff.
    """

    initial: float = 10.0
    cap: float = 300.0
    delay: float = 0.0
    _last: float | None = None

    def _expired(self, event: float) -> bool:
        return self._last is None or event - self._last > 2 * self.cap

    def wait(self, finished: float, now: float) -> float:
        """Seconds still to wait before restarting a container that exited at ``finished`` (0: now)."""
        if self._expired(finished):
            return 0.0
        return max(0.0, finished + self.delay - now)

    def restarted(self, now: float) -> None:
        """Record a restart at ``now``."""
        self.delay = self.initial if self._expired(now) else min(self.delay * 2, self.cap)
        self._last = now


# --- probes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    kind: str  # "startup" | "readiness" | "liveness"
    path: str
    port: int
    host: str
    scheme: str
    headers: tuple[tuple[str, str], ...]
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int


def _port(container: Json, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"container {container['name']}: probe port {port!r} names no container port")


def probe(container: Json, kind: str) -> Probe | None:
    """The container's ``<kind>Probe`` with defaults; only ``httpGet`` is supported."""
    spec: Json | None = container.get(f"{kind}Probe")
    if not spec:
        return None
    if "httpGet" not in spec:
        raise ValueError(f"container {container['name']}: {kind}Probe: only httpGet probes are supported")
    http = spec["httpGet"]
    return Probe(
        kind=kind,
        path=http.get("path", "/") or "/",
        port=_port(container, http["port"]),
        host=http.get("host") or "127.0.0.1",
        scheme=http.get("scheme", "HTTP"),
        headers=tuple((h["name"], h["value"]) for h in http.get("httpHeaders", [])),
        initial_delay=float(spec.get("initialDelaySeconds", 0)),
        period=float(spec.get("periodSeconds", 10)),
        timeout=float(spec.get("timeoutSeconds", 1)),
        # Liveness and startup probes must have successThreshold 1 (API validation).
        success_threshold=int(spec.get("successThreshold", 1)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
    )


# --- quantities ------------------------------------------------------------------------------------

_SUFFIXES: dict[str, int | Decimal] = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": Decimal("0.001"),
}  # fmt: skip
_QUANTITY = re.compile(r"^(?P<num>[+-]?(\d+\.?\d*|\.\d+))(?P<exp>[eE][+-]?\d+)?(?P<suffix>[a-zA-Z]*)$")


def parse_quantity(text: str | int) -> int:
    """A resource quantity (``"1Gi"``, ``"500M"``, ``"1e3"``, ``128``) in whole units, rounded up."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group("suffix") not in _SUFFIXES or (match.group("exp") and match.group("suffix")):
        raise ValueError(f"{text!r} is not a resource quantity")
    value = Decimal(match.group("num") + (match.group("exp") or "")) * Decimal(
        _SUFFIXES[match.group("suffix")]
    )
    return int(value.to_integral_value(rounding="ROUND_CEILING"))
