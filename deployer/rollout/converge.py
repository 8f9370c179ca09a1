"""The converge judge: has a Swarm service update succeeded, failed, or is it still pending?

Pure. Input: what the engine said at successive monotonic times (`Observation`: the service
snapshot and its tasks), the target digest, the monitor window, the deadline and `since` (when
the deployment wrote the service, UTC). Output: a `Verdict` with a one-line reason and, for
failures, the tasks that failed and the engine's error for each. `docker service update` is no
judge: it exits 0 and prints "converged" after Swarm rolled a failed update back (docker/cli
#6752; reproduced on engine 20.10 here). This one is, by the rule below.

Succeeded, when all of these hold at the latest observation (what an on-call operator would
call a finished rollout: the new release serves everywhere and has stayed up for a while):
  1. The service's spec pins the target digest (no rollback, nobody else replaced it).
  2. Swarm's UpdateStatus is `completed`, or missing (a first create, or a write that changed
     nothing Swarm rolls out): then the tasks alone decide.
  3. Exactly `replicas` tasks are desired running, all on the target digest, all `running`,
     all created since the write (a digest deployed again: the old tasks run it too, and Swarm
     clears UpdateStatus at the write, before its updater replaces them). `starting` is not
     enough: a task stays there until its HEALTHCHECK passes.
  4. Each of them was seen `running` in every observation for at least `window` (the monitor
     window) counted from the later of: when it was first seen running, and when the update
     was first seen `completed`. Swarm's own monitor ends at `completed`; a release that dies
     just after that is only restarted by Swarm, which the CLI calls converged. We don't.
  5. No task on the target digest created since `since` ended by itself (failed, rejected,
     orphaned, or exited even with status 0) after the update completed, or at all when there
     is no UpdateStatus: such a flap fails the deployment at once. While Swarm is `updating`,
     failures are Swarm's business: its monitor and max_failure_ratio decide whether to roll
     back, and we wait for that decision.

Failed: UpdateStatus `rollback_started` (Swarm is rolling back), `rollback_completed`,
`rollback_paused` or `paused`; a flap (rule 5); a spec pinning another digest with no rollback
(someone else changed the service); the service gone; or the deadline passed before success,
with the last state seen. Rollback states win over the deadline in the reason: a rollback seen
after the deadline still says Swarm rolled back. Pending: anything else.

Re-attaching after a deployer crash (SIGKILL): the judge needs only the deployment's target
digest and start time (`since`) and fresh observations. Windows are counted from what this
watcher saw, never from engine clocks, so after a re-attach success comes at most one window
later than it could have; a finished rollback or a flap is recognised from the first
observation. `since` is compared with the engine's task creation times: deployer's clock and
the manager's should agree (they share a host, or NTP); skew only blurs which failed tasks
belong to this deployment.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from deployer.backends.swarm_types import ServiceState, TaskInfo, UpdateState

CURRENT_DESIRED = ("running", "ready")
# Tasks created before the write run the target digest too when a digest is deployed again
# (ForceUpdate): they are not this update's. Deployer's and the manager's clocks may differ
# this much.
CLOCK_SLACK = timedelta(seconds=1)  # `ready`: start-first prepares it, then starts it


class Outcome(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Observation:
    """What the engine said at monotonic time `at`: the service (None: gone) and its tasks."""

    at: float
    service: ServiceState | None
    tasks: tuple[TaskInfo, ...]


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed (or never got going), with the engine's error."""

    task_id: str
    slot: int | None
    node: str
    state: str
    error: str
    container_id: str = ""

    def describe(self) -> str:
        return f"task {self.task_id[:12]} (slot {self.slot}, node {self.node}): {self.error}"


@dataclass(frozen=True)
class Verdict:
    """The judge's answer: outcome, a one-line reason, and for failures the tasks at fault."""

    outcome: Outcome
    reason: str
    update_state: UpdateState | None = None
    failures: tuple[TaskFailure, ...] = ()

    @property
    def finished(self) -> bool:
        return self.outcome is not Outcome.PENDING

    def describe(self) -> str:
        """The reason, then one line per failed task."""
        return "\n".join([self.reason, *(failure.describe() for failure in self.failures)])


def judge(
    observations: Sequence[Observation],
    target: str,
    window: float,
    deadline: float,
    since: datetime | None = None,
) -> Verdict:
    """Succeeded, failed or pending, by the rule in this module's docstring."""
    if not observations:
        return Verdict(Outcome.PENDING, "nothing observed yet")
    latest = observations[-1]
    service = latest.service
    if service is None:
        return Verdict(Outcome.FAILED, "the Swarm service no longer exists (removed by someone?)")
    late = latest.at >= deadline
    state = service.update_state
    failures = _failures(latest.tasks, target, since)
    if state is not None and state not in (UpdateState.UPDATING, UpdateState.COMPLETED):
        return _stopped(observations, service, failures, late)
    if service.digest != target:
        return Verdict(
            Outcome.FAILED,
            f"the service now pins {short(service.digest)}, not {short(target)}, and Swarm did "
            f"not roll back: someone else updated it",
            state,
        )
    flaps = _flaps(service, failures)
    if flaps:
        return Verdict(Outcome.FAILED, _flap_reason(service, flaps), state, _failed(flaps))
    progress = _progress(observations, target, window, since)
    if progress.stable and state is not UpdateState.UPDATING:
        return Verdict(Outcome.SUCCEEDED, progress.summary, state)
    if late:
        return Verdict(
            Outcome.FAILED,
            f"did not converge before the deadline; last seen: {progress.summary}",
            state,
            _failed(failures) + progress.stuck,
        )
    return Verdict(Outcome.PENDING, progress.summary, state)


def short(digest: str | None) -> str:
    """sha256:0123456789ab (12 hex digits), or 'no digest'."""
    return digest[:19] if digest else "no digest"


@dataclass(frozen=True)
class _Progress:
    stable: bool  # rules 2-4 hold (apart from the UpdateStatus itself)
    summary: str
    stuck: tuple[TaskFailure, ...]  # target tasks desired running that do not run


def _new(task: TaskInfo, since: datetime | None) -> bool:
    """A task of this update: created since the write (within CLOCK_SLACK), or unknown when."""
    if since is None or task.created_at is None:
        return True
    return task.created_at >= since - CLOCK_SLACK


def _progress(
    observations: Sequence[Observation], target: str, window: float, since: datetime | None
) -> _Progress:
    latest = observations[-1]
    assert latest.service is not None
    service = latest.service
    current = [task for task in latest.tasks if task.desired_state in CURRENT_DESIRED]
    on_target = [task for task in current if task.digest == target and _new(task, since)]
    running = [task for task in on_target if task.state == "running"]
    old = len(current) - len(on_target)
    desired = service.replicas if service.replicas is not None else len(on_target)
    # Without UpdateStatus the window counts from each task's start alone (rule 4).
    if service.update_state is None:
        since_completed = float("-inf")
    else:
        since_completed = _streak_start(observations, _is_completed)
    stable_for = min(
        (
            latest.at - max(_running_since(observations, task.id), since_completed)
            for task in running
        ),
        default=float("inf"),
    )
    counted = len(running) == len(on_target) == desired and old == 0
    stable = counted and stable_for >= window
    parts = [
        f"Swarm {_state_text(service)}",
        f"{len(running)}/{desired} tasks run {short(target)}",
    ]
    if old:
        parts.append(f"{old} task(s) of another digest still desired running")
    if counted and running and not stable and since_completed < float("inf"):
        parts.append(f"up for {max(stable_for, 0):.1f} of {window:g} s")
    stuck = tuple(
        TaskFailure(task.id, task.slot, task.node, task.state, _stuck_text(task))
        for task in on_target
        if task.state != "running"
    )
    parts.extend(f"slot {failure.slot}: {failure.error}" for failure in stuck)
    return _Progress(stable, "; ".join(parts), stuck)


def _streak_start(
    observations: Sequence[Observation], holds: Callable[[Observation], bool]
) -> float:
    """The time of the first observation of the latest unbroken run where `holds`; inf if none."""
    start = float("inf")
    for observation in reversed(observations):
        if not holds(observation):
            break
        start = observation.at
    return start


def _running_since(observations: Sequence[Observation], task_id: str) -> float:
    """When the task was first seen running in the latest unbroken run of observations."""
    return _streak_start(observations, lambda seen: _is_running(seen, task_id))


def _is_running(observation: Observation, task_id: str) -> bool:
    return any(task.id == task_id and task.state == "running" for task in observation.tasks)


def _is_completed(observation: Observation) -> bool:
    service = observation.service
    return service is not None and service.update_state is UpdateState.COMPLETED


def _failures(tasks: Sequence[TaskInfo], target: str, since: datetime | None) -> list[TaskInfo]:
    """Tasks on the target digest, created since `since`, that ended by themselves."""
    return [
        task
        for task in tasks
        if task.digest == target
        and task.failed
        and (since is None or task.created_at is None or task.created_at >= since)
    ]


def _flaps(service: ServiceState, failures: list[TaskInfo]) -> list[TaskInfo]:
    """Failures Swarm will not act on: after `completed`, or anywhere without UpdateStatus."""
    if service.update_state is None:
        return failures
    if service.update_state is UpdateState.COMPLETED:
        completed = service.update_completed_at
        return [
            task
            for task in failures
            if completed is None or task.state_since is None or task.state_since >= completed
        ]
    return []


def _flap_reason(service: ServiceState, flaps: list[TaskInfo]) -> str:
    when = " after Swarm completed the update" if service.update_state else ""
    return (
        f"{len(flaps)} task(s) of {short(service.digest)} stopped by themselves{when}; Swarm "
        f"only restarts them and rolls nothing back: the service still pins this digest"
    )


def _stopped(
    observations: Sequence[Observation],
    service: ServiceState,
    failures: list[TaskInfo],
    late: bool,
) -> Verdict:
    state = service.update_state
    assert state is not None
    cause = _rollback_cause(observations) or service.update_message
    texts = {
        UpdateState.ROLLBACK_STARTED: f"Swarm is rolling the update back: {cause}",
        UpdateState.ROLLBACK_COMPLETED: (
            f"Swarm rolled the update back ({cause}); the service pins "
            f"{short(service.digest)} again"
        ),
        UpdateState.ROLLBACK_PAUSED: (
            f"Swarm's rollback failed and is paused ({service.update_message}); the service "
            f"may run a mix of digests: fix it by hand (docker service update/rollback)"
        ),
        UpdateState.PAUSED: (
            f"Swarm paused the update ({service.update_message}); resume or roll back by hand"
        ),
    }
    reason = texts.get(state, f"Swarm says {state}: {service.update_message}")
    if late:
        reason += " (seen after the deadline)"
    return Verdict(Outcome.FAILED, reason, state, _failed(failures))


def _rollback_cause(observations: Sequence[Observation]) -> str:
    """Swarm's message when the rollback began (it names the failed task); later ones don't."""
    for observation in reversed(observations):
        service = observation.service
        if service is not None and service.update_state is UpdateState.ROLLBACK_STARTED:
            return service.update_message
    return ""


def _failed(tasks: Sequence[TaskInfo]) -> tuple[TaskFailure, ...]:
    return tuple(
        TaskFailure(
            task.id, task.slot, task.node, task.state, task.what_went_wrong, task.container_id
        )
        for task in tasks
    )


def _stuck_text(task: TaskInfo) -> str:
    if task.state == "starting":
        return "starting (its HEALTHCHECK has not passed yet)"
    detail = task.error or task.message
    return f"{task.state} ({detail})" if detail and detail != task.state else task.state


def _state_text(service: ServiceState) -> str:
    if service.update_state is None:
        return "reports no update status"
    message = f" ({service.update_message})" if service.update_message else ""
    return f"{service.update_state}{message}"
