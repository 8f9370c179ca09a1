"""Wait until a new container is ready: HTTP health path answers 2xx, image HEALTHCHECK healthy.

The first probe goes out at once; the next after 25 ms, doubling up to `health.interval`, so a
fast app is switched to within milliseconds and a slow one is not polled hard. Fails fast when
the container exits or crash-loops; gives up after the timeout with its last log lines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from deployer.backends.base import Backend, ContainerInfo
from deployer.config import HealthConfig
from deployer.errors import DeploymentCancelled, HealthCheckFailed

Probe = Callable[[str, float], int]
FIRST_RETRY = 0.025  # seconds before the second probe; doubled each time up to health.interval


def http_probe(url: str, timeout: float) -> int:
    """GET url; return the HTTP status (raises requests exceptions when nothing answers).

    The container is on this host: HTTP(S)_PROXY from deployer's environment must not apply.
    """
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, timeout=timeout, allow_redirects=False).status_code


def wait_until_healthy(
    backend: Backend,
    container: ContainerInfo,
    health: HealthConfig,
    stopping: threading.Event,
    probe: Probe = http_probe,
) -> str:
    """Return a one-line summary once healthy; raise HealthCheckFailed or DeploymentCancelled."""
    url = f"http://{container.address}{health.path}"
    deadline = time.monotonic() + health.timeout
    last = "no probe yet"
    pause = min(health.interval, FIRST_RETRY)
    while True:
        info = backend.inspect(container.id)
        if info.stopped:
            raise _failure(backend, info, f"exited (status {info.exit_code}) before it was healthy")
        if info.restart_count:
            raise _failure(
                backend,
                info,
                f"was restarted {info.restart_count} times by its restart policy (it crashed) "
                "before it was healthy",
            )
        if info.health == "unhealthy":
            raise _failure(backend, info, "reported unhealthy by its image HEALTHCHECK")
        last = _probe_once(url, probe, health)
        if last.startswith("HTTP 2") and info.health in (None, "healthy"):
            image_check = "" if info.health is None else " and its HEALTHCHECK is healthy"
            return f"GET {health.path} answered {last}{image_check}"
        if info.health not in (None, "healthy"):
            last += f"; HEALTHCHECK is {info.health}"
        if time.monotonic() >= deadline:
            raise _failure(
                backend,
                info,
                f"did not answer GET {health.path} with 2xx within "
                f"{health.timeout:g} s (last: {last})",
            )
        if stopping.wait(pause):
            raise DeploymentCancelled(f"deployer is stopping; {info.name} was not healthy yet")
        pause = min(health.interval, pause * 2)


def _probe_once(url: str, probe: Probe, health: HealthConfig) -> str:
    try:
        return f"HTTP {probe(url, max(1.0, min(5.0, health.interval * 4)))}"
    except requests.RequestException as err:
        return f"{type(err).__name__}"


def _failure(backend: Backend, info: ContainerInfo, what: str) -> HealthCheckFailed:
    # The log lines go apart from the message: apps print connection strings at start-up,
    # so they are shown to authenticated readers only (the deployment's `logs`).
    logs = backend.logs(info.id, tail=20) or "(no output)"
    return HealthCheckFailed(
        info.name, f"{info.service} (container {info.name}, {info.short_id}) {what}", logs
    )
