"""A single-node Swarm on the sandbox engine, for the Swarm backend's integration tests.

Session-scoped: the swarm (`docker swarm init --advertise-addr 127.0.0.1` when the engine is
in none; left afterwards only if this session created it and no other services run there)
and the test images. Per test: a unique deployer instance; its services, secrets and configs
are removed afterwards, pass or fail. Tasks use host networking on 127.0.0.1 ports from the
`port_pool` fixture; fast HEALTHCHECKs (0.2 s) and a 1 s monitor window keep these tests short.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from deployer.backends.swarm import SwarmBackend
from deployer.backends.swarm_types import HealthCheck, ServiceSpec, UpdatePolicy
from deployer.rollout.swarm_watch import Convergence, Watch, watch
from deployer.sandbox import AppBehaviour, ImageFactory
from deployer.sandbox.images import PushedImage
from deployer.sandbox.swarm import (
    SwarmUnavailable,
    ensure_swarm,
    leave_swarm,
    remove_instance_objects,
    service_names,
)

SESSION = uuid.uuid4().hex[:8]
WINDOW = 1.0
POLICY = UpdatePolicy(parallelism=1, delay=0.1, monitor=WINDOW)
# The test apps listen on 127.0.0.1:$PORT; a FROM-scratch image has no /bin/sh, only busybox.
PROBE = "/bin/busybox wget -q -O /dev/null http://127.0.0.1:$PORT/healthz"
FAST_HEALTHCHECK = HealthCheck(
    ("CMD", "/bin/busybox", "sh", "-c", PROBE), interval=0.2, timeout=1.0, retries=2
)


@dataclass(frozen=True)
class SwarmImages:
    """The releases the tests deploy (none has its own HEALTHCHECK: specs give a fast one)."""

    v1: PushedImage
    v2: PushedImage
    exits: PushedImage
    silent: PushedImage
    silent2: PushedImage


@pytest.fixture(scope="session")
def swarm(engine: str) -> Iterator[None]:
    """The engine as a single-node swarm manager for this session."""
    try:
        join = ensure_swarm()
    except SwarmUnavailable as err:
        if os.environ.get("DEPLOYER_REQUIRE_ENGINE") == "1":
            pytest.fail(f"DEPLOYER_REQUIRE_ENGINE=1 but no swarm: {err}")
        pytest.skip(f"Swarm integration tests need a swarm manager: {err}")
    yield
    if not join.created:
        return
    others = service_names()
    if others:  # someone started using this swarm meanwhile: leaving would remove theirs
        warnings.warn(f"not leaving the swarm: services {others} run there", stacklevel=1)
        return
    leave_swarm(join)


@pytest.fixture(scope="session")
def swarm_images(images: ImageFactory) -> SwarmImages:
    return SwarmImages(
        v1=images.build("swarm-app", "v1"),
        v2=images.build("swarm-app", "v2"),
        exits=images.build("swarm-app", "v3", AppBehaviour.EXIT),
        silent=images.build("swarm-app", "s1", AppBehaviour.SILENT),
        silent2=images.build("swarm-app", "s2", AppBehaviour.SILENT),
    )


@pytest.fixture
def swarm_instance(swarm: None) -> Iterator[str]:
    """A deployer instance name unique to this test; its Swarm objects are removed afterwards."""
    name = f"test-{SESSION}-{uuid.uuid4().hex[:6]}"
    yield name
    remove_instance_objects(name)


@pytest.fixture
def backend(swarm: None) -> SwarmBackend:
    return SwarmBackend()


@pytest.fixture
def ports(port_pool: Callable[[int], str]) -> list[int]:
    """Three host ports for one service (a port pool), never shared with another test."""
    first, last = port_pool(3).split("-")
    return list(range(int(first), int(last) + 1))


@pytest.fixture
def make_spec(swarm_instance: str) -> Callable[..., ServiceSpec]:
    """ServiceSpec for `image` on `port`, named `<instance>-web`, fast health and window."""

    def make(image: PushedImage, port: int, **overrides: Any) -> ServiceSpec:
        values: dict[str, Any] = {
            "name": f"{swarm_instance}-web",
            "image": image.repository,
            "digest": image.digest,
            "instance": swarm_instance,
            "port": port,
            "update": POLICY,
            "healthcheck": FAST_HEALTHCHECK,
            "restart_delay": 0.2,
            "stop_grace_period": 2.0,
            **overrides,
        }
        return ServiceSpec(**values)

    return make


@pytest.fixture
def deploy(backend: SwarmBackend) -> Callable[..., Convergence]:
    """Write spec (create or update), then watch it converge; returns the convergence."""

    def run(spec: ServiceSpec, timeout: float = 30.0, settle: float = 5.0) -> Convergence:
        since = datetime.now(UTC)
        backend.apply(spec)
        return converge(backend, spec, since, timeout, settle)

    return run


def converge(
    backend: SwarmBackend,
    spec: ServiceSpec,
    since: datetime,
    timeout: float = 30.0,
    settle: float = 5.0,
) -> Convergence:
    """Watch spec's service until the judge decides."""
    target = Watch(spec.name, spec.digest, WINDOW, timeout, since, interval=0.1, settle=settle)
    return watch(backend, target)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout:g} s"
        time.sleep(0.1)
