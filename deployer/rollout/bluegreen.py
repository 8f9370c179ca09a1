"""The blue/green container strategy: start the new container beside the old one, then switch.

Steps: resolve -> pull -> start -> healthy -> nginx -> drain -> retire. Until `nginx` succeeds
the old container serves and nothing about it changed; on any failure before that the new
container is removed and the nginx file is what it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from deployer.backends.base import Backend, ContainerInfo
from deployer.config import Config, ServiceConfig
from deployer.deploy import Steps
from deployer.errors import DockerError, NoFreePort
from deployer.fleet import Fleet, Serving
from deployer.models import Deployment, DeploymentState, StepState
from deployer.nginx import NginxConfigurator
from deployer.rollout.containers import make_container_spec
from deployer.rollout.health import Probe, http_probe, wait_until_healthy
from deployer.rollout.ports import pick_port, port_is_free


class BlueGreen:
    """What every blue/green rollout shares: the engine, nginx, the fleet and the probes."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        nginx: NginxConfigurator,
        fleet: Fleet,
        stopping: threading.Event,
        probe: Probe = http_probe,
        is_port_free: Callable[[int], bool] = port_is_free,
    ) -> None:
        self.config = config
        self.backend = backend
        self.nginx = nginx
        self.fleet = fleet
        self.stopping = stopping
        self.probe = probe
        self.is_port_free = is_port_free

    def rollout(
        self, deployment: Deployment, service: ServiceConfig, steps: Steps
    ) -> BlueGreenRollout:
        """One deployment of this strategy (a deploy.RolloutFactory)."""
        return BlueGreenRollout(self, deployment, service, steps)


class BlueGreenRollout:
    """One deployment: what it changed so far, so a failure can undo exactly that."""

    def __init__(
        self, strategy: BlueGreen, deployment: Deployment, service: ServiceConfig, steps: Steps
    ) -> None:
        self.strategy = strategy
        self.deployment = deployment
        self.service = service
        self.step = steps
        self.container: ContainerInfo | None = None
        self.switched = False

    def run(self) -> DeploymentState:
        """The steps; returns the final state or raises a DeployerError."""
        deployment, service, strategy = self.deployment, self.service, self.strategy
        backend, name = strategy.backend, deployment.service
        old = strategy.fleet.serving(name)
        with self.step("resolve") as step:
            if deployment.requested_digest:
                digest = deployment.requested_digest
                step.detail = f"asked for {service.image}@{digest} (no registry lookup)"
            else:
                digest = backend.resolve(service.image, deployment.tag)
                step.detail = f"{service.image}:{deployment.tag} is {digest}"
            deployment.digest = digest
            deployment.previous_digest = old.container.digest if old else None
            if old is not None and old.container.digest == digest:
                step.detail += f"; {old.container.name} already runs it"
                deployment.container = old.container.name
                return DeploymentState.SKIPPED
        with self.step("pull") as step:
            if backend.has_image(service.image, digest):
                step.detail = f"{service.image}@{digest} is on the engine already"
            else:
                backend.pull(service.image, digest)
                step.detail = f"pulled {service.image}@{digest}"
        with self.step("start") as step:
            container = self._start(digest)
            self.container = container
            deployment.container = container.name
            step.detail = f"{container.name} ({container.short_id}) on {container.address}"
        with self.step("healthy") as step:
            step.detail = wait_until_healthy(
                backend, container, service.health, strategy.stopping, strategy.probe
            )
        with self.step("nginx") as step:
            strategy.fleet.switch(name, container, strategy.nginx.apply)
            self.switched = True
            step.detail = f"{strategy.nginx.output} now sends {name} to {container.address}"
        if old is not None:
            self._retire(old)
        return DeploymentState.SUCCEEDED

    def undo(self, error: str) -> str:
        """Remove the new container unless it serves; return the error saying what serves."""
        backend = self.strategy.backend
        if self.container is not None and not self.switched:
            try:
                backend.remove(self.container.id)
            except DockerError as err:
                error += f" (and the new container could not be removed: {err})"
        serving = self.strategy.fleet.serving(self.deployment.service)
        if serving is not None and not self.switched:
            error += f"; {serving.container.name} keeps serving"
        return error

    def _start(self, digest: str) -> ContainerInfo:
        strategy, deployment, service = self.strategy, self.deployment, self.service
        taken = {
            int(port)
            for container in strategy.backend.list_managed(strategy.config.instance)
            for port in [container.address.rsplit(":", 1)[-1]]
            if port.isdigit()
        }
        port = pick_port(service.ports, taken, strategy.is_port_free)
        if port is None:
            raise NoFreePort(
                deployment.service,
                f"no free port for {deployment.service} in {service.ports}: "
                f"all are used by containers or other programs; widen `ports`",
            )
        spec = make_container_spec(
            deployment.service, service, digest, deployment.id, port, strategy.config.instance
        )
        return strategy.backend.start(spec)

    def _retire(self, old: Serving) -> None:
        service, stopping = self.service, self.strategy.stopping
        with self.step("drain", cancellable=False) as step:
            cut_short = stopping.wait(service.drain)
            step.detail = f"{old.container.name} kept serving in-flight requests for " + (
                "less: cut short because deployer is stopping"
                if cut_short
                else f"{service.drain:g} s"
            )
        with self.step("retire", cancellable=False) as step:
            try:
                self.strategy.backend.stop(old.container.id, service.stop_timeout)
                step.detail = f"stopped and removed {old.container.name}"
            except DockerError as err:
                step.state = StepState.FAILED
                step.detail = (
                    f"{err}; the new container serves, remove {old.container.name} by hand"
                )
