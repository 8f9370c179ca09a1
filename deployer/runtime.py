"""The running service: config, store, backend, nginx, fleet, deployer and queue, wired once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from deployer.backends.base import Backend, ContainerInfo
from deployer.backends.swarm_types import SwarmControl
from deployer.config import Config, ServiceConfig
from deployer.connection_sources import Watcher
from deployer.deploy import Deployer, Rollout, Steps
from deployer.errors import DeployerError, NothingToRollBack, QueueClosed
from deployer.fleet import Fleet
from deployer.images import prune_images, rollback_target
from deployer.metrics import Metrics
from deployer.models import Deployment, DeploymentState, PushEvent
from deployer.nginx import NginxConfigurator, Runner, run_command
from deployer.nginx_container import nginx_runner
from deployer.notify import Notifier
from deployer.queue import DeployQueue, new_deployment_id
from deployer.retention import prune_history
from deployer.rollout.adoption import adopt_running
from deployer.rollout.bluegreen import BlueGreen
from deployer.rollout.health import Probe, http_probe
from deployer.rollout.ports import port_is_free
from deployer.rollout.swarm import SwarmStrategy
from deployer.rollout.swarm_adoption import adopt_services
from deployer.rollout.swarm_status import SwarmStatus
from deployer.rollout.takeover import (
    TakeOver,
    TakeoverRefused,
    check_answers,
    takeover_address,
    takeover_digest,
)
from deployer.store import Store
from deployer.swarm_view import SwarmSnapshot, SwarmView
from deployer.watch import ContainerWatch

log = logging.getLogger(__name__)
DATABASE = "deployer.sqlite3"
NGINX_BACKUPS = "nginx-backups"
NOTIFY_FLUSH = 1.0  # seconds at stop to send queued notifications


class Runtime:
    """Everything `serve` runs; built by create_app, started explicitly (no I/O when built)."""

    def __init__(
        self,
        config: Config,
        backend: Backend,
        environ: Mapping[str, str],
        run: Runner = run_command,
        probe: Probe = http_probe,
        is_port_free: Callable[[int], bool] = port_is_free,
        swarm: SwarmControl | None = None,
        watch: Watcher | None = None,
    ) -> None:
        self.config = config
        self.webhook_token = environ.get(config.webhooks.token_env, "")
        self.admin_token = environ.get(config.admin.token_env, "")
        self.read_token = environ.get(config.read.token_env, "")
        self.store = Store(config.state_dir / DATABASE)
        self.backend = backend
        nginx_run = nginx_runner(config.nginx, backend, run)
        self.nginx = NginxConfigurator(config.nginx, nginx_run, config.state_dir / NGINX_BACKUPS)
        self.fleet = Fleet(config.services)
        self.stopping = threading.Event()
        self.notifier = Notifier(config.notify, environ)
        self.bluegreen = BlueGreen(
            config,
            backend,
            self.nginx,
            self.fleet,
            self.stopping,
            probe,
            is_port_free,
            environ,
            watch,
        )
        swarm_services = [name for name, s in config.services.items() if s.engine == "swarm"]
        if swarm_services and swarm is None:
            raise DeployerError("Swarm services need a Swarm engine (create_app gives one)")
        engine: SwarmControl = swarm if swarm is not None else _NO_SWARM
        self.view = SwarmView(engine, swarm_services, on_read=self._follow_swarm)
        self.swarm = SwarmStrategy(
            config, engine, self.nginx, self.fleet, self.view, self.stopping, environ
        )
        self.deployer = Deployer(
            config,
            self.store,
            self.stopping,
            self.rollout,
            on_finished=self.deployment_finished,
        )
        self.queue = DeployQueue(
            self.deployer.run,
            self.store,
            config.queue.coalesce,
            self.stopping,
            on_finished=self.deployment_finished,
        )
        self.watch = ContainerWatch(backend, config.instance)
        self.metrics = Metrics(
            self.fleet,
            config.services,
            lambda name: self.queue.running(name) is not None,
            self.view.get,
        )

    def start(self) -> list[str]:
        """Adopt what runs (see rollout/adoption.py and rollout/swarm_adoption.py), reload
        nginx, start the queue, resume deployments that switched before the last stop (Swarm:
        whose update reached Swarm), then queued ones."""
        swarm_report, reattaching = adopt_services(self.swarm, self.store)
        report, finishing = adopt_running(
            self.config, self.backend, self.fleet, self.store, self.nginx
        )
        report = swarm_report + report
        finishing += reattaching
        self.watch.start()
        self.view.start()
        for taken_over in self.store.adopted():
            self.watch.track(taken_over.id)
        for name in self.config.services:
            prune_history(self.config, self.store, name, self.referenced())
        self.queue.start()
        for deployment in finishing:
            self.queue.resume(deployment)
        for deployment in self.store.in_state(DeploymentState.QUEUED):
            self.queue.resume(deployment)
            report.append(f"{deployment.service}: resumed queued deployment {deployment.id}")
        return report

    def stop(self, timeout: float) -> bool:
        """Take no new work and let running deployments finish or roll back within timeout."""
        began = time.monotonic()
        finished = self.queue.stop(timeout)
        self.watch.stop()
        self.view.stop()
        if not finished:
            log.error(
                "a deployment did not finish within %g s of the stop request; the next start "
                "settles it (see the recovery rule in deployer/rollout/adoption.py)",
                timeout,
            )
        self.notifier.stop(max(0.0, min(NOTIFY_FLUSH, timeout - (time.monotonic() - began))))
        return finished

    def rollout(self, deployment: Deployment, service: ServiceConfig, steps: Steps) -> Rollout:
        """The deployment's strategy: Swarm services through Swarm, others as containers."""
        if service.engine == "swarm":
            return self.swarm.rollout(deployment, service, steps)
        return self.bluegreen.rollout(deployment, service, steps)

    def referenced(self) -> set[str]:
        """Deployments whose containers or Swarm services are on the engine (never pruned)."""
        return self.watch.deployments() | self.view.deployments()

    def deployment_finished(self, deployment: Deployment) -> None:
        """Every finished deployment: metrics, notifications, and image pruning on success."""
        self.metrics.deployment_finished(deployment)
        self.notifier.deployment_finished(deployment)
        ran = deployment.state is not DeploymentState.SUPERSEDED  # (reported under the queue lock)
        if ran and deployment.service in self.config.services:
            prune_history(self.config, self.store, deployment.service, self.referenced())
        service = self.config.services.get(deployment.service)
        succeeded = deployment.state is DeploymentState.SUCCEEDED
        if succeeded and service is not None and service.engine != "swarm":
            try:
                prune_images(
                    self.backend, self.store, deployment.service, service.image, service.keep_images
                )
            except DeployerError as err:
                log.warning("%s: image pruning skipped: %s", deployment.service, err)

    def deploy_now(self, service: str, tag: str | None, trigger: str) -> Deployment:
        """Queue a deployment of service's image at tag (default: the tag it follows)."""
        config = self.config.services[service]
        return self.queue.submit(service, config.image, tag or config.tag, trigger)

    def rollback(self, service: str, digest: str | None, trigger: str) -> Deployment:
        """Queue a deployment of exactly `digest` (default: the previous succeeded one)."""
        serving = self.fleet.serving(service)
        current = serving.digest if serving else None
        target = digest or rollback_target(self.store, service, current)
        if target is None:
            raise NothingToRollBack(
                f"{service} has no earlier succeeded deployment to roll back to"
                + (f" (it runs {current})" if current else "")
            )
        if serving is not None and target == current and self._runs_well(service):
            raise NothingToRollBack(f"{service} runs {target} already")
        config = self.config.services[service]
        return self.queue.submit(service, config.image, config.tag, trigger, digest=target)

    def take_over(self, service: str, reference: str, port: int | None, trigger: str) -> Deployment:
        """Record a container someone started by hand as what serves `service` (nginx switched
        to it), so that the next push replaces it as usual; TakeoverRefused says why not."""
        config = self.config.services[service]
        if config.engine == "swarm":
            raise TakeoverRefused(
                f"{service} is a Swarm service: its first deployment adopts the Swarm service "
                f"named {service} if one exists; adopt takes over containers"
            )
        deployment = Deployment(
            id=new_deployment_id(),
            service=service,
            trigger=trigger,
            image=config.image,
            tag=config.tag,
        )
        with self.queue.holding(service) as held:  # a push meanwhile waits behind it
            if not held:
                raise TakeoverRefused(f"a deployment of {service} is queued or running; try later")
            return self._take_over(deployment, config, reference, port)

    def _take_over(
        self, deployment: Deployment, config: ServiceConfig, reference: str, port: int | None
    ) -> Deployment:
        service = deployment.service
        serving = self.fleet.serving(service)
        if serving is not None:
            raise TakeoverRefused(
                f"{service} is served by {serving.names} already; adopt takes over a service "
                "deployer does not run yet"
            )
        found = self.backend.inspect_unmanaged(reference)
        address = takeover_address(service, config, found, port)
        deployment.digest = takeover_digest(service, config, found)
        checked = check_answers(self.bluegreen.probe, service, found, address, config.health.path)
        deployment.container = found.name
        info = ContainerInfo(
            id=found.id,
            name=found.name,
            service=service,
            image=found.image,
            digest=deployment.digest,
            deployment=deployment.id,
            address=address,
            status=found.status,
            health=None,
            started_at=found.started_at,
        )
        self.store.save(deployment)
        takeover = TakeOver(self.fleet, self.nginx, info, checked)
        self.deployer.run(deployment, takeover.rollout)
        if deployment.state is DeploymentState.SUCCEEDED:
            self.store.remember_adopted(info)
            self.watch.track(info.id)
        return deployment

    def _follow_swarm(self, service: str, snapshot: SwarmSnapshot) -> None:
        """After a background read: nginx follows tasks Swarm moved, unless a deployment of
        the service waits or runs (its own steps point nginx)."""
        try:
            with self.queue.holding(service) as held:
                if not held:
                    return
                moved = self.swarm.follow(service, snapshot.state, snapshot.tasks)
        except QueueClosed:
            return
        except DeployerError as err:
            log.error("%s: could not point nginx at the tasks Swarm moved: %s", service, err)
            return
        if moved:
            log.warning("%s", moved)

    def _swarm_status(self, service: str) -> SwarmStatus | None:
        snapshot = self.view.get(service)
        return snapshot.status if snapshot is not None else None

    def _runs_well(self, service: str) -> bool:
        """Every replica runs and none is unhealthy (as last seen; no engine call). When one is
        down, deploying the digest it serves again recovers it."""
        if self.config.services[service].engine == "swarm":
            status = self._swarm_status(service)
            return status is not None and status.replicas_running >= (status.replicas_desired or 0)
        serving = self.fleet.serving(service)
        seen = [self.watch.get(c.id) for c in serving.containers] if serving else []
        return all(i is not None and not i.stopped and i.health != "unhealthy" for i in seen)

    def followers(self, event: PushEvent) -> list[str]:
        """Names of the services that follow event's repository and tag."""
        return [
            name
            for name, service in self.config.services.items()
            if service.repository == event.repository and service.tag == event.tag
        ]

    def submit_push(self, event: PushEvent) -> list[Deployment]:
        """Queue one deployment per following service."""
        return [
            self.queue.submit(
                name,
                self.config.services[name].image,
                event.tag,
                trigger=f"{event.source} push {event.repository}:{event.tag}",
            )
            for name in self.followers(event)
        ]


class _NoSwarm:
    """The Swarm engine of a config without Swarm services: never asked anything."""

    def __getattr__(self, name: str) -> Any:
        raise DeployerError("no Swarm service is configured")


_NO_SWARM: Any = _NoSwarm()
