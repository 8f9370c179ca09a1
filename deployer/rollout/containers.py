"""Pure builders for the containers deployer runs: names, labels and run specs."""

from __future__ import annotations

from collections.abc import Mapping

from deployer.backends.base import (
    LABEL_CONTAINER_PORT,
    LABEL_DEPLOYMENT,
    LABEL_DIGEST,
    LABEL_INSTANCE,
    LABEL_NETWORK,
    LABEL_PORT,
    LABEL_SERVICE,
    LOOPBACK,
    ContainerSpec,
    Healthcheck,
    Ulimit,
)
from deployer.config import ServiceConfig
from deployer.container_options import HealthcheckOverride


def container_name(service: str, deployment_id: str, replica: int = 1, replicas: int = 1) -> str:
    """`web-3f2a9c1d7e0b`: the service and the deployment that started it; with several
    replicas, `web-3f2a9c1d7e0b-2` for the second."""
    base = f"{service}-{deployment_id}"
    return base if replicas == 1 else f"{base}-{replica}"


def container_names(service: str, deployment_id: str, replicas: int) -> list[str]:
    """The names of every replica a deployment starts (known before the engine is asked)."""
    return [container_name(service, deployment_id, n, replicas) for n in range(1, replicas + 1)]


def make_container_spec(
    service_name: str,
    service: ServiceConfig,
    digest: str,
    deployment_id: str,
    host_port: int,
    instance: str,
    replica: int = 1,
    secret_environment: Mapping[str, str] | None = None,
) -> ContainerSpec:
    """The run spec for `service` at `digest` on `host_port` (pure): replica number
    `replica` (from 1) of `service.replicas`.

    secret_environment: the values of the service's env_file and secret_env, read by the
    caller when the container starts (deployer/rollout/environment.py).
    """
    listen_port = host_port if service.network == "host" else service.port
    published = {}
    if service.network == "bridge":
        published = {f"{service.port}/tcp": (LOOPBACK, host_port)}
    log = service.log
    return ContainerSpec(
        name=container_name(service_name, deployment_id, replica, service.replicas),
        image=f"{service.image}@{digest}",
        labels={
            **service.labels,
            LABEL_SERVICE: service_name,
            LABEL_DIGEST: digest,
            LABEL_DEPLOYMENT: deployment_id,
            LABEL_INSTANCE: instance,
            LABEL_PORT: str(host_port),
            LABEL_NETWORK: service.network,
            LABEL_CONTAINER_PORT: str(listen_port),
        },
        environment={**service.env, "PORT": str(listen_port)},
        network=service.network,
        host_port=host_port,
        container_port=listen_port,
        published=published,
        secret_environment=dict(secret_environment or {}),
        command=tuple(service.command) if service.command is not None else None,
        entrypoint=tuple(service.entrypoint) if service.entrypoint is not None else None,
        user=service.user,
        working_dir=service.working_dir,
        volumes=tuple(volume.bind() for volume in service.volumes),
        tmpfs=dict(service.tmpfs),
        extra_hosts=dict(service.extra_hosts),
        memory=service.memory,
        nano_cpus=service.cpus,
        pids_limit=service.pids_limit,
        ulimits=tuple(
            Ulimit(name, limit.soft, limit.hard) for name, limit in service.ulimits.items()
        ),
        log_driver=log.driver if log is not None else None,
        log_options=dict(log.options) if log is not None else {},
        stop_signal=service.stop_signal,
        restart=service.restart.name,
        restart_retries=service.restart.maximum_retry_count,
        healthcheck=_healthcheck(service.healthcheck),
    )


def _healthcheck(override: HealthcheckOverride | None) -> Healthcheck | None:
    if override is None:
        return None
    return Healthcheck(
        test=tuple(override.test_argv() or ()),
        interval=override.interval or 0,
        timeout=override.timeout or 0,
        start_period=override.start_period or 0,
        retries=override.retries or 0,
    )
