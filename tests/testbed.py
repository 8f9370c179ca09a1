"""The real test bed as a pytest plugin (tests/conftest.py loads it, so every folder shares one
session registry and image cache): Docker engine, a local registry, nginx, busybox test images.

Session-scoped: the engine, the registry, the image factory. Per test: a fresh nginx (so a test
that breaks nginx on purpose cannot leak into the next), a unique deployer instance name, and
a port pool; every container labelled with the test's instance is removed afterwards, pass or
fail. Without an engine the tests skip with the reason, unless DEPLOYER_REQUIRE_ENGINE=1 (set by
scripts/test), where that is a failure.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deployer.sandbox import (
    EngineUnavailable,
    ImageFactory,
    LocalRegistry,
    SandboxNginx,
    ensure_engine,
)
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers
from deployer.sandbox.net import port_is_free

SESSION = uuid.uuid4().hex[:8]
# Host ports for test containers: below Linux's ephemeral range, a fresh block per test.
_PORT_BLOCKS = itertools.count(20000 + (int(SESSION, 16) % 400) * 20, 20)


@pytest.fixture(scope="session")
def engine() -> str:
    """A Docker engine that answers (started here when none does and we may)."""
    try:
        return ensure_engine(SANDBOX_DIR / "dockerd.log")
    except EngineUnavailable as err:
        if os.environ.get("DEPLOYER_REQUIRE_ENGINE") == "1":
            pytest.fail(f"DEPLOYER_REQUIRE_ENGINE=1 but no Docker engine: {err}")
        pytest.skip(f"integration tests need a Docker engine: {err}")


@pytest.fixture(scope="session")
def registry(engine: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRegistry]:
    """A real registry on a 127.0.0.1 port, for the whole session."""
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def images(registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory) -> ImageFactory:
    """Builds busybox test apps by name/version/behaviour and pushes them to the registry."""
    return ImageFactory(registry.address, f"t{SESSION}", tmp_path_factory.mktemp("images"))


@pytest.fixture
def instance(engine: str) -> Iterator[str]:
    """A deployer instance name unique to this test; its containers are removed afterwards."""
    name = f"test-{SESSION}-{uuid.uuid4().hex[:6]}"
    yield name
    remove_instance_containers(name)


@pytest.fixture
def port_pool() -> Callable[[int], str]:
    """Returns a free block of n host ports as 'first-last', never shared between tests."""

    def make(size: int = 10) -> str:
        while True:
            first = next(_PORT_BLOCKS)
            ports = range(first, first + size)
            if all(port_is_free(port) for port in ports):
                return f"{ports[0]}-{ports[-1]}"

    return make


@pytest.fixture
def make_nginx(engine: str, tmp_path: Path) -> Iterator[Callable[[list[str]], SandboxNginx]]:
    """Starts a private nginx proxying one loopback port per service name; stopped afterwards."""
    started: list[SandboxNginx] = []

    def make(services: list[str]) -> SandboxNginx:
        nginx = SandboxNginx(tmp_path / f"nginx{len(started)}", services).start()
        started.append(nginx)
        return nginx

    yield make
    for nginx in started:
        nginx.stop()
