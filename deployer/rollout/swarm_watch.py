"""Watch a Swarm service converge: observe the engine, ask the judge, fetch failed tasks' logs.

The thin executor beside the pure judge (deployer/rollout/converge.py). It needs only the
`SwarmEngine` seam (the Swarm backend or a fake), the target digest, the window, and `since`;
so after a deployer restart the same call re-attaches to an update Swarm carried on with.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from deployer.backends.swarm_types import SwarmEngine, UpdateState
from deployer.errors import DeploymentCancelled, DockerError, ServiceError
from deployer.rollout.converge import Observation, Outcome, TaskFailure, Verdict, judge

MAX_LOGGED_TASKS = 3


@dataclass(frozen=True)
class Convergence:
    """The final verdict, the failed tasks' last log lines, and how long it took."""

    verdict: Verdict
    logs: tuple[tuple[TaskFailure, str], ...] = ()
    observations: int = 0
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.verdict.outcome is Outcome.SUCCEEDED

    def describe(self) -> str:
        """The reason, then each failed task's error and last log lines."""
        lines = [self.verdict.reason]
        logged = {failure.task_id: text for failure, text in self.logs}
        for failure in self.verdict.failures:
            lines.append(failure.describe())
            if failure.task_id in logged:
                lines.append(f"last log lines:\n{logged[failure.task_id]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Watch:
    """What to watch for: service name, target digest, window and timeout (seconds), since."""

    service: str
    target: str
    window: float
    timeout: float
    since: datetime | None = None
    interval: float = 0.5
    settle: float = 0.0  # after a failure in rollback_started: wait this long for the end


def watch(
    engine: SwarmEngine,
    spec: Watch,
    stopping: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Convergence:
    """Observe until the judge decides (and a rollback settles); raise if deployer stops."""
    stopping = stopping or threading.Event()
    started = clock()
    deadline = started + spec.timeout
    observations: list[Observation] = []
    settle_until = math.inf
    while True:
        try:
            seen = _observe(engine, spec.service, clock)
        except DockerError as err:
            # A manager election or a busy engine: Swarm carries on, and so do we until the
            # deadline.
            if clock() >= deadline:
                message = f"{err}; still failing at the deadline ({spec.timeout:g} s)"
                raise ServiceError(spec.service, message) from err
            verdict = Verdict(Outcome.PENDING, f"cannot read the service now: {err}")
        else:
            observations.append(seen)
            verdict = judge(observations, spec.target, spec.window, deadline, spec.since)
            if verdict.finished and not (_rolling_back(verdict) and spec.settle > 0):
                break
            if verdict.finished:  # Swarm is rolling back: wait a little to report its end
                settle_until = min(settle_until, seen.at + spec.settle)
                if seen.at >= settle_until:
                    break
        if stopping.wait(spec.interval):
            raise DeploymentCancelled(
                f"deployer is stopping while Swarm updates {spec.service} "
                f"(last seen: {verdict.reason}); Swarm carries on without deployer"
            )
    logs = tuple(
        (failure, engine.task_logs(task))
        for failure in verdict.failures[:MAX_LOGGED_TASKS]
        for task in observations[-1].tasks
        if task.id == failure.task_id
    )
    return Convergence(verdict, logs, len(observations), clock() - started)


def _observe(engine: SwarmEngine, name: str, clock: Callable[[], float]) -> Observation:
    service = engine.service(name)
    tasks = engine.tasks(service.id) if service is not None else []
    return Observation(clock(), service, tuple(tasks))


def _rolling_back(verdict: Verdict) -> bool:
    return verdict.update_state is UpdateState.ROLLBACK_STARTED
