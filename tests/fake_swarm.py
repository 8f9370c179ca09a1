"""A fake Swarm manager at the SwarmControl seam: services, their tasks, and scripted outcomes.

`apply` records the spec and, by the service's scripted `outcome`, makes Swarm's answer:
  succeed   the update completes; one running task per replica on the new digest and port
  rollback  Swarm rolls back: the spec pins the previous digest and port, state
            rollback_completed, the new task failed with an error
  hang      the update stays `updating` with the new task `starting`, forever
  lost      the write lands, then the engine connection drops (apply raises)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from deployer.backends.base import LABEL_DEPLOYMENT, LABEL_DIGEST, LABEL_INSTANCE, LABEL_SERVICE
from deployer.backends.swarm_types import (
    ServiceSpec,
    ServiceState,
    TaskInfo,
    UpdateState,
    WriteResult,
)
from deployer.errors import DockerError, ServiceError

NODE = "127.0.0.1"
_ids = itertools.count(1)


def task_id() -> str:
    return f"task{next(_ids):08d}" + "0" * 17


@dataclass
class FakeService:
    state: ServiceState
    tasks: list[TaskInfo] = field(default_factory=list)
    specs: list[ServiceSpec] = field(default_factory=list)


class FakeSwarm:
    """An in-memory manager node; `outcome` scripts what the next update does."""

    def __init__(self) -> None:
        self.services: dict[str, FakeService] = {}
        self.digests: dict[str, str] = {}  # image:tag -> digest
        self.outcome = "succeed"
        self.calls: list[str] = []
        self.reachable = True
        self.on_apply: list[object] = []  # callables run before a write (to observe nginx)

    # SwarmEngine / SwarmControl

    def service(self, name: str) -> ServiceState | None:
        self._check()
        found = self.services.get(name)
        return found.state if found is not None else None

    def tasks(self, service: str) -> list[TaskInfo]:
        self._check()
        for found in self.services.values():
            if service in (found.state.id, found.state.name):
                return list(found.tasks)
        return []

    def task_logs(self, task: TaskInfo, tail: int = 20) -> str:
        return f"log of {task.short_id}: PASSWORD=hunter2-secret"

    def resolve(self, image: str, tag: str) -> str:
        self._check()
        self.calls.append(f"resolve {image}:{tag}")
        return self.digests[f"{image}:{tag}"]

    def node_addresses(self) -> list[str]:
        return [NODE]

    def apply(self, spec: ServiceSpec) -> WriteResult:
        self._check()
        for hook in self.on_apply:
            hook()  # type: ignore[operator]
        self.calls.append(f"apply {spec.name} {spec.digest} port {spec.port}")
        found = self.services.get(spec.name)
        created = found is None
        if found is None:
            found = FakeService(self._state(spec, None))
            self.services[spec.name] = found
        found.specs.append(spec)
        previous = found.state
        outcome = self.outcome
        now = datetime.now(UTC)
        if outcome in ("succeed", "lost"):
            found.state = replace(
                self._state(spec, previous if not created else None),
                update_state=None if created else UpdateState.COMPLETED,
                update_started_at=None if created else now,
                update_completed_at=None if created else now,
            )
            self._stop_tasks(found)
            found.tasks += [self._task(found, spec, slot, "running") for slot in _slots(spec)]
        elif outcome == "rollback":
            failed = [self._task(found, spec, slot, "failed") for slot in _slots(spec)]
            found.tasks += failed
            if created:
                found.state = replace(self._state(spec, None), update_state=None)
            else:
                found.state = replace(
                    previous,
                    version=previous.version + 2,
                    update_state=UpdateState.ROLLBACK_COMPLETED,
                    update_message="rollback completed",
                    update_started_at=now,
                    previous_digest=None,
                )
        elif outcome == "hang":
            found.state = replace(
                self._state(spec, previous if not created else None),
                update_state=None if created else UpdateState.UPDATING,
                update_started_at=now,
            )
            found.tasks += [self._task(found, spec, slot, "starting") for slot in _slots(spec)]
        if outcome == "lost":
            raise DockerError("cannot reach the Docker engine: connection reset by peer")
        return WriteResult(found.state.id, created=created, adopted=False)

    def rollback(self, name: str) -> None:
        self.calls.append(f"rollback {name}")
        found = self.services[name]
        state = found.state
        found.state = replace(
            state,
            digest=state.previous_digest,
            image=f"{state.image.split('@')[0]}@{state.previous_digest}",
            port=state.previous_port,
            update_state=UpdateState.ROLLBACK_COMPLETED,
            labels={**state.labels, LABEL_DEPLOYMENT: "before"},
        )

    def remove(self, name: str) -> None:
        self.calls.append(f"remove {name}")
        self.services.pop(name, None)

    # helpers for tests

    def _check(self) -> None:
        if not self.reachable:
            raise ServiceError("swarm", "cannot reach the Docker engine")

    def _state(self, spec: ServiceSpec, previous: ServiceState | None) -> ServiceState:
        now = datetime.now(UTC)
        return ServiceState(
            id=f"id-{spec.name}",
            name=spec.name,
            version=(previous.version + 1) if previous else 1,
            labels={
                LABEL_SERVICE: spec.name,
                LABEL_INSTANCE: spec.instance,
                LABEL_DIGEST: spec.digest,
                LABEL_DEPLOYMENT: spec.deployment,
            },
            image=spec.reference,
            digest=spec.digest,
            port=spec.port,
            replicas=spec.replicas,
            update_state=None,
            update_message="",
            update_started_at=None,
            update_completed_at=None,
            previous_image=previous.image if previous else None,
            previous_digest=previous.digest if previous else None,
            previous_port=previous.port if previous else None,
            created_at=now,
            updated_at=now,
            force_update=spec.force_update,
        )

    def _task(self, found: FakeService, spec: ServiceSpec, slot: int, state: str) -> TaskInfo:
        port = spec.port + slot if spec.slot_ports and spec.port is not None else spec.port
        return TaskInfo(
            id=task_id(),
            service_id=found.state.id,
            slot=slot,
            node_id="node1",
            node="node1",
            desired_state="running" if state != "failed" else "shutdown",
            state=state,
            message=state,
            error="task: non-zero exit (1)" if state == "failed" else "",
            exit_code=1 if state == "failed" else None,
            image=spec.reference,
            digest=spec.digest,
            port=port,
            container_id=f"c{slot}",
            created_at=datetime.now(UTC),
            state_since=datetime.now(UTC),
            node_address=NODE,
        )

    def _stop_tasks(self, found: FakeService) -> None:
        found.tasks = [
            replace(task, desired_state="shutdown", state="shutdown")
            if task.desired_state == "running"
            else task
            for task in found.tasks
        ]


def _slots(spec: ServiceSpec) -> range:
    return range(1, spec.replicas + 1)
