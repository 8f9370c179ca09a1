"""deployer's nginx step with many services: render, write, `nginx -t`, reload, confirmation.

Drives deployer's own NginxConfigurator against a sandbox nginx with one server block (own
loopback port) and one upstream per service; each apply moves every upstream to another
address, so every apply writes, tests and reloads. No containers are needed: nginx does not
connect to an upstream until a request comes. `nginx -t` and a reload until the old workers
stop accepting (the floor's way, without deployer's settle time) are timed apart as well.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from bench.floor import reload_and_confirm
from deployer.config import NginxConfig
from deployer.models import Server, Upstream
from deployer.nginx import NginxConfigurator, run_command
from deployer.sandbox import SandboxNginx


@dataclass(frozen=True)
class NginxStepTiming:
    """Medians and the maximum over the repeats, in seconds."""

    services: int
    repeats: int
    render: float
    test: float
    reload: float  # nginx -s reload until the old workers stop accepting, seen from /proc
    step: float  # the whole apply(): render + write + nginx -t + reload + confirmation
    step_max: float


def make_upstreams(count: int, shift: int) -> list[Upstream]:
    """`count` services, each at its own loopback address (moved by `shift`) (pure)."""
    return [
        Upstream(
            f"svc{index:04d}",
            (Server(f"127.0.0.1:{20000 + (index + shift) % 20000}", f"c{index}", ""),),
        )
        for index in range(count)
    ]


def measure_nginx_step(directory: Path, services: int, repeats: int = 5) -> NginxStepTiming:
    """Time NginxConfigurator.apply() with `services` upstreams, `repeats` times."""
    names = [upstream.service for upstream in make_upstreams(services, 0)]
    nginx = SandboxNginx(directory, names).start()
    try:
        configurator = NginxConfigurator(NginxConfig(**nginx.deployer_config()))
        renders, tests, reloads, steps = [], [], [], []
        for repeat in range(repeats):
            upstreams = make_upstreams(services, repeat + 1)
            began = time.perf_counter()
            configurator.render(upstreams)
            renders.append(time.perf_counter() - began)
            began = time.perf_counter()
            if not configurator.apply(upstreams):
                raise RuntimeError("nginx step: apply() found nothing to change")
            steps.append(time.perf_counter() - began)
            began = time.perf_counter()
            run_command(nginx.test_argv)
            tests.append(time.perf_counter() - began)
            began = time.perf_counter()
            reload_and_confirm(nginx)
            reloads.append(time.perf_counter() - began)
    finally:
        nginx.stop()
    return NginxStepTiming(
        services,
        repeats,
        statistics.median(renders),
        statistics.median(tests),
        statistics.median(reloads),
        statistics.median(steps),
        max(steps),
    )
