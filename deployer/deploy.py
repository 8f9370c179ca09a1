"""One deployment as an explicit sequence of recorded steps.

    queued -> running -> succeeded | failed | skipped      (superseded: replaced while queued)

Steps: resolve -> pull -> start -> healthy -> nginx -> drain -> retire. Until `nginx` succeeds
the old container serves and nothing about it changed; on any failure before that the new
container is removed and the nginx file is what it was. Every step is recorded with UTC times.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from deployer.config import Config, ServiceConfig
from deployer.containers import make_container_spec
from deployer.docker_backend import Backend
from deployer.errors import DeployerError, DeploymentCancelled, DockerError, NoFreePort
from deployer.fleet import Fleet, Serving
from deployer.health import Probe, http_probe, wait_until_healthy
from deployer.logs import about
from deployer.models import ContainerInfo, Deployment, DeploymentState, Step, StepState, utc_now
from deployer.nginx import NginxConfigurator
from deployer.ports import pick_port, port_is_free
from deployer.store import Store

log = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """What this deployment changed so far, so a failure can undo exactly that."""

    container: ContainerInfo | None = None
    switched: bool = False


class Deployer:
    """Runs deployments one step at a time against the backend, nginx and the fleet."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        nginx: NginxConfigurator,
        store: Store,
        fleet: Fleet,
        stopping: threading.Event,
        probe: Probe = http_probe,
        is_port_free: Callable[[int], bool] = port_is_free,
        on_finished: Callable[[Deployment], None] = lambda deployment: None,
    ) -> None:
        self.config = config
        self.on_finished = on_finished
        self.backend = backend
        self.nginx = nginx
        self.store = store
        self.fleet = fleet
        self.stopping = stopping
        self.probe = probe
        self.is_port_free = is_port_free

    def run(self, deployment: Deployment) -> None:
        """Carry out deployment; every outcome is recorded in the store, nothing is raised."""
        deployment.state = DeploymentState.RUNNING
        deployment.started_at = utc_now()
        self.store.save(deployment)
        attempt = _Attempt()
        try:
            deployment.state = self._deploy(deployment, attempt)
        except DeployerError as err:
            self._fail(deployment, attempt, str(err))
        except Exception as err:
            log.exception(
                "deployment %s of %s: unexpected error", deployment.id, deployment.service
            )
            self._fail(deployment, attempt, f"internal error: {type(err).__name__}: {err}")
        deployment.finished_at = utc_now()
        self.store.save(deployment)
        failed = deployment.state is DeploymentState.FAILED
        log.log(
            logging.WARNING if failed else logging.INFO,
            "deployment %s of %s %s%s",
            deployment.id,
            deployment.service,
            deployment.state,
            f": {deployment.error}" if deployment.error else "",
            extra=about(deployment),
        )
        self.on_finished(deployment)

    def _deploy(self, deployment: Deployment, attempt: _Attempt) -> DeploymentState:
        name = deployment.service
        service = self.config.services.get(name)
        if service is None:
            raise DeployerError(f"service {name} is no longer in the config")
        old = self.fleet.serving(name)
        with self._step(deployment, "resolve") as step:
            if deployment.requested_digest:
                digest = deployment.requested_digest
                step.detail = f"asked for {service.image}@{digest} (no registry lookup)"
            else:
                digest = self.backend.resolve(service.image, deployment.tag)
                step.detail = f"{service.image}:{deployment.tag} is {digest}"
            deployment.digest = digest
            deployment.previous_digest = old.container.digest if old else None
            if old is not None and old.container.digest == digest:
                step.detail += f"; {old.container.name} already runs it"
                deployment.container = old.container.name
                return DeploymentState.SKIPPED
        with self._step(deployment, "pull") as step:
            if self.backend.has_image(service.image, digest):
                step.detail = f"{service.image}@{digest} is on the engine already"
            else:
                self.backend.pull(service.image, digest)
                step.detail = f"pulled {service.image}@{digest}"
        with self._step(deployment, "start") as step:
            container = self._start(deployment, service, digest)
            attempt.container = container
            deployment.container = container.name
            step.detail = f"{container.name} ({container.short_id}) on {container.address}"
        with self._step(deployment, "healthy") as step:
            step.detail = wait_until_healthy(
                self.backend, container, service.health, self.stopping, self.probe
            )
        with self._step(deployment, "nginx") as step:
            self.fleet.switch(name, container, self.nginx.apply)
            attempt.switched = True
            step.detail = f"{self.nginx.output} now sends {name} to {container.address}"
        if old is not None:
            self._retire(deployment, service, old)
        return DeploymentState.SUCCEEDED

    def _start(self, deployment: Deployment, service: ServiceConfig, digest: str) -> ContainerInfo:
        taken = {
            int(port)
            for container in self.backend.list_managed(self.config.instance)
            for port in [container.address.rsplit(":", 1)[-1]]
            if port.isdigit()
        }
        port = pick_port(service.ports, taken, self.is_port_free)
        if port is None:
            raise NoFreePort(
                deployment.service,
                f"no free port for {deployment.service} in {service.ports}: "
                f"all are used by containers or other programs; widen `ports`",
            )
        spec = make_container_spec(
            deployment.service, service, digest, deployment.id, port, self.config.instance
        )
        return self.backend.start(spec)

    def _retire(self, deployment: Deployment, service: ServiceConfig, old: Serving) -> None:
        with self._step(deployment, "drain", cancellable=False) as step:
            cut_short = self.stopping.wait(service.drain)
            step.detail = f"{old.container.name} kept serving in-flight requests for " + (
                "less: cut short because deployer is stopping"
                if cut_short
                else f"{service.drain:g} s"
            )
        with self._step(deployment, "retire", cancellable=False) as step:
            try:
                self.backend.stop(old.container.id, service.stop_timeout)
                step.detail = f"stopped and removed {old.container.name}"
            except DockerError as err:
                step.state = StepState.FAILED
                step.detail = (
                    f"{err}; the new container serves, remove {old.container.name} by hand"
                )

    def _fail(self, deployment: Deployment, attempt: _Attempt, message: str) -> None:
        deployment.state = DeploymentState.FAILED
        deployment.error = message
        if attempt.container is not None and not attempt.switched:
            try:
                self.backend.remove(attempt.container.id)
            except DockerError as err:
                deployment.error += f" (and the new container could not be removed: {err})"
        serving = self.fleet.serving(deployment.service)
        if serving is not None and not attempt.switched:
            deployment.error += f"; {serving.container.name} keeps serving"

    @contextmanager
    def _step(self, deployment: Deployment, name: str, cancellable: bool = True) -> Iterator[Step]:
        # Before the nginx switch a stop rolls back; after it, the switch is finished instead.
        if cancellable and self.stopping.is_set():
            raise DeploymentCancelled(f"deployer is stopping; {deployment.service} not changed")
        step = Step(name=name, state=StepState.RUNNING, started_at=utc_now())
        deployment.steps.append(step)
        self.store.save(deployment)
        try:
            yield step
        except BaseException as err:
            step.state = StepState.FAILED
            step.detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise
        finally:
            step.finished_at = utc_now()
            if step.state is StepState.RUNNING:
                step.state = StepState.SUCCEEDED
            self.store.save(deployment)
            log.info(
                "deployment %s of %s: %s %s in %.2f s: %s",
                deployment.id,
                deployment.service,
                step.name,
                step.state,
                (step.finished_at - step.started_at).total_seconds(),
                step.detail.splitlines()[0] if step.detail else "",
                extra=about(deployment),
            )
