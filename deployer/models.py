"""Typed values that flow between the steps: events, upstreams, deployments."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class PushEvent:
    """A registry said `repository:tag` was pushed. A hint only: the tag is resolved again."""

    source: str
    repository: str
    tag: str
    pusher: str = ""


@dataclass(frozen=True)
class Server:
    """One container (or Swarm endpoint) nginx sends a service's traffic to."""

    address: str  # host:port
    container: str  # the container's name; for Swarm, the task, node or DNS name
    digest: str
    parameters: str = ""  # nginx `server` parameters, e.g. `max_fails=0` or `resolve`
    kind: str = "container"  # container | task | node | dns


@dataclass(frozen=True)
class Endpoint:
    """Where nginx reaches a Swarm service: a task's port on its node (host publishing), a
    node's published port (ingress) or the service's DNS name (dns)."""

    address: str  # host:port
    name: str  # the task (`slot 1 (3f2a...)`), node or DNS name
    digest: str
    kind: str = "task"  # task | node | dns
    parameters: str = ""  # nginx `server` parameters

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.address}"


@dataclass(frozen=True)
class Upstream:
    """What nginx should send a service's traffic to: its containers (none yet: no servers).

    `address`, `container` and `digest` are the first server's, for templates written for one.
    """

    service: str
    servers: tuple[Server, ...] = ()

    @property
    def address(self) -> str | None:
        return self.servers[0].address if self.servers else None

    @property
    def container(self) -> str | None:
        return self.servers[0].container if self.servers else None

    @property
    def digest(self) -> str | None:
        return self.servers[0].digest if self.servers else None

    @property
    def zone(self) -> bool:
        """True when a server is re-resolved at run time (`resolve` needs a shared zone)."""
        return any("resolve" in server.parameters.split() for server in self.servers)


class DeploymentState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    SUPERSEDED = "superseded"

    @property
    def finished(self) -> bool:
        return self not in (DeploymentState.QUEUED, DeploymentState.RUNNING)


FINISHED_STATES = frozenset(state.value for state in DeploymentState if state.finished)


SWITCH_STEP = "nginx"  # the step after which the new release is the one that serves


class StepState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # deployer stopped or was killed while it ran


@dataclass
class Step:
    """One recorded step of a deployment."""

    name: str
    state: StepState
    started_at: datetime
    finished_at: datetime | None = None
    detail: str = ""


@dataclass
class Deployment:
    """A request to run `image:tag` for `service`, and what became of it."""

    id: str
    service: str
    trigger: str
    image: str
    tag: str
    state: DeploymentState = DeploymentState.QUEUED
    digest: str | None = None
    requested_digest: str | None = None  # set by rollbacks: deploy exactly this digest
    previous_digest: str | None = None
    container: str | None = None
    error: str | None = None
    logs: str | None = None  # the new container's last log lines when it failed (may hold secrets)
    gap_seconds: float | None = None  # stop-first: how long nothing served the service
    created_at: datetime = field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[Step] = field(default_factory=list)

    def last_step(self, name: str) -> Step | None:
        """The newest recorded step called name."""
        return next((step for step in reversed(self.steps) if step.name == name), None)

    @property
    def switched_at(self) -> datetime | None:
        """When nginx started sending traffic to this deployment's container, if it did.

        From then on that container is the one that serves: a restart finishes this deployment
        (drain, retire) and never rolls it back.
        """
        step = self.last_step(SWITCH_STEP)
        return step.finished_at if step and step.state is StepState.SUCCEEDED else None

    @property
    def reached_nginx(self) -> bool:
        """True once the nginx step began: nginx may have been told about the new container."""
        return self.last_step(SWITCH_STEP) is not None
