"""The blue/green container strategy: start the new release beside the old one, then switch.

Steps: resolve -> pull -> start -> healthy -> nginx -> drain -> retire. A release is
`replicas` containers, each on its own port; all must be healthy before nginx is switched to
all of them. Until `nginx` succeeds the old release serves and nothing about it changed; on
any failure before that every new container (found by the names recorded before they were
created) is removed once nginx cannot be sending traffic to it, and the nginx file is what it
was. From the `nginx` step on, the new release is the one that serves: a stop or a crash after
it never rolls the release back; the drain and retire are finished then, or by the next start
(deployer/rollout/adoption.py).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial

from deployer.backends.base import Backend, ContainerInfo
from deployer.config import Config, ServiceConfig
from deployer.connection_sources import Watcher, watch_container
from deployer.deploy import Steps
from deployer.errors import (
    ContainerMissing,
    DockerError,
    HealthCheckFailed,
    NoFreePort,
)
from deployer.fleet import Fleet, Serving
from deployer.logs import container_secrets, redact
from deployer.models import Deployment, DeploymentState
from deployer.nginx import NginxConfigurator, Reloaded
from deployer.rollout.containers import container_names, make_container_spec
from deployer.rollout.environment import read_secret_environment
from deployer.rollout.health import Probe, http_probe, wait_until_healthy
from deployer.rollout.ports import pick_port, port_is_free
from deployer.rollout.retire import finish_after_restart, retire
from deployer.watch import describe

REMOVE_RETRY = 0.5  # seconds before the second attempt to remove a failed release's container


class BlueGreen:
    """What every container rollout shares: the engine, nginx, the fleet and the probes."""

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
        watch: Watcher | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.nginx = nginx
        self.fleet = fleet
        self.stopping = stopping
        self.probe = probe
        self.is_port_free = is_port_free
        self.environ = os.environ if environ is None else environ  # env_file `KEY`, secret_env
        # Where the drain reads an old container's connections (deployer/connection_sources.py)
        self.watch: Watcher = watch or partial(watch_container, backend)

    def rollout(
        self, deployment: Deployment, service: ServiceConfig, steps: Steps
    ) -> BlueGreenRollout:
        """One deployment of the service's strategy (a deploy.RolloutFactory)."""
        from deployer.rollout.stopfirst import StopFirstRollout  # a variant of this one

        kind = StopFirstRollout if service.strategy == "stop-first" else BlueGreenRollout
        return kind(self, deployment, service, steps)

    def remove_leftovers(self, service: str, keep: set[str]) -> list[str]:
        """Remove this service's containers other than `keep` (ids); return what was done.

        Leftovers are containers of failed or interrupted releases, or old ones a failed
        retire left running. Nothing is removed while nginx may still send traffic to a
        container the file no longer names (a restore it could not reload).
        """
        if not self.nginx.in_sync:
            return []
        done = []
        for container in self.backend.list_managed(self.config.instance, brief=True):
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
        self.old: Serving | None = strategy.fleet.serving(deployment.service)
        self.secrets: list[str] = []  # the new containers' env_file/secret_env values

    def run(self) -> DeploymentState:
        """The steps; returns the final state or raises a DeployerError."""
        if self.switched:  # interrupted after its switch: finish it, never roll it back
            return self._finish_after_restart()
        digest = self.resolve()
        if digest is None:
            return DeploymentState.SKIPPED
        self.pull(digest)
        containers = self.start_and_check(digest)
        reloaded = self.switch(containers)
        if self.old is not None:
            replaced = reloaded.replaced if reloaded is not None else None
            retire(self, list(self.old.containers), self.service.drain, replaced)
        return DeploymentState.SUCCEEDED

    def resolve(self) -> str | None:
        """The digest to deploy, or None when the old release runs it and is well."""
        deployment, service, backend, old = (
            self.deployment,
            self.service,
            self.strategy.backend,
            self.old,
        )
        with self.step("resolve") as step:
            if deployment.requested_digest:
                digest = deployment.requested_digest
                step.detail = f"asked for {service.image}@{digest} (no registry lookup)"
            else:
                digest = backend.resolve(service.image, deployment.tag)
                step.detail = f"{service.image}:{deployment.tag} is {digest}"
            deployment.digest = digest
            deployment.previous_digest = old.digest if old else None
            if old is not None and old.digest == digest:
                trouble = self._not_serving(old)
                if trouble is None:
                    step.detail += f"; {old.names} already run{'s' * (len(old.containers) == 1)} it"
                    deployment.container = old.containers[0].name
                    return None
                step.detail += f"; {trouble}: starting it again"
        return digest

    def pull(self, digest: str) -> None:
        image, backend = self.service.image, self.strategy.backend
        with self.step("pull") as step:
            if backend.has_image(image, digest):
                step.detail = f"{image}@{digest} is on the engine already"
            else:
                backend.pull(image, digest)
                step.detail = f"pulled {image}@{digest}"

    def start_and_check(self, digest: str) -> list[ContainerInfo]:
        """The start and healthy steps: every replica started, then every one healthy."""
        strategy, name = self.strategy, self.deployment.service
        with self.step("start") as step:
            keep = self.old.ids if self.old is not None else set()
            notes = strategy.remove_leftovers(name, keep)
            containers, environment = self._start(digest)
            started = ", ".join(f"{c.name} ({c.short_id}) on {c.address}" for c in containers)
            step.detail = "; ".join(filter(None, [started, environment, *notes]))
        with self.step("healthy") as step:
            try:
                details = [
                    wait_until_healthy(
                        strategy.backend,
                        container,
                        self.service.health,
                        strategy.stopping,
                        strategy.probe,
                    )
                    for container in containers
                ]
            except HealthCheckFailed as err:  # the app may print its environment
                err.logs = redact(err.logs, self.secrets)
                raise
            step.detail = (
                details[0]
                if len(details) == 1
                else f"{len(details)} replicas: "
                + ("; ".join(f"{c.name}: {d}" for c, d in zip(containers, details, strict=True)))
            )
        return containers

    def switch(self, containers: list[ContainerInfo]) -> Reloaded | None:
        """The nginx step: the new release serves from here on."""
        strategy, name = self.strategy, self.deployment.service
        with self.step("nginx") as step:
            was_in_sync = strategy.nginx.in_sync
            reloaded = strategy.fleet.switch(name, containers, strategy.nginx.apply)
            self.switched = True
            addresses = ", ".join(container.address for container in containers)
            step.detail = f"{strategy.nginx.output} now sends {name} to {addresses}"
            if not was_in_sync:  # leftovers kept while nginx might have used them can go now
                keep = {c.id for c in containers} | (self.old.ids if self.old else set())
                step.detail = "; ".join([step.detail, *strategy.remove_leftovers(name, keep)])
        return reloaded

    def undo(self, error: str) -> str:
        """Remove the new containers unless they serve; return the error saying what serves."""
        if self.switched:
            return error
        if self.deployment.container is not None and self.deployment.digest is not None:
            error += self._remove_new()
        serving = self.strategy.fleet.serving(self.deployment.service)
        if serving is not None:
            error += f"; {serving.names} keep{'s' * (len(serving.containers) == 1)} serving"
        return error

    def new_names(self) -> list[str]:
        """The names of this deployment's containers (known before they were created)."""
        return container_names(self.deployment.service, self.deployment.id, self.service.replicas)

    def _remove_new(self) -> str:
        """Remove the failed release's containers by name (their ids may never have come back)."""
        names = self.new_names()
        if self.deployment.reached_nginx and not self.strategy.nginx.in_sync:
            return (
                f"; {', '.join(names)} is left running because nginx may still send traffic to "
                "it; deployer removes it after nginx's next successful reload"
            )
        left = [problem for name in names if (problem := self._remove_one(name))]
        if not left:
            return ""
        return (
            f"; the new container {'; '.join(left)}; deployer removes it at the next deployment "
            f"of {self.deployment.service} or when it starts"
        )

    def _remove_one(self, name: str) -> str:
        """Remove a container by name, trying twice; '' or what went wrong."""
        for attempt in (1, 2):
            try:
                self.strategy.backend.remove(name)
                return ""
            except DockerError as err:
                if attempt == 2:
                    return f"{name} could not be removed ({err})"
                time.sleep(REMOVE_RETRY)
        return ""  # pragma: no cover (the loop returns)

    def _not_serving(self, serving: Serving) -> str | None:
        """None when every replica the config asks for runs and is not unhealthy; else what
        is wrong (a replica lost while deployer was down, `replicas` changed, one stopped)."""
        serving_count, wanted = len(serving.containers), self.service.replicas
        if serving_count < wanted:
            return f"only {serving_count} of {wanted} replicas serve"
        if serving_count > wanted:
            return f"{serving_count} replicas serve but the config asks for {wanted}"
        for container in serving.containers:
            try:
                info = self.strategy.backend.inspect(container.id)
            except ContainerMissing:
                return f"{container.name} runs it but is gone"
            if info.stopped or info.health == "unhealthy":
                return f"{container.name} runs it but is {describe(info)}"
        return None

    def _start(self, digest: str) -> tuple[list[ContainerInfo], str]:
        """Start every replica; return them and what their environment came from (names)."""
        strategy, deployment, service = self.strategy, self.deployment, self.service
        secret = read_secret_environment(service, strategy.environ)
        self.secrets = container_secrets(secret.values.values())
        taken = {
            int(port)
            for container in strategy.backend.list_managed(strategy.config.instance, brief=True)
            for port in [container.address.rsplit(":", 1)[-1]]
            if port.isdigit()
        }
        ports = []
        for _ in range(service.replicas):
            port = pick_port(service.ports or (), taken, strategy.is_port_free)
            if port is None:
                raise NoFreePort(
                    deployment.service,
                    f"no free port for {deployment.service} in {service.ports}: "
                    f"all are used by containers or other programs; widen `ports`",
                )
            ports.append(port)
            taken.add(port)
        # Recorded before the engine is asked: if the answer never comes back (engine lost,
        # deployer killed), the containers are still found by these names and removed.
        deployment.container = self.new_names()[0]
        self.step.save()
        started = [
            strategy.backend.start(
                make_container_spec(
                    deployment.service,
                    service,
                    digest,
                    deployment.id,
                    port,
                    strategy.config.instance,
                    replica,
                    secret.values,
                )
            )
            for replica, port in enumerate(ports, start=1)
        ]
        return started, secret.summary

    def _finish_after_restart(self) -> DeploymentState:
        """A deployment that switched before deployer stopped: finish its drain and retire."""
        return finish_after_restart(self)
