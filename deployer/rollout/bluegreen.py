"""The blue/green container strategy: start the new container beside the old one, then switch.

Steps: resolve -> pull -> start -> healthy -> nginx -> drain -> retire. Until `nginx` succeeds
the old container serves and nothing about it changed; on any failure before that the new
container (found by the name recorded before it was created) is removed once nginx cannot be
sending traffic to it, and the nginx file is what it was. From the `nginx` step on, the new
container is the one that serves: a stop or a crash after it never rolls the release back;
the drain and retire are finished then, or by the next start (deployer/rollout/adoption.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping

from deployer.backends.base import Backend, ContainerInfo
from deployer.config import Config, ServiceConfig
from deployer.deploy import Steps
from deployer.errors import (
    ContainerMissing,
    DockerError,
    FinishLater,
    HealthCheckFailed,
    NoFreePort,
)
from deployer.fleet import Fleet
from deployer.logs import container_secrets, redact
from deployer.models import Deployment, DeploymentState, StepState, utc_now
from deployer.nginx import NginxConfigurator
from deployer.nginx_workers import Workers
from deployer.rollout.containers import container_name, make_container_spec
from deployer.rollout.environment import read_secret_environment
from deployer.rollout.health import Probe, http_probe, wait_until_healthy
from deployer.rollout.ports import pick_port, port_is_free
from deployer.watch import describe

REMOVE_RETRY = 0.5  # seconds before the second attempt to remove a failed release's container
DRAIN_POLL = 0.025  # seconds between two looks at what still sends traffic to the old container


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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.nginx = nginx
        self.fleet = fleet
        self.stopping = stopping
        self.probe = probe
        self.is_port_free = is_port_free
        self.environ = os.environ if environ is None else environ  # env_file `KEY`, secret_env

    def rollout(
        self, deployment: Deployment, service: ServiceConfig, steps: Steps
    ) -> BlueGreenRollout:
        """One deployment of this strategy (a deploy.RolloutFactory)."""
        return BlueGreenRollout(self, deployment, service, steps)

    def remove_leftovers(self, service: str, keep: set[str]) -> list[str]:
        """Remove this service's containers other than `keep` (ids); return what was done.

        Leftovers are containers of failed or interrupted releases, or old ones a failed
        retire left running. Nothing is removed while nginx may still send traffic to a
        container the file no longer names (a restore it could not reload).
        """
        if not self.nginx.in_sync:
            return []
        done = []
        for container in self.backend.list_managed(self.config.instance):
            if container.service == service and container.id not in keep:
                try:
                    self.backend.remove(container.id)
                    done.append(f"removed leftover {container.name}")
                except DockerError as err:
                    done.append(f"could not remove leftover {container.name}: {err}")
        return done


class BlueGreenRollout:
    """One deployment: what it changed so far, so a failure can undo exactly that."""

    def __init__(
        self, strategy: BlueGreen, deployment: Deployment, service: ServiceConfig, steps: Steps
    ) -> None:
        self.strategy = strategy
        self.deployment = deployment
        self.service = service
        self.step = steps
        self.switched = deployment.switched_at is not None
        self.secrets: list[str] = []  # the new container's env_file/secret_env values

    def run(self) -> DeploymentState:
        """The steps; returns the final state or raises a DeployerError."""
        if self.switched:  # interrupted after its switch: finish it, never roll it back
            return self._finish_after_restart()
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
                trouble = self._not_serving(old.container)
                if trouble is None:
                    step.detail += f"; {old.container.name} already runs it"
                    deployment.container = old.container.name
                    return DeploymentState.SKIPPED
                step.detail += f"; {old.container.name} runs it but is {trouble}: starting it again"
        with self.step("pull") as step:
            if backend.has_image(service.image, digest):
                step.detail = f"{service.image}@{digest} is on the engine already"
            else:
                backend.pull(service.image, digest)
                step.detail = f"pulled {service.image}@{digest}"
        with self.step("start") as step:
            keep = {old.container.id} if old is not None else set()
            notes = strategy.remove_leftovers(name, keep)
            container, environment = self._start(digest)
            started = f"{container.name} ({container.short_id}) on {container.address}"
            step.detail = "; ".join(filter(None, [started, environment, *notes]))
        with self.step("healthy") as step:
            try:
                step.detail = wait_until_healthy(
                    backend, container, service.health, strategy.stopping, strategy.probe
                )
            except HealthCheckFailed as err:  # the app may print its environment
                err.logs = redact(err.logs, self.secrets)
                raise
        with self.step("nginx") as step:
            was_in_sync = strategy.nginx.in_sync
            reloaded = strategy.fleet.switch(name, container, strategy.nginx.apply)
            self.switched = True
            step.detail = f"{strategy.nginx.output} now sends {name} to {container.address}"
            if not was_in_sync:  # leftovers kept while nginx might have used them can go now
                keep = {container.id} | ({old.container.id} if old is not None else set())
                step.detail = "; ".join([step.detail, *strategy.remove_leftovers(name, keep)])
        if old is not None:
            replaced = reloaded.replaced if reloaded is not None else None
            self._retire([old.container], service.drain, replaced)
        return DeploymentState.SUCCEEDED

    def undo(self, error: str) -> str:
        """Remove the new container unless it serves; return the error saying what serves."""
        if self.switched:
            return error
        name, service = self.deployment.container, self.deployment.service
        if name is not None and self.deployment.digest is not None:
            error += self._remove_new(name)
        serving = self.strategy.fleet.serving(service)
        if serving is not None:
            error += f"; {serving.container.name} keeps serving"
        return error

    def _remove_new(self, name: str) -> str:
        """Remove the failed release's container by name (its id may never have come back)."""
        if self.deployment.reached_nginx and not self.strategy.nginx.in_sync:
            return (
                f"; {name} is left running because nginx may still send traffic to it; "
                "deployer removes it after nginx's next successful reload"
            )
        for attempt in (1, 2):
            try:
                self.strategy.backend.remove(name)
                return ""
            except DockerError as err:
                if attempt == 2:
                    return (
                        f"; the new container {name} could not be removed ({err}); deployer "
                        f"removes it at the next deployment of {self.deployment.service} or "
                        "when it starts"
                    )
                time.sleep(REMOVE_RETRY)
        return ""  # pragma: no cover (the loop returns)

    def _not_serving(self, container: ContainerInfo) -> str | None:
        """None when the container runs and is not unhealthy; else what is wrong with it."""
        try:
            info = self.strategy.backend.inspect(container.id)
        except ContainerMissing:
            return "gone"
        if info.stopped or info.health == "unhealthy":
            return describe(info)
        return None

    def _start(self, digest: str) -> tuple[ContainerInfo, str]:
        """Start the new container; return it and what its environment came from (names only)."""
        strategy, deployment, service = self.strategy, self.deployment, self.service
        secret = read_secret_environment(service, strategy.environ)
        self.secrets = container_secrets(secret.values.values())
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
        # Recorded before the engine is asked: if the answer never comes back (engine lost,
        # deployer killed), the container is still found by this name and removed.
        deployment.container = container_name(deployment.service, deployment.id)
        self.step.save()
        spec = make_container_spec(
            deployment.service,
            service,
            digest,
            deployment.id,
            port,
            strategy.config.instance,
            secret.values,
        )
        return strategy.backend.start(spec), secret.summary

    def _drain(self, old: list[ContainerInfo], cap: float, replaced: Workers | None) -> str:
        """Wait until nothing can send a request to the old containers any more (the nginx
        workers the switch replaced have exited and no connection to them is open), at most
        `cap` seconds; without a way to watch that (no nginx.pid_file), wait `cap`."""
        names = ", ".join(c.name for c in old) or "nothing"
        addresses = [container.address for container in old]
        nginx, stopping = self.strategy.nginx, self.strategy.stopping
        began = time.monotonic()
        while True:
            left = nginx.in_flight(addresses, replaced)
            waited = time.monotonic() - began
            if left is None:
                stopping.wait(cap)
                return f"{names} kept serving in-flight requests for {cap:g} s"
            if left.done:
                return f"{names} had no request in flight after {waited:.2f} s"
            if waited >= cap:
                return f"{names} still had {left} after the {cap:g} s drain: retired anyway"
            if stopping.wait(min(DRAIN_POLL, max(0.0, cap - waited))):
                return f"{names}: drain cut short, deployer is stopping"

    def _finish_after_restart(self) -> DeploymentState:
        """A deployment that switched before deployer stopped: finish its drain and retire."""
        switched_at = self.deployment.switched_at
        assert switched_at is not None
        serving = self.strategy.fleet.serving(self.deployment.service)
        keep = {serving.container.id} if serving is not None else set()
        old = [
            container
            for container in self.strategy.backend.list_managed(self.strategy.config.instance)
            if container.service == self.deployment.service and container.id not in keep
        ]
        elapsed = (utc_now() - switched_at).total_seconds()
        drain = max(0.0, self.service.drain - elapsed)
        self._retire(old, drain, replaced=None, resumed=True)
        return DeploymentState.SUCCEEDED

    def _retire(
        self,
        old: list[ContainerInfo],
        drain: float,
        replaced: Workers | None,
        resumed: bool = False,
    ) -> None:
        stopping, names = self.strategy.stopping, ", ".join(c.name for c in old) or "nothing"
        with self.step("drain", cancellable=False) as step:
            step.detail = ("resumed after deployer restarted: " if resumed else "") + (
                self._drain(old, drain, replaced)
            )
            if stopping.is_set():
                step.state = StepState.INTERRUPTED
                step.detail = f"{names} kept serving; cut short: deployer is stopping"
        if stopping.is_set():
            raise FinishLater(
                f"deployer is stopping after the switch: {self.deployment.container} serves; "
                f"the next start drains and retires {names}"
            )
        with self.step("retire", cancellable=False) as step:
            failed = []
            for container in old:
                try:
                    self.strategy.backend.stop(container.id, self.service.stop_timeout)
                except DockerError as err:
                    failed.append(f"{container.name}: {err}")
            if failed:
                step.state = StepState.FAILED
                step.detail = (
                    f"{'; '.join(failed)}; the new container serves; deployer removes the old "
                    "one at the next deployment or start"
                )
            else:
                step.detail = f"stopped and removed {names}"
