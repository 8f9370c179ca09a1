"""deployer's nginx step with many services: render, write, `nginx -t`, reload, confirmation.

Drives deployer's own NginxConfigurator against a sandbox nginx with one server block (own
loopback port) and one upstream per service; each apply moves every upstream to another
address, so every apply writes, tests and reloads. No containers are needed: nginx does not
connect to an upstream until a request comes. Inside each step the test and the reload
commands are timed (a timing Runner around deployer's own); `rest` is everything else in the
step: render, write, the workers' snapshot and the wait until nginx applied the reload. Once
after each step, `nginx -t` and a reload until the old workers stop accepting (the floor's way)
are timed apart as well.

    .venv/bin/python -m bench.nginx_step --services 1 500 --repeats 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.floor import reload_and_confirm
from bench.machine import load_average, machine
from bench.stats import markdown_table, seconds
from deployer.config import NginxConfig
from deployer.models import Server, Upstream
from deployer.nginx import CommandResult, NginxConfigurator, run_command
from deployer.sandbox import SandboxNginx, free_port

TARGET = 0.3  # issue 11: the nginx step at 500 services, every repeat


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
    steps: tuple[float, ...] = ()  # every repeat's whole step, in order
    inside: dict[str, float] = field(default_factory=dict)  # the step's parts (medians)


class TimedRunner:
    """deployer's Runner, timing each command by the name of the argv it was given."""

    def __init__(self, names: dict[tuple[str, ...], str]) -> None:
        self.names = names
        self.spent: dict[str, float] = {}

    def __call__(self, argv: Sequence[str]) -> CommandResult:
        began = time.perf_counter()
        try:
            return run_command(argv)
        finally:
            name = self.names.get(tuple(argv), "other")
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - began


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
    nginx = SandboxNginx(directory, names, listen={name: free_port() for name in names}).start()
    try:
        runner = TimedRunner({tuple(nginx.test_argv): "test", tuple(nginx.reload_argv): "reload"})
        configurator = NginxConfigurator(NginxConfig(**nginx.deployer_config()), run=runner)
        renders, tests, reloads, steps = [], [], [], []
        inside: dict[str, list[float]] = {"nginx -t": [], "reload command": [], "rest": []}
        for repeat in range(repeats):
            upstreams = make_upstreams(services, repeat + 1)
            began = time.perf_counter()
            configurator.render(upstreams)
            renders.append(time.perf_counter() - began)
            runner.spent.clear()
            began = time.perf_counter()
            if not configurator.apply(upstreams):
                raise RuntimeError("nginx step: apply() found nothing to change")
            steps.append(time.perf_counter() - began)
            inside["nginx -t"].append(runner.spent["test"])
            inside["reload command"].append(runner.spent["reload"])
            inside["rest"].append(steps[-1] - runner.spent["test"] - runner.spent["reload"])
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
        tuple(steps),
        {name: statistics.median(values) for name, values in inside.items()},
    )


def report(timings: Sequence[NginxStepTiming], command: str, load: str) -> str:
    """A Markdown report: the step's parts and every repeat (pure but for `machine()`)."""
    head = ["services", "repeats", "nginx -t", "reload command", "rest", "step median", "max"]
    head.append(f"every step < {TARGET:g} s")
    rows = [
        [
            str(item.services),
            str(item.repeats),
            *(seconds(item.inside.get(name), 3) for name in ("nginx -t", "reload command")),
            seconds(item.inside.get("rest"), 3),
            seconds(item.step, 3),
            seconds(item.step_max, 3),
            "yes" if item.step_max < TARGET else "**no**",
        ]
        for item in timings
    ]
    every = [
        f"- {item.services} services: " + " ".join(f"{step:.3f}" for step in item.steps)
        for item in timings
    ]
    apart = [
        [
            str(item.services),
            seconds(item.render, 3),
            seconds(item.test, 3),
            seconds(item.reload, 3),
        ]
        for item in timings
    ]
    return "\n".join(
        [
            "# Benchmark: deployer's nginx step",
            "",
            *machine(),
            f"- load average (1, 5, 15 min): {load}",
            f"- command: `{command}`",
            "",
            "The step's parts (median seconds; rest = render, write, snapshot of the workers, "
            f"wait until the old workers stopped accepting); issue 11's target is < {TARGET:g} s "
            "at 500 services in every repeat:",
            "",
            *markdown_table(head, rows),
            "",
            "Every repeat's whole step (seconds):",
            "",
            *every,
            "",
            "Timed apart after each step (median seconds; reload = `nginx -s reload` until the "
            "old workers stop accepting):",
            "",
            *markdown_table(["services", "render", "nginx -t", "reload"], apart),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1, 500])
    parser.add_argument("--repeats", type=int, default=10, help="steps per size (default 10)")
    parser.add_argument("--write", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.repeats > 100 or any(n < 1 or n > 2000 for n in args.services):
        parser.error("keep it bounded: 1-100 repeats, 1-2000 services")
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="nginx-step-") as scratch:
        timings = [
            measure_nginx_step(Path(scratch) / f"nginx-{count}", count, args.repeats)
            for count in args.services
        ]
    command = "python -m bench.nginx_step " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(timings, command, f"{load} at start, {load_average()} at end")
    sys.stdout.write(text)
    if args.write:
        args.write.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
