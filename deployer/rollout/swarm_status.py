"""What /status shows for a Swarm service (pure): replicas desired and running, and its tasks.

The tasks shown are the ones that matter now: those Swarm wants running (or is preparing for
a start-first update) and those whose process still runs although Swarm told them to stop
(they linger a few seconds and still answer on their port). History is left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from deployer.backends.swarm_types import ServiceState, TaskInfo


@dataclass(frozen=True)
class TaskStatus:
    """One task as the status surfaces show it."""

    id: str
    slot: int | None
    node: str
    desired_state: str
    state: str
    digest: str | None
    port: int | None
    error: str


@dataclass(frozen=True)
class SwarmStatus:
    """A Swarm service for /status, the page and the CLI."""

    service: str
    digest: str | None
    update_state: str | None
    update_message: str
    replicas_desired: int | None
    replicas_running: int  # tasks desired running, running, on the spec's digest
    tasks: tuple[TaskStatus, ...]


def make_status(state: ServiceState, tasks: Iterable[TaskInfo]) -> SwarmStatus:
    """The status of `state` given its tasks (pure)."""
    shown = sorted(
        (task for task in tasks if task.desired_state in ("running", "ready") or task.alive),
        key=lambda task: (task.slot or 0, task.created_at is None, task.created_at),
    )
    running = [
        task
        for task in shown
        if task.desired_state == "running"
        and task.state == "running"
        and task.digest == state.digest
    ]
    return SwarmStatus(
        service=state.name,
        digest=state.digest,
        update_state=state.update_state.value if state.update_state else None,
        update_message=state.update_message,
        replicas_desired=state.replicas,
        replicas_running=len(running),
        tasks=tuple(
            TaskStatus(
                task.id,
                task.slot,
                task.node,
                task.desired_state,
                task.state,
                task.digest,
                task.port,
                task.error,
            )
            for task in shown
        ),
    )
