"""Pure builders for the containers deployer runs: names, labels and run specs."""

from __future__ import annotations

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
)
from deployer.config import ServiceConfig


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
) -> ContainerSpec:
    """The run spec for `service` at `digest` on `host_port` (pure): replica number
    `replica` (from 1) of `service.replicas`."""
    listen_port = host_port if service.network == "host" else service.port
    published = {}
    if service.network == "bridge":
        published = {f"{service.port}/tcp": (LOOPBACK, host_port)}
    return ContainerSpec(
        name=container_name(service_name, deployment_id, replica, service.replicas),
        image=f"{service.image}@{digest}",
        labels={
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
    )
