"""The pod status the pod runner writes: the kubelet's phase, conditions and containerStatuses."""

from __future__ import annotations

from sdworker_tools.podrunner import status as st
from sdworker_tools.podrunner.kubelet import go_duration


def _running(name: str = "c", *, ready: bool = False) -> st.ContainerState:
    state = st.ContainerState(name, "img")
    state.run("2026-01-01T00:00:00Z", "sdworker://1")
    state.ready = state.started = ready
    return state


def _exited(code: int, *, restarting: bool) -> st.ContainerState:
    state = st.ContainerState("c", "img")
    terminated = st.Terminated.of(code, "t0", "t1")
    if restarting:
        state.last_terminated = terminated
        state.wait("CrashLoopBackOff", "back-off 10s restarting failed container=c pod=p_ns(u)")
    else:
        state.exit(terminated)
    return state


def test_phase_follows_get_phase() -> None:
    assert st.phase("Always", [st.ContainerState("c", "img")]) == "Pending"  # ContainerCreating
    assert st.phase("Always", [_running()]) == "Running"
    assert st.phase("Always", [_exited(3, restarting=True)]) == "Running"  # crash-looping, not Pending
    assert st.phase("Never", [_exited(0, restarting=False)]) == "Succeeded"
    assert st.phase("Never", [_exited(1, restarting=False)]) == "Failed"
    assert st.phase("OnFailure", [_exited(1, restarting=True)]) == "Running"
    assert st.phase("Always", [_running(), st.ContainerState("d", "img")]) == "Pending"


def test_status_of_a_crash_looping_container() -> None:
    state = _exited(3, restarting=True)
    state.restart_count = 2
    body = st.pod_status(
        "Always", [state], st.PodView(sandbox_ready=True, host_ip="127.0.0.1", start_time="t")
    )
    cs = body["containerStatuses"][0]
    assert cs["state"] == {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 10s restarting failed container=c pod=p_ns(u)",
        },
        "running": None,  # strategic merge patch: a state that ended is deleted
        "terminated": None,
    }
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert (cs["restartCount"], cs["ready"], cs["started"]) == (2, False, False)
    conditions = {c["type"]: c for c in body["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "ContainersNotReady"
    assert conditions["Ready"]["message"] == "containers with unready status: [c]"
    assert conditions["PodReadyToStartContainers"]["status"] == "True"
    assert (body["phase"], body["hostIP"], body["hostIPs"], body["startTime"]) == (
        "Running",
        "127.0.0.1",
        [{"ip": "127.0.0.1"}],
        "t",
    )


def test_ready_containers_make_the_pod_ready_and_transition_times_hold() -> None:
    view = st.PodView(sandbox_ready=True)
    first = st.pod_status("Always", [_running(ready=True)], view)
    conditions = {c["type"]: c for c in first["conditions"]}
    assert conditions["Ready"]["status"] == conditions["ContainersReady"]["status"] == "True"
    assert conditions["Ready"]["reason"] is None
    view.previous_conditions = [{**c, "lastTransitionTime": "earlier"} for c in first["conditions"]]
    again = {c["type"]: c for c in st.pod_status("Always", [_running(ready=True)], view)["conditions"]}
    assert again["Ready"]["lastTransitionTime"] == "earlier"  # unchanged status keeps its time
    flipped = {c["type"]: c for c in st.pod_status("Always", [_running(ready=False)], view)["conditions"]}
    assert flipped["Ready"]["lastTransitionTime"] != "earlier"


def test_readiness_gates_hold_ready_back() -> None:
    view = st.PodView(sandbox_ready=True, readiness_gates=["example.com/gate"])
    body = st.pod_status("Always", [_running(ready=True)], view)
    ready = next(c for c in body["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")


def test_back_off_durations_print_as_go_does() -> None:
    assert [go_duration(s) for s in (10, 20, 80, 160, 300)] == ["10s", "20s", "1m20s", "2m40s", "5m0s"]
