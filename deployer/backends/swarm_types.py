"""What a Swarm rollout needs from the engine: the data types of a service and its tasks.

No `docker` import here (deployer/backends/swarm.py is the adapter): the converge judge, the
rollout strategy and the tests depend on this module only, and unit tests give them a fake at
the `SwarmEngine` seam. Durations are seconds (floats); the adapter converts them to the
Engine API's integer nanoseconds.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from deployer.backends.base import LABEL_DEPLOYMENT, LABEL_DIGEST, LABEL_INSTANCE, LABEL_SERVICE

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
HOST_NETWORK = "host"
SLOT = "{{.Task.Slot}}"  # Swarm expands this template in a task's environment


def port_value(port: int, slot_ports: bool) -> str:
    """$PORT in the spec: the port, or for a block of slot ports `<base/10>{{.Task.Slot}}`."""
    return f"{port // 10}{SLOT}" if slot_ports else str(port)


def parse_port(value: str, slot: int | None = None) -> int | None:
    """$PORT from a spec: a port, or a slot block's base (slot None) or slot's port."""
    if value.isdigit():
        return int(value)
    prefix = value.removesuffix(SLOT)
    if prefix == value or not prefix.isdigit():
        return None
    return int(prefix) * 10 + (slot or 0)


class UpdateState(enum.StrEnum):
    """`UpdateStatus.State` of a Swarm service (absent right after a create or a no-op update)."""

    UPDATING = "updating"
    COMPLETED = "completed"
    PAUSED = "paused"
    ROLLBACK_STARTED = "rollback_started"
    ROLLBACK_COMPLETED = "rollback_completed"
    ROLLBACK_PAUSED = "rollback_paused"

    @property
    def rolled_back(self) -> bool:
        """True for the states of a rollback (started, completed or paused)."""
        return self.value.startswith("rollback_")


@dataclass(frozen=True)
class UpdatePolicy:
    """How Swarm replaces tasks. Order (start-first) and failure action (rollback) are fixed."""

    parallelism: int = 1
    delay: float = 0.0
    monitor: float = 5.0  # >= the health window: a task must stay up this long after starting
    max_failure_ratio: float = 0.0


@dataclass(frozen=True)
class Resources:
    """CPU (in CPUs, e.g. 0.5) and memory (in bytes) limits and reservations per task."""

    cpus_limit: float | None = None
    memory_limit: int | None = None
    cpus_reservation: float | None = None
    memory_reservation: int | None = None


@dataclass(frozen=True)
class HealthCheck:
    """A HEALTHCHECK for the service's containers; `test` like ["CMD", "wget", ...]."""

    test: tuple[str, ...]
    interval: float = 5.0
    timeout: float = 3.0
    retries: int = 3
    start_period: float = 0.0


@dataclass(frozen=True)
class FileReference:
    """A Swarm secret or config, by name, mounted as a file (`target`, default: the name)."""

    name: str
    target: str = ""
    mode: int = 0o444

    @property
    def file_name(self) -> str:
        return self.target or self.name


@dataclass(frozen=True)
class Mount:
    """A bind mount (absolute source) or a named volume in the task's container."""

    source: str
    target: str
    read_only: bool = False

    @property
    def kind(self) -> str:
        return "bind" if self.source.startswith("/") else "volume"


@dataclass(frozen=True)
class ServiceSpec:
    """Everything needed to create or update one Swarm service (pure data).

    The image is always pinned: `image@digest`. With host networking the app listens on
    `port`, handed to it as `$PORT`; rotate the port on every update (start-first cannot
    reuse a host-mode port, moby#36934). With `slot_ports` (several replicas on host
    networking) `port` is a block's base, a multiple of 10, and the task in slot k listens on
    base + k (`PORT=<base/10>{{.Task.Slot}}`), so replicas can share a node.
    `publish` ingress publishes `target_port` as `published_port` through the routing mesh;
    dns gives the service DNS round-robin endpoints (`tasks.<name>` on its overlay network).
    """

    name: str
    image: str  # repository, without tag or digest
    digest: str  # sha256:...
    instance: str
    deployment: str = ""
    replicas: int = 1
    env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    constraints: tuple[str, ...] = ()
    resources: Resources = field(default_factory=Resources)
    secrets: tuple[FileReference, ...] = ()
    configs: tuple[FileReference, ...] = ()
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    network: str = HOST_NETWORK  # host, or the name of a swarm-scoped network
    port: int | None = None  # host networking: the port the app listens on ($PORT)
    healthcheck: HealthCheck | None = None  # None: the image's own HEALTHCHECK
    labels: dict[str, str] = field(default_factory=dict)
    stop_grace_period: float = 10.0
    restart_delay: float = 1.0
    slot_ports: bool = False
    publish: str = "host"  # host | ingress | dns
    published_port: int | None = None  # ingress: the port on every node
    target_port: int | None = None  # ingress and dns: the port the app listens on
    user: str | None = None
    working_dir: str | None = None
    stop_signal: str | None = None
    mounts: tuple[Mount, ...] = ()
    hosts: tuple[str, ...] = ()  # `IP host` lines for /etc/hosts
    log_driver: str | None = None
    log_options: dict[str, str] = field(default_factory=dict)
    force_update: int = 0  # TaskTemplate.ForceUpdate: a new value replaces every task

    def __post_init__(self) -> None:
        if not DIGEST.match(self.digest):
            raise ValueError(f"{self.name}: expected a digest sha256:<64 hex>, got {self.digest!r}")
        if "@" in self.image:
            raise ValueError(f"{self.name}: image {self.image!r} must not carry a digest")
        if self.replicas < 0:
            raise ValueError(f"{self.name}: replicas must be >= 0, got {self.replicas}")
        if self.network == HOST_NETWORK and self.port is None:
            raise ValueError(f"{self.name}: host networking needs a port ($PORT for the app)")
        if self.slot_ports and (self.port is None or self.port % 10):
            raise ValueError(f"{self.name}: slot ports need a block base (a multiple of 10)")
        if self.publish == "ingress" and (self.published_port is None or not self.target_port):
            raise ValueError(f"{self.name}: ingress publishing needs published and target ports")
        if self.publish != "host" and self.network == HOST_NETWORK:
            raise ValueError(f"{self.name}: {self.publish} publishing cannot use host networking")

    @property
    def reference(self) -> str:
        """`repository@sha256:...`, what every node pulls."""
        return f"{self.image}@{self.digest}"

    @property
    def service_labels(self) -> dict[str, str]:
        """The labels on the service: the operator's, then deployer's (which win)."""
        labels = {
            **self.labels,
            LABEL_SERVICE: self.name,
            LABEL_INSTANCE: self.instance,
            LABEL_DIGEST: self.digest,
        }
        if self.deployment:
            labels[LABEL_DEPLOYMENT] = self.deployment
        return labels

    @property
    def environment(self) -> dict[str, str]:
        """The containers' environment: the service's env plus PORT (host networking: the
        release's port; ingress and dns: the target port)."""
        if self.port is not None:
            return {**self.env, "PORT": port_value(self.port, self.slot_ports)}
        if self.target_port is not None:
            return {**self.env, "PORT": str(self.target_port)}
        return dict(self.env)


@dataclass(frozen=True)
class ServiceState:
    """One Swarm service as the engine reports it now (a snapshot)."""

    id: str
    name: str
    version: int  # the spec version every write must name (optimistic locking)
    labels: dict[str, str]
    image: str  # the spec's image reference (repository@sha256:... for deployer's services)
    digest: str | None
    port: int | None  # $PORT in the spec: the port its (converged) tasks listen on
    replicas: int | None  # None for a global service
    update_state: UpdateState | None
    update_message: str
    update_started_at: datetime | None
    update_completed_at: datetime | None
    previous_image: str | None  # PreviousSpec's image; Swarm drops PreviousSpec on rollback
    previous_digest: str | None
    previous_port: int | None
    created_at: datetime | None
    updated_at: datetime | None
    force_update: int = 0  # TaskTemplate.ForceUpdate, carried over by every write

    @property
    def instance(self) -> str:
        return self.labels.get(LABEL_INSTANCE, "")


class TaskState(enum.StrEnum):
    """Swarm task states, in the order a task moves through them."""

    NEW = "new"
    ALLOCATED = "allocated"
    PENDING = "pending"
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    PREPARING = "preparing"
    READY = "ready"
    STARTING = "starting"  # the container runs; its HEALTHCHECK has not passed yet
    RUNNING = "running"
    COMPLETE = "complete"  # exited 0: for a service that should keep running, a failure too
    SHUTDOWN = "shutdown"
    FAILED = "failed"
    REJECTED = "rejected"
    REMOVE = "remove"
    ORPHANED = "orphaned"


# A task in one of these ended by itself, not because Swarm was told to stop it.
FAILURE_STATES = frozenset(
    {TaskState.COMPLETE, TaskState.FAILED, TaskState.REJECTED, TaskState.ORPHANED}
)
# A task in one of these has a process (which may listen on its port).
ALIVE_STATES = frozenset({TaskState.STARTING, TaskState.RUNNING})


@dataclass(frozen=True)
class TaskInfo:
    """One Swarm task (one attempt at running one replica slot), as the engine reports it."""

    id: str
    service_id: str
    slot: int | None
    node_id: str
    node: str  # the node's hostname, or its id when unknown
    desired_state: str
    state: str
    message: str
    error: str
    exit_code: int | None
    image: str
    digest: str | None
    port: int | None  # $PORT in the task's spec (host networking; slot ports expanded)
    container_id: str
    created_at: datetime | None
    state_since: datetime | None  # Status.Timestamp: when the task entered `state`
    node_address: str = ""  # swarm_api.node_address: where host-mode tasks listen

    @property
    def name(self) -> str:
        """`<service>.<slot>.<id prefix>`-like: the task's short name for messages and nginx."""
        return f"slot {self.slot} ({self.short_id})" if self.slot is not None else self.short_id

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def failed(self) -> bool:
        """True when the task ended by itself (failed, rejected, orphaned or exited 0)."""
        return self.state in FAILURE_STATES

    @property
    def alive(self) -> bool:
        """True while the task's process runs, even after Swarm told it to stop (it lingers)."""
        return self.state in ALIVE_STATES

    @property
    def what_went_wrong(self) -> str:
        """The engine's error for a failed task, or what its state says."""
        if self.error:
            return self.error
        if self.state == TaskState.COMPLETE:
            return f"exited with status {self.exit_code or 0} although it should keep running"
        return f"{self.state}: {self.message}" if self.message else self.state


@dataclass(frozen=True)
class WriteResult:
    """What a create or update of a service returned."""

    service_id: str
    created: bool  # a new service (first deployment)
    adopted: bool  # an existing service with that name that deployer did not label yet
    warnings: tuple[str, ...] = ()
    retried: bool = False  # the write met "update out of sequence" once and was redone


class SwarmEngine(Protocol):
    """What the converge watcher reads from the engine (the Swarm backend, or a fake)."""

    def service(self, name: str) -> ServiceState | None: ...
    def tasks(self, service: str) -> list[TaskInfo]: ...
    def task_logs(self, task: TaskInfo, tail: int = 20) -> str: ...


class SwarmControl(SwarmEngine, Protocol):
    """What the Swarm strategy, adoption and status need (the Swarm backend, or a fake)."""

    def resolve(self, image: str, tag: str) -> str: ...
    def apply(self, spec: ServiceSpec) -> WriteResult: ...
    def rollback(self, name: str) -> None: ...
    def remove(self, name: str) -> None: ...
    def node_addresses(self) -> list[str]: ...
