"""Taking over a container an operator runs by hand (`deployer adopt SERVICE CONTAINER`):
where nginx reaches it and which release it is, worked out from the engine's facts (pure), or
a refusal saying why it cannot serve the service as configured.
"""

from __future__ import annotations

import requests

from deployer.backends.base import LOOPBACK, ContainerInfo, Unmanaged
from deployer.config import ServiceConfig
from deployer.deploy import Steps
from deployer.errors import DeployerError
from deployer.fleet import Fleet
from deployer.models import Deployment, DeploymentState
from deployer.nginx import NginxConfigurator
from deployer.rollout.health import Probe


class TakeoverRefused(DeployerError):
    """The container cannot be taken over as the service is configured; the message says why."""

    http_status = 409


def takeover_address(name: str, service: ServiceConfig, found: Unmanaged, port: int | None) -> str:
    """host:port where nginx reaches `found` for service `name`, as its network is configured."""
    where = f"services.{name}.network is {service.network}"
    if found.status != "running":
        raise TakeoverRefused(f"container {found.name} is {found.status}, not running")
    if service.network == "host":
        if found.network_mode != "host":
            raise TakeoverRefused(
                f"container {found.name} runs on network {found.network_mode} but {where}"
            )
        listen = port if port is not None else _port_from_environment(found)
        if listen is None:
            raise TakeoverRefused(
                f"on host networking deployer cannot tell which port {found.name} listens "
                'on: give it (--port, or "port" in the request), or set PORT in its environment'
            )
        return f"{LOOPBACK}:{listen}"
    if service.network == "bridge":
        bindings = found.published.get(f"{service.port}/tcp") or []
        reachable = [host_port for ip, host_port in bindings if ip in ("", "0.0.0.0", LOOPBACK)]
        if found.network_mode not in ("bridge", "default") or not reachable:
            raise TakeoverRefused(
                f"container {found.name} does not publish port {service.port} (services.{name}"
                f".port) on 127.0.0.1 (network {found.network_mode}); {where}"
            )
        return f"{LOOPBACK}:{reachable[0]}"
    address = found.networks.get(service.network)
    if not address:
        raise TakeoverRefused(
            f"container {found.name} has no IPv4 address on network {service.network} ({where})"
        )
    return f"{address}:{service.port}"


def takeover_digest(name: str, service: ServiceConfig, found: Unmanaged) -> str:
    """The digest of the image `found` runs, which must be services.NAME.image's."""
    for reference in found.repo_digests:
        repository, _, digest = reference.partition("@")
        if repository == service.image:
            return digest
    repositories = ", ".join(ref.partition("@")[0] for ref in found.repo_digests) or found.image
    raise TakeoverRefused(
        f"container {found.name} runs {repositories}, not services.{name}.image "
        f"({service.image}); deployer deploys that image, so it will not take this one over"
    )


def _port_from_environment(found: Unmanaged) -> int | None:
    value = found.environment.get("PORT", "")
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 65536 else None


def check_answers(probe: Probe, name: str, found: Unmanaged, address: str, path: str) -> str:
    """GET the health path at address (the one call here that does I/O, through `probe`);
    the step's detail, or a refusal saying what answered."""
    url = f"http://{address}{path}"
    try:
        status = probe(url, 2.0)
    except requests.RequestException as err:
        raise TakeoverRefused(
            f"container {found.name} is not reachable at {address}: GET {path} failed "
            f"({type(err).__name__}); check its port and services.{name}.network"
        ) from None
    if not 200 <= status < 300:
        raise TakeoverRefused(
            f"container {found.name} at {address} answered GET {path} with HTTP {status}, "
            "not 2xx: it is not ready to serve"
        )
    return f"{found.name} ({found.id[:12]}) answers GET {path} at {address} with HTTP {status}"


class TakeOver:
    """The checked container, ready to be recorded as serving (a deploy.RolloutFactory)."""

    def __init__(
        self, fleet: Fleet, nginx: NginxConfigurator, container: ContainerInfo, checked: str
    ) -> None:
        self.fleet, self.nginx, self.container, self.checked = fleet, nginx, container, checked

    def rollout(self, deployment: Deployment, service: ServiceConfig, steps: Steps) -> TakeOver:
        self.step = steps
        return self

    def run(self) -> DeploymentState:
        """Steps `adopt` (what was checked) and `nginx` (the switch to it)."""
        container = self.container
        with self.step("adopt") as step:
            step.detail = self.checked
        with self.step("nginx") as step:
            self.fleet.switch(container.service, [container], self.nginx.apply)
            target = f"{container.service} to {container.address}"
            step.detail = f"{self.nginx.output} now sends {target}"
        return DeploymentState.SUCCEEDED

    def undo(self, error: str) -> str:
        return f"{error}; {self.container.name} runs as before and deployer did not take it over"
