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


def container_name(service: str, deployment_id: str) -> str:
    """`web-3f2a9c1d7e0b`: the service and the deployment that started it."""
    return f"{service}-{deployment_id}"


def make_container_spec(
    service_name: str,
    service: ServiceConfig,
    digest: str,
    deployment_id: str,
    host_port: int,
    instance: str,
) -> ContainerSpec:
    """The run spec for `service` at `digest` on `host_port` (pure)."""
    listen_port = host_port if service.network == "host" else service.port
    published = {}
    if service.network == "bridge":
        published = {f"{service.port}/tcp": (LOOPBACK, host_port)}
    return ContainerSpec(
        name=container_name(service_name, deployment_id),
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
