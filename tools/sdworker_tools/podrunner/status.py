"""The pod status the kubelet would write, built from what the pod runner knows: pure, no I/O.

Reproduces pkg/kubelet/kubelet_pods.go (kubernetes v1.36): ``getPhase`` (phase from container states and
restartPolicy), ``generateAPIPodStatus``/``convertToAPIContainerStatuses`` (containerStatuses with state,
lastState, restartCount, ready, started) and pkg/kubelet/status/generate.go (the Initialized,
PodReadyToStartContainers, ContainersReady and Ready conditions with their reasons and messages).
The result is a strategic-merge patch body for the pods/status subresource: lists merge by ``name``/``type``,
and a container state that ends is deleted with ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]
_STATES = ("waiting", "running", "terminated")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    started_at: str
    finished_at: str
    reason: str = ""  # "Completed" for exit 0, "Error" otherwise (as containerd reports)
    signal: int | None = None

    @classmethod
    def of(cls, exit_code: int, started_at: str, finished_at: str, signal: int | None = None) -> Terminated:
        return cls(exit_code, started_at, finished_at, "Completed" if exit_code == 0 else "Error", signal)

    def to_json(self, container_id: str) -> Json:
        out: Json = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": container_id,
        }
        if self.signal is not None:
            out["signal"] = self.signal
        return out


@dataclass
class ContainerState:
    """One container as the runner tracks it; exactly one of waiting/running/terminated is current."""

    name: str
    image: str
    restart_count: int = 0
    waiting: tuple[str, str] | None = ("ContainerCreating", "")  # (reason, message)
    running_since: str | None = None
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    ready: bool = False
    started: bool = False
    container_id: str = ""

    def wait(self, reason: str, message: str = "") -> None:
        self.waiting, self.running_since, self.terminated = (reason, message), None, None
        self.ready = self.started = False

    def run(self, started_at: str, container_id: str) -> None:
        self.waiting, self.running_since, self.terminated = None, started_at, None
        self.container_id = container_id
        self.ready = self.started = False

    def exit(self, terminated: Terminated) -> None:
        """The process ended: it is the current state until the kubelet decides to restart or not."""
        self.waiting, self.running_since, self.terminated = None, None, terminated
        self.ready = self.started = False

    def to_json(self) -> Json:
        state: Json = dict.fromkeys(_STATES)
        if self.waiting is not None:
            reason, message = self.waiting
            state["waiting"] = {"reason": reason, **({"message": message} if message else {})}
        elif self.running_since is not None:
            state["running"] = {"startedAt": self.running_since}
        elif self.terminated is not None:
            state["terminated"] = self.terminated.to_json(self.container_id)
        last: Json = dict.fromkeys(_STATES)
        if self.last_terminated is not None:
            last["terminated"] = self.last_terminated.to_json(self.container_id)
        out: Json = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": last,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def phase(restart_policy: str, containers: list[ContainerState]) -> str:
    """``getPhase`` for pods without init containers."""
    waiting = running = stopped = succeeded = 0
    for c in containers:
        if c.running_since is not None:
            running += 1
        elif c.terminated is not None:
            stopped += 1
            succeeded += c.terminated.exit_code == 0
        elif c.last_terminated is not None:  # waiting to restart after having run
            stopped += 1
            succeeded += c.last_terminated.exit_code == 0
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart_policy == "Never" else "Running"
    return "Pending"


@dataclass
class PodView:
    """What the conditions depend on besides the containers."""

    sandbox_ready: bool = False
    host_ip: str = ""
    start_time: str = ""
    previous_conditions: list[Json] = field(default_factory=list)
    readiness_gates: list[str] = field(default_factory=list)


def _condition(view: PodView, kind: str, ok: bool, reason: str = "", message: str = "") -> Json:
    status = "True" if ok else "False"
    previous = next((c for c in view.previous_conditions if c.get("type") == kind), None)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = previous["lastTransitionTime"]
    else:
        since = now_rfc3339()
    cond: Json = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
        "reason": reason or None,
        "message": message or None,
    }
    return cond


def pod_status(restart_policy: str, containers: list[ContainerState], view: PodView) -> Json:
    """The status patch: phase, conditions, containerStatuses, hostIP and startTime."""
    unready = [c.name for c in containers if not c.ready]
    not_ready_msg = f"containers with unready status: [{' '.join(unready)}]"
    current = phase(restart_policy, containers)
    # A terminal pod's containers are all done: reason PodCompleted (status/generate.go).
    done = current in ("Succeeded", "Failed")
    gate_status = {c.get("type"): c.get("status") for c in view.previous_conditions}
    gates_unready = [g for g in view.readiness_gates if gate_status.get(g) != "True"]
    containers_ready = not unready
    ready = containers_ready and not gates_unready
    if done:
        ready_reason, ready_msg = "PodCompleted", ""
    elif not containers_ready:
        ready_reason, ready_msg = "ContainersNotReady", not_ready_msg
    elif gates_unready:
        ready_reason = "ReadinessGatesNotReady"
        ready_msg = f"corresponding condition of pod readiness gate {gates_unready[0]!r} does not exist."
    else:
        ready_reason, ready_msg = "", ""
    conditions = [
        _condition(view, "PodReadyToStartContainers", view.sandbox_ready),
        _condition(view, "Initialized", True, "PodCompleted" if done else ""),
        _condition(
            view,
            "ContainersReady",
            containers_ready,
            "PodCompleted" if done else ("" if containers_ready else "ContainersNotReady"),
            "" if containers_ready or done else not_ready_msg,
        ),
        _condition(view, "Ready", ready, ready_reason, ready_msg),
    ]
    status: Json = {
        "phase": current,
        "conditions": conditions,
        "containerStatuses": [c.to_json() for c in containers],
    }
    if view.host_ip:
        status["hostIP"] = view.host_ip
        status["hostIPs"] = [{"ip": view.host_ip}]
    if view.start_time:
        status["startTime"] = view.start_time
    return status
