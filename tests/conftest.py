"""Shared fixtures: a config on tmp_path, the app built with fakes, its client and runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deployer import create_app
from deployer.config import Config, parse_config
from deployer.runtime import Runtime
from tests.fakes import FakeBackend, FakeNginxCommands

# The real test bed's fixtures (engine, registry, images, instance, port_pool, make_nginx),
# shared by tests/integration and tests/faults in one session.
pytest_plugins = ["tests.testbed"]

TOKEN = "test-token-0123456789abcdef"
ADMIN_TOKEN = "admin-token-0123456789abcdef"
ENVIRON = {"DEPLOYER_TOKEN": TOKEN, "DEPLOYER_ADMIN_TOKEN": ADMIN_TOKEN}
WEB_IMAGE = "registry.example.com/acme/web"
API_IMAGE = "registry.example.com/acme/api"


SERVICES: dict[str, Any] = {
    "web": {
        "image": WEB_IMAGE,
        "ports": "18000-18009",
        "drain": 0,
        "health": {"timeout": 0.3, "interval": 0.01},
    },
    "api": {
        "image": API_IMAGE,
        "ports": "18010-18019",
        "drain": 0,
        "health": {"timeout": 0.3, "interval": 0.01},
    },
}


def make_config(tmp_path: Path, environ: dict[str, str] | None = None, **overrides: Any) -> Config:
    services = overrides.pop("services", SERVICES)
    data = {
        "state_dir": str(tmp_path / "state"),
        "instance": "unit",
        "queue": {"coalesce": 0},
        "nginx": {"output": str(tmp_path / "nginx" / "upstreams.conf"), "test": ["nginx", "-t"]},
        "services": services,
        **overrides,
    }
    return parse_config(data, environ=ENVIRON if environ is None else environ)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
def nginx_commands(config: Config) -> FakeNginxCommands:
    return FakeNginxCommands(config.nginx.output)


@pytest.fixture
def make_app(
    backend: FakeBackend, nginx_commands: FakeNginxCommands
) -> Iterator[Callable[..., Flask]]:
    built: list[Runtime] = []

    def make(config: Config, environ: dict[str, str] | None = None) -> Flask:
        app = create_app(
            config,
            backend=backend,
            environ=ENVIRON if environ is None else environ,
            run=nginx_commands,
            probe=backend.probe,
            is_port_free=lambda port: True,
            watch=backend.watch,
        )
        built.append(app.extensions["deployer"])
        return app

    yield make
    for runtime in built:
        runtime.stop(5)
        runtime.store.close()


@pytest.fixture
def app(make_app: Callable[..., Flask], config: Config) -> Flask:
    return make_app(config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runtime(app: Flask) -> Runtime:
    found: Runtime = app.extensions["deployer"]
    return found
