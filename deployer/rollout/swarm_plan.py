"""Pure builders for Swarm services: the ServiceSpec of a release, and where nginx reaches it.

`make_service_spec` turns a service's config into the whole spec deployer writes (Swarm
names: the container's `entrypoint` is Swarm's Command, its `command` Swarm's Args).
The endpoint builders say which addresses nginx lists for each `publish` mode:

  host     each task's port on its node's address (a manager's advertised address, a
           worker's Status.Addr; swarm_api.node_address): `10.0.0.5:18011`; while an
           update runs, also the new release's port(s) on every node that takes tasks, since
           Swarm may place the new tasks anywhere; those servers get `max_fails=0`, so a port
           that does not answer yet (or any more) is retried on the next server at once and
           never marked failed
  ingress  the published port on each of `nodes:` (the routing mesh forwards to a task)
  dns      `tasks.<service>:<port> resolve` (nginx on the overlay network re-resolves it)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from deployer.backends.base import LOOPBACK
from deployer.backends.swarm_types import (
    FileReference,
    HealthCheck,
    Mount,
    Resources,
    ServiceSpec,
    ServiceState,
    TaskInfo,
    UpdatePolicy,
)
from deployer.config import Config, ServiceConfig
from deployer.container_options import HealthcheckOverride
from deployer.models import Endpoint

NANOSECONDS = 1e9
SWITCHING = "max_fails=0"  # while two releases are listed: a refused port is never marked down
SECRETS_DIRECTORY = "/run/secrets/"


def make_service_spec(
    config: Config,
    name: str,
    service: ServiceConfig,
    digest: str,
    deployment_id: str,
    port: int | None,
    file_environment: Mapping[str, str] | None = None,
) -> ServiceSpec:
    """The whole spec of `name` at `digest` (pure). `port`: host publishing's port (a block
    base with several replicas); file_environment: the values of the service's env_file."""
    host = service.publish.mode == "host"
    log = service.log
    return ServiceSpec(
        name=name,
        image=service.image,
        digest=digest,
        instance=config.instance,
        deployment=deployment_id,
        replicas=service.replicas,
        env={**(file_environment or {}), **service.env},
        command=tuple(service.entrypoint) if service.entrypoint is not None else None,
        args=tuple(service.command) if service.command is not None else None,
        constraints=tuple(service.placement),
        resources=make_resources(service),
        secrets=tuple(_file(entry.source, entry.target, entry.mode) for entry in service.secrets),
        configs=tuple(_file(entry.source, entry.target, entry.mode) for entry in service.configs),
        update=UpdatePolicy(
            parallelism=service.update.parallelism,
            delay=service.update.delay,
            monitor=service.update.monitor,
            max_failure_ratio=service.update.max_failure_ratio,
        ),
        network=_network(service),
        port=port if host else None,
        healthcheck=make_healthcheck(service.healthcheck),
        labels=dict(service.labels),
        stop_grace_period=service.stop_timeout,
        slot_ports=host and service.replicas > 1,
        publish=service.publish.mode,
        published_port=service.publish.port,
        target_port=None if host else service.port,
        user=service.user,
        working_dir=service.working_dir,
        stop_signal=service.stop_signal,
        mounts=tuple(
            Mount(volume.source, volume.target, volume.read_only) for volume in service.volumes
        ),
        hosts=tuple(f"{address} {host_name}" for host_name, address in service.extra_hosts.items()),
        log_driver=log.driver if log is not None else None,
        log_options=dict(log.options) if log is not None else {},
    )


def make_resources(service: ServiceConfig) -> Resources:
    """Limits (resources.limits, or the container keys memory and cpus) and reservations."""
    limits, reservations = service.resources.limits, service.resources.reservations
    cpus = limits.cpus if limits.cpus is not None else service.cpus
    memory = limits.memory if limits.memory is not None else service.memory
    return Resources(
        cpus_limit=cpus / NANOSECONDS if cpus is not None else None,
        memory_limit=memory,
        cpus_reservation=(
            reservations.cpus / NANOSECONDS if reservations.cpus is not None else None
        ),
        memory_reservation=reservations.memory,
    )


def make_healthcheck(override: HealthcheckOverride | None) -> HealthCheck | None:
    """The service's healthcheck (unset durations: 0, the engine's defaults); None: the
    image's own HEALTHCHECK."""
    if override is None:
        return None
    test = override.test_argv()
    if test is None:  # refused at load: a Swarm healthcheck states its test
        return None
    return HealthCheck(
        test=tuple(test),
        interval=(override.interval or 0) / NANOSECONDS,
        timeout=(override.timeout or 0) / NANOSECONDS,
        retries=override.retries or 0,
        start_period=(override.start_period or 0) / NANOSECONDS,
    )


def _file(source: str, target: str, mode: int) -> FileReference:
    return FileReference(source, target, mode)


def _network(service: ServiceConfig) -> str:
    if service.publish.mode == "host":
        return "host"
    return service.network if "network" in service.model_fields_set else ""


def task_endpoint(task: TaskInfo, parameters: str = "") -> Endpoint | None:
    """Where a host-mode task listens: its node's address and its port (None: no port)."""
    if task.port is None or task.digest is None:
        return None
    address = f"{task.node_address or LOOPBACK}:{task.port}"
    return Endpoint(address, task.name, task.digest, "task", parameters)


def serving_endpoints(
    service: ServiceConfig,
    name: str,
    nodes: Sequence[str],
    state: ServiceState,
    tasks: Iterable[TaskInfo],
    digest: str | None = None,
) -> list[Endpoint]:
    """What nginx lists when no update runs: the tasks Swarm wants running (those on
    `digest` only, when given), or for ingress and dns the service's fixed addresses."""
    fixed = fixed_endpoints(service, name, nodes, state.digest or "")
    if fixed is not None:
        return fixed
    wanted = [
        task
        for task in tasks
        if task.desired_state in ("running", "ready") and (digest is None or task.digest == digest)
    ]
    return _unique(task_endpoint(task) for task in wanted)


def switching_endpoints(
    current: Iterable[Endpoint],
    tasks: Iterable[TaskInfo],
    nodes: Sequence[str],
    port: int,
    replicas: int,
    digest: str,
) -> list[Endpoint]:
    """Host publishing while an update runs: what serves now, every task still alive, and the
    new release's port(s) on every node; all with max_fails=0. The old ones come first (the
    fleet's digest of a service is its first member's)."""
    old = [*current, *(task_endpoint(task) for task in tasks if task.alive)]
    ports = [port] if replicas == 1 else [port + slot for slot in range(1, replicas + 1)]
    new = [
        Endpoint(f"{node}:{each}", f"new release on {node}", digest, "task")
        for node in nodes or [LOOPBACK]
        for each in ports
    ]
    return [Endpoint(e.address, e.name, e.digest, e.kind, SWITCHING) for e in _unique([*old, *new])]


def fixed_endpoints(
    service: ServiceConfig, name: str, nodes: Sequence[str], digest: str
) -> list[Endpoint] | None:
    """Ingress and dns: the addresses that never change with a release; None for host."""
    mode = service.publish.mode
    if mode == "ingress":
        return [Endpoint(f"{node}:{service.publish.port}", node, digest, "node") for node in nodes]
    if mode == "dns":
        return [Endpoint(f"tasks.{name}:{service.port}", f"tasks.{name}", digest, "dns", "resolve")]
    return None


def _unique(endpoints: Iterable[Endpoint | None]) -> list[Endpoint]:
    """Endpoints without None and without a second entry for one address (the first wins)."""
    seen: dict[str, Endpoint] = {}
    for endpoint in endpoints:
        if endpoint is not None and endpoint.address not in seen:
            seen[endpoint.address] = endpoint
    return list(seen.values())


def secret_path(reference: FileReference) -> str:
    """Where a secret is mounted in the container (for messages)."""
    name = reference.file_name
    return name if name.startswith("/") else SECRETS_DIRECTORY + name
