"""deployer: continuous deployment from registry push webhooks.

create_app() wires config, store, backend, nginx and queue; nothing here touches the network or
the Docker daemon (the docker client is built lazily, on first use).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from flask import Flask

from deployer import http
from deployer.backends.base import Backend
from deployer.backends.docker import DockerBackend
from deployer.backends.swarm import SwarmBackend
from deployer.backends.swarm_types import SwarmControl
from deployer.config import Config
from deployer.connection_sources import Watcher
from deployer.nginx import Runner, run_command
from deployer.registries import RegistryLogins
from deployer.resources import TEMPLATES
from deployer.rollout.health import Probe, http_probe
from deployer.rollout.ports import port_is_free
from deployer.runtime import Runtime


def create_app(
    config: Config,
    *,
    backend: Backend | None = None,
    environ: Mapping[str, str] | None = None,
    run: Runner = run_command,
    probe: Probe = http_probe,
    is_port_free: Callable[[int], bool] = port_is_free,
    swarm: SwarmControl | None = None,
    watch: Watcher | None = None,
) -> Flask:
    """The Flask app with its Runtime in app.extensions['deployer'] (not started)."""
    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    environ = os.environ if environ is None else environ
    containers = DockerBackend(logins=RegistryLogins(config.registries, environ))
    # Clients are built lazily: the Swarm one is only ever used for `engine: swarm`.
    app.extensions["deployer"] = Runtime(
        config,
        backend or containers,
        environ,
        run,
        probe,
        is_port_free,
        swarm or SwarmBackend(registry=containers),
        watch,
    )
    http.register(app)
    return app
