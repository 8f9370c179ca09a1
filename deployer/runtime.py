"""The running service: config, store, backend, nginx, fleet, deployer and queue, wired once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from deployer.adoption import adopt_running
from deployer.config import Config
from deployer.deploy import Deployer
from deployer.docker_backend import Backend
from deployer.fleet import Fleet
from deployer.health import Probe, http_probe
from deployer.models import Deployment, DeploymentState, PushEvent
from deployer.nginx import NginxConfigurator, Runner, run_command
from deployer.ports import port_is_free
from deployer.queue import DeployQueue
from deployer.status import service_status
from deployer.store import Store

log = logging.getLogger(__name__)
DATABASE = "deployer.sqlite3"
NGINX_BACKUPS = "nginx-backups"


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
    ) -> None:
        self.config = config
        self.webhook_token = environ.get(config.webhooks.token_env, "")
        self.store = Store(config.state_dir / DATABASE)
        self.backend = backend
        self.nginx = NginxConfigurator(config.nginx, run, config.state_dir / NGINX_BACKUPS)
        self.fleet = Fleet(config.services)
        self.stopping = threading.Event()
        self.deployer = Deployer(
            config, backend, self.nginx, self.store, self.fleet, self.stopping, probe, is_port_free
        )
        self.queue = DeployQueue(
            self.deployer.run, self.store, config.queue.coalesce, self.stopping
        )

    def start(self) -> list[str]:
        """Adopt running containers, re-render nginx, start the queue, resume queued work."""
        report = adopt_running(self.config, self.backend, self.fleet, self.store, self.nginx)
        self.queue.start()
        for deployment in self.store.in_state(DeploymentState.QUEUED):
            if deployment.service in self.config.services:
                self.queue.resume(deployment)
                report.append(f"{deployment.service}: resumed queued deployment {deployment.id}")
        return report

    def stop(self, timeout: float) -> bool:
        """Take no new work and let running deployments finish or roll back within timeout."""
        finished = self.queue.stop(timeout)
        if not finished:
            log.error("a deployment did not finish within %g s of the stop request", timeout)
        return finished

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

    def status(self) -> dict[str, Any]:
        """GET /status."""
        services = {}
        for name in self.config.services:
            history = self.store.history(name, limit=1)
            services[name] = service_status(
                self.config,
                name,
                self.fleet.serving(name),
                self.queue.running(name),
                history[0] if history else None,
            )
        return {"services": services}
