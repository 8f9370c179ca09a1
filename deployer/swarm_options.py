"""The keys of a service that runs as a Docker Swarm service (`engine: swarm`), validated.

`ServiceConfig` (deployer/config.py) inherits `SwarmOptions`, so every key here is a key of
`services.NAME`. A Swarm service keeps the container keys where they mean the same thing
(image, tag, env, env_file, command, entrypoint, user, working_dir, labels, healthcheck,
memory and cpus as limits, volumes, extra_hosts, log, stop_signal, stop_timeout, replicas,
ports as the host port pool) and adds `placement`, `resources`, `secrets`, `configs`, `update`
and `publish`. Container options Swarm cannot honour, or that would break the zero-failure
switch, are config errors naming their path (`swarm_option_checks`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from deployer.notation import Memory, NanoCpus, problem
from deployer.rollout.port_rotation import slot_blocks

if TYPE_CHECKING:
    from deployer.config import Config, ServiceConfig

Engine = Literal["docker", "swarm"]
PublishMode = Literal["host", "ingress", "dns"]
# Swarm's constraint syntax: `node.role==manager`, `node.labels.zone != b`, `engine.labels.x==y`
CONSTRAINT = re.compile(r"^\s*[A-Za-z][A-Za-z0-9_.-]*\s*(==|!=)\s*\S.*$")
OBJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a Swarm secret or config name
NODE_ADDRESS = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[[0-9A-Fa-f:.]+\]$")
MAX_SLOT_REPLICAS = 9  # host publishing: slot k of a release listens on <block>k (one digit)
DEFAULT_MONITOR = 5.0
DEFAULT_TIMEOUT = 300.0


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise problem("seconds", "expected seconds (a number >= 0)", value)
    if value > 86400:
        raise problem("seconds", "expected seconds <= 86400 (one day)", value)
    return float(value)


Seconds = Annotated[float, BeforeValidator(_seconds)]


class Limits(_Frozen):
    """CPUs and memory, for `resources.limits` or `resources.reservations`."""

    cpus: NanoCpus | None = None  # nano-CPUs
    memory: Memory | None = None  # bytes


class ResourcesConfig(_Frozen):
    """Per task: what it may use at most (limits) and what the scheduler sets aside for it."""

    limits: Limits = Limits()
    reservations: Limits = Limits()


def _file_reference(value: Any) -> Any:
    if isinstance(value, str):
        return {"source": value}
    return value


class FileConfig(_Frozen):
    """A Swarm secret or config by name (`source`), mounted as a file at `target`."""

    source: str = Field(pattern=OBJECT_NAME.pattern)
    target: str = ""  # secrets: /run/secrets/<source>; configs: /<source>
    mode: int = Field(default=0o444, ge=0, le=0o777)


FileEntry = Annotated[FileConfig, BeforeValidator(_file_reference)]


class UpdateConfig(_Frozen):
    """How Swarm replaces tasks (always start-first, rolled back on failure) and how long
    deployer waits for it to converge."""

    parallelism: int = Field(default=1, ge=0)  # tasks replaced at once; 0: all at once
    delay: Seconds = 0.0  # between two batches
    monitor: Seconds = DEFAULT_MONITOR  # a new task must stay up this long
    max_failure_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    timeout: Seconds = DEFAULT_TIMEOUT  # converge deadline, from the update's write


def _publish(value: Any) -> Any:
    if isinstance(value, str):
        return {"mode": value}
    return value


class PublishConfig(_Frozen):
    """How nginx reaches the service: `host` (tasks on host networking, a rotating port of
    `ports`), `ingress` (the routing mesh's `port` on each of `nodes:`) or `dns` (nginx on the
    overlay network resolves `tasks.<service>`)."""

    mode: PublishMode = "host"
    port: int | None = Field(default=None, ge=1, le=65535)  # ingress: the published port

    @model_validator(mode="after")
    def _port_for_ingress(self) -> PublishConfig:
        if self.mode == "ingress" and self.port is None:
            raise PydanticCustomError(
                "publish", "ingress needs the published port (mode: ingress, port: 30080)", {}
            )
        if self.mode != "ingress" and self.port is not None:
            raise PydanticCustomError(
                "publish",
                "port is the ingress mode's published port; {mode} takes none",
                {"mode": self.mode},
            )
        return self


Publish = Annotated[PublishConfig, BeforeValidator(_publish)]


def _constraints(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return value
    for item in value:
        if not isinstance(item, str) or not CONSTRAINT.match(item):
            raise problem(
                "placement",
                "expected constraints like node.role==worker or node.labels.zone!=b",
                item,
            )
    return value


class SwarmOptions(_Frozen):
    """The Swarm keys of a service; ServiceConfig inherits these."""

    engine: Engine | None = None  # None: the config's top-level `engine`
    placement: Annotated[list[str], BeforeValidator(_constraints)] = Field(default_factory=list)
    resources: ResourcesConfig = ResourcesConfig()
    secrets: list[FileEntry] = Field(default_factory=list)
    configs: list[FileEntry] = Field(default_factory=list)
    update: UpdateConfig = UpdateConfig()
    publish: Publish = PublishConfig()


# Container keys Swarm does not take from a service entry, and why (the message's tail).
NOT_FOR_SWARM = {
    "strategy": "stop-first is for containers; Swarm services always update start-first (the "
    "old task serves until the new one is healthy); remove strategy",
    "drain": "Swarm stops old tasks itself once their replacements run (stop_timeout is their "
    "grace period); remove drain",
    "secret_env": "a Swarm service's environment is stored in its spec, readable with docker "
    "service inspect; use secrets: (Swarm secrets, mounted as files)",
    "tmpfs": "not supported for Swarm services by deployer; remove it",
    "ulimits": "not supported for Swarm services by deployer; remove it",
    "pids_limit": "not supported for Swarm services by deployer; remove it",
    "restart": "Swarm restarts failed tasks itself (condition any); remove restart",
    "keep_images": "each node pulls and keeps its own images; remove keep_images",
}
SWARM_ONLY = ("placement", "resources", "secrets", "configs", "update", "publish")


def swarm_option_checks(config: Config) -> list[str]:
    """Problems of Swarm services (and Swarm keys on container services), with their paths."""
    problems = []
    for name, service in config.services.items():
        if service.engine == "swarm":
            problems += _swarm_service_checks(config, name, service)
        else:
            problems += [
                f"services.{name}.{key}: a Swarm key; this service runs on the docker engine "
                "(set engine: swarm, here or at the top level)"
                for key in SWARM_ONLY
                if key in service.model_fields_set
            ]
    return problems


def _swarm_service_checks(config: Config, name: str, service: ServiceConfig) -> list[str]:
    path = f"services.{name}"
    problems = [
        f"{path}.{key}: {why}"
        for key, why in NOT_FOR_SWARM.items()
        if key in service.model_fields_set
        and (key != "strategy" or service.strategy != "blue-green")
    ]
    mode = service.publish.mode
    explicit_network = "network" in service.model_fields_set
    if service.network == "bridge":
        problems.append(
            f"{path}.network: bridge is a single engine's network; a Swarm service uses host "
            "networking (publish: host) or a swarm-scoped (overlay) network by name"
        )
    elif mode == "host" and service.network != "host":
        problems.append(
            f"{path}.network: publish: host runs the tasks on host networking; remove network "
            f"or choose publish: ingress or dns for network {service.network!r}"
        )
    elif mode == "dns" and not explicit_network:
        problems.append(
            f"{path}.network: publish: dns needs the overlay network nginx shares with the "
            "tasks (network: NAME)"
        )
    elif mode == "ingress" and explicit_network and service.network == "host":
        problems.append(
            f"{path}.network: publish: ingress routes through the swarm's ingress network; "
            "host networking cannot join it (remove network, or name an overlay network)"
        )
    problems += _ports_checks(path, service)
    if mode == "ingress" and not config.nodes:
        problems.append(
            f"{path}.publish: ingress needs nodes: (top level), the addresses nginx reaches "
            "the published port at"
        )
    for key in ("memory", "cpus"):
        limit = getattr(service.resources.limits, key)
        if key in service.model_fields_set and limit is not None:
            problems.append(f"{path}.{key}: also set as resources.limits.{key}; set the limit once")
    update = service.update
    if update.monitor <= 0:
        problems.append(
            f"{path}.update.monitor: must be > 0 (how long each new task must stay up; 0 would "
            "call an update done before Swarm replaced a task)"
        )
    elif update.timeout <= update.monitor:
        problems.append(
            f"{path}.update.timeout: {update.timeout:g} s leaves no time beyond the monitor "
            f"window ({update.monitor:g} s); every update would fail at the deadline"
        )
    healthcheck = service.healthcheck
    if mode == "host" and healthcheck is not None and healthcheck.disable:
        problems.append(
            f"{path}.healthcheck: publish: host needs a HEALTHCHECK (the image's or this one): "
            "without it Swarm stops the old task before the new one listens"
        )
    if healthcheck is not None and not healthcheck.disable and healthcheck.test is None:
        problems.append(
            f"{path}.healthcheck: a Swarm service's healthcheck replaces the image's whole: "
            "give its test (or disable: true)"
        )
    return problems


def _ports_checks(path: str, service: ServiceConfig) -> list[str]:
    ports = service.ports
    if service.publish.mode != "host":
        if ports is not None:
            return [
                f"{path}.ports: publish: {service.publish.mode} uses no host port pool; "
                "remove ports"
            ]
        return []
    if ports is None:
        return [f"{path}.ports: required (host publishing rotates between ports of this pool)"]
    if service.replicas == 1:
        if len(list(ports)) < 3:
            return [
                f"{path}.ports: {ports} has {len(list(ports))} port(s); host publishing needs 3 "
                "(the old release's, the new one's, and one while the old tasks still stop)"
            ]
        return []
    if service.replicas > MAX_SLOT_REPLICAS:
        return [
            f"{path}.replicas: publish: host runs at most {MAX_SLOT_REPLICAS} replicas (slot k "
            "of a release listens on a port ending in k); use publish: ingress or dns for more"
        ]
    blocks = len(slot_blocks(list(ports), service.replicas))
    if blocks < 3:
        return [
            f"{path}.ports: {ports} holds {blocks} block(s) of ports ...1-...{service.replicas}; "
            f"{service.replicas} replicas on host networking need 3 (the old and the new "
            "release, and one while the old tasks still stop), e.g. 18000-18029"
        ]
    return []
