"""At start: adopt the containers already running for each service, and re-render nginx.

Restarting deployer neither drops nor duplicates a service: per service the container of the
newest succeeded deployment (else the newest running one) is adopted; leftovers of an
interrupted deployment are removed; containers of services no longer configured are left alone.
"""

from __future__ import annotations

import logging

from deployer.backends.base import Backend, ContainerInfo
from deployer.config import Config
from deployer.fleet import Fleet
from deployer.models import DeploymentState, utc_now
from deployer.nginx import NginxConfigurator
from deployer.store import Store

log = logging.getLogger(__name__)


def choose_serving(
    config: Config, containers: list[ContainerInfo], store: Store
) -> dict[str, ContainerInfo]:
    """Per configured service, the running container that should serve it (no changes made)."""
    chosen = {}
    for name in config.services:
        pick = choose_serving_one([c for c in containers if c.service == name], store)
        if pick is not None:
            chosen[name] = pick
    return chosen


def render_current(config: Config, backend: Backend, store: Store, nginx: NginxConfigurator) -> str:
    """The upstream config as adoption would write it now (reads only; changes nothing)."""
    fleet = Fleet(config.services)
    containers = backend.list_managed(config.instance)
    for name, container in choose_serving(config, containers, store).items():
        fleet.adopt(name, container, container.started_at or utc_now())
    return nginx.render(fleet.upstreams())


def adopt_running(
    config: Config, backend: Backend, fleet: Fleet, store: Store, nginx: NginxConfigurator
) -> list[str]:
    """Adopt, clean up, re-render nginx; return one line per service saying what was done."""
    found: dict[str, list[ContainerInfo]] = {}
    for container in backend.list_managed(config.instance):
        found.setdefault(container.service, []).append(container)
    report = []
    for name in config.services:
        report.append(_adopt_service(name, found.pop(name, []), backend, fleet, store))
    for name, containers in found.items():
        names = ", ".join(container.name for container in containers)
        log.warning(
            "containers %s belong to service %s, which is not configured: left alone", names, name
        )
    _close_interrupted(store)
    nginx.apply(fleet.upstreams())
    return report


def _adopt_service(
    name: str, containers: list[ContainerInfo], backend: Backend, fleet: Fleet, store: Store
) -> str:
    chosen = choose_serving_one(containers, store)
    for container in containers:
        if container is not chosen:
            log.warning(
                "removing %s: left over from an interrupted deployment of %s", container.name, name
            )
            backend.remove(container.id)
    if chosen is None:
        return f"{name}: no running container"
    deployment = store.get(chosen.deployment)
    since = (deployment.finished_at if deployment else None) or chosen.started_at or utc_now()
    fleet.adopt(name, chosen, since)
    return f"{name}: adopted {chosen.name} ({chosen.digest}) on {chosen.address}"


def choose_serving_one(containers: list[ContainerInfo], store: Store) -> ContainerInfo | None:
    """The running container of one service's containers that should serve it: the one of the
    newest succeeded deployment, else the newest started."""
    running = [c for c in containers if c.status == "running" and not c.stopped]

    def succeeded_at(container: ContainerInfo) -> str:
        deployment = store.get(container.deployment)
        if deployment and deployment.state is DeploymentState.SUCCEEDED and deployment.finished_at:
            return deployment.finished_at.isoformat()
        return ""

    def started(container: ContainerInfo) -> str:
        return container.started_at.isoformat() if container.started_at else ""

    return max(
        running, key=lambda container: (succeeded_at(container), started(container)), default=None
    )


def _close_interrupted(store: Store) -> None:
    for deployment in store.in_state(DeploymentState.RUNNING):
        deployment.state = DeploymentState.FAILED
        deployment.error = "interrupted: deployer stopped during this deployment"
        deployment.finished_at = utc_now()
        store.save(deployment)
