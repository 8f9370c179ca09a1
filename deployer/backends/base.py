"""What a rollout needs from a container engine: the Backend protocol and its data types.

No `docker` import here: the strategies, the health gate and adoption depend on this module
only, and tests give them a fake at this seam.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

LABEL_SERVICE = "deployer.service"
LABEL_DIGEST = "deployer.digest"
LABEL_DEPLOYMENT = "deployer.deployment"
LABEL_INSTANCE = "deployer.instance"
LABEL_PORT = "deployer.port"
LABEL_NETWORK = "deployer.network"
LABEL_CONTAINER_PORT = "deployer.container-port"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Ulimit:
    """One resource limit (`nofile`, `nproc`, ...); -1 is unlimited."""

    name: str
    soft: int
    hard: int


@dataclass(frozen=True)
class Healthcheck:
    """The container's HEALTHCHECK; an empty test, or a 0, keeps the image's."""

    test: tuple[str, ...] = ()  # (CMD, argv...) | (CMD-SHELL, command) | (NONE,)
    interval: int = 0  # nanoseconds, as the engine takes them
    timeout: int = 0
    start_period: int = 0
    retries: int = 0


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one container (pure data).

    The defaults of the run options are the engine's (the image's command, user, ...), except
    the restart policy: unless-stopped.
    """

    name: str
    image: str  # repository@sha256:..., never a moving tag
    labels: dict[str, str]
    environment: dict[str, str]
    network: str  # host | bridge | a docker network name
    host_port: int
    container_port: int
    published: dict[str, tuple[str, int]] = field(default_factory=dict)
    # env_file and secret_env values; `environment` wins over them. Kept out of repr: never
    # logged, and each is redacted from the engine's error messages.
    secret_environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    user: str | None = None
    working_dir: str | None = None
    volumes: tuple[str, ...] = ()  # the engine's binds: `/host:/path:ro`, `name:/path:rw`
    tmpfs: dict[str, str] = field(default_factory=dict)  # path -> mount options
    extra_hosts: dict[str, str] = field(default_factory=dict)  # host name -> address
    memory: int | None = None  # bytes
    nano_cpus: int | None = None
    pids_limit: int | None = None
    ulimits: tuple[Ulimit, ...] = ()
    log_driver: str | None = None  # None: the engine's default driver
    log_options: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None
    restart: str = "unless-stopped"  # no | always | unless-stopped | on-failure
    restart_retries: int = 0  # on-failure's maximum retry count (0: no maximum)
    healthcheck: Healthcheck | None = None  # None: the image's

    @property
    def address(self) -> str | None:
        """host:port nginx uses, known before start except on named networks."""
        if self.network in ("host", "bridge"):
            return f"{LOOPBACK}:{self.host_port}"
        return None


@dataclass(frozen=True)
class ContainerInfo:
    """A container deployer manages, as read from the engine."""

    id: str
    name: str
    service: str
    image: str
    digest: str
    deployment: str
    address: str  # host:port that nginx and the health check use; "" when it has none
    status: str  # created | running | exited | restarting | dead | ...
    health: str | None  # the image HEALTHCHECK's status, None when the image has none
    started_at: datetime | None
    restart_count: int = 0
    exit_code: int | None = None

    @property
    def stopped(self) -> bool:
        """True when the container exited, died or is between two restarts.

        A container its restart policy brought back is running: the restart count matters to
        the health gate of a *new* container only (deployer/rollout/health.py).
        """
        return self.status in ("exited", "dead", "restarting")

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class ContainerProcess:
    """Where a container's connections can be read (the drain counts them): its main process,
    whether it shares the host's network namespace, and the address its app answers on
    inside its own network namespace."""

    id: str
    pid: int  # the main process, in the engine's pid namespace; 0 when it is not running
    host_network: bool
    listen_address: str  # the local IP connections arrive at there; "" for any address
    listen_port: int  # 0 when unknown


@dataclass(frozen=True)
class Unmanaged:
    """What the engine says of a container deployer did not start (to take it over)."""

    id: str
    name: str
    status: str
    network_mode: str  # host, bridge, or a network name (docker run --network)
    networks: dict[str, str]  # network name -> IPv4 address ("" when none)
    published: dict[str, list[tuple[str, int]]]  # "8080/tcp" -> [(host ip, host port)]
    image: str  # as it was run: repository[:tag] or an id
    repo_digests: tuple[str, ...]  # repository@sha256:... of its image
    image_id: str
    environment: dict[str, str]
    started_at: datetime | None


class ContainerEvents(Protocol):
    """The engine's event stream for deployer's containers: ids of containers that changed.

    Iteration ends when the stream breaks (engine restarted, connection lost); close() from
    another thread ends it too.
    """

    def __iter__(self) -> Iterator[str]: ...
    def close(self) -> None: ...


class Backend(Protocol):
    """What the deployment steps need from a container engine."""

    def resolve(self, image: str, tag: str) -> str: ...
    def pull(self, image: str, digest: str) -> None: ...
    def has_image(self, image: str, digest: str) -> bool: ...
    def remove_image(self, image: str, digest: str) -> None: ...
    def start(self, spec: ContainerSpec) -> ContainerInfo: ...
    def inspect(self, container_id: str) -> ContainerInfo: ...
    def process(self, container_id: str, address: str) -> ContainerProcess: ...
    def logs(self, container_id: str, tail: int = 20) -> str: ...
    def stop(self, container_id: str, timeout: float) -> None: ...
    def halt(self, container_id: str, timeout: float) -> None: ...
    def start_again(self, container_id: str) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def list_managed(self, instance: str, brief: bool = False) -> list[ContainerInfo]: ...
    def inspect_unmanaged(self, reference: str) -> Unmanaged: ...
    def events(self, instance: str) -> ContainerEvents: ...
