"""Benchmark: deployer beside its peers, in the same run, interleaved rounds, same load.

Stacks, each with its own sandbox nginx (same config) in front of the same busybox app:
- floor: the unavoidable parts done by hand (pull, run to 200, nginx -t, reload confirmed);
- deployer: `deployer serve` with its default config (only paths, ports and nginx set);
- script: Debian's `webhook` running `docker pull/stop/rm/run`;
- compose: Debian's `webhook` running `docker-compose pull && docker-compose up -d`.
Scenarios: an app that answers at once, and one that needs 1 s to start. Then deployer's
nginx step with 500 services. `webhook` and `docker-compose` are installed here (apt-get, only
when missing), never by deployer's scripts.

    .venv/bin/python -m bench.peers --write bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.deployer_stack import DeployerStack
from bench.floor import FloorStack
from bench.hook_stacks import HookStack, compose_plan, script_plan
from bench.machine import load_average, machine
from bench.nginx_step import NginxStepTiming, measure_nginx_step
from bench.peers_report import report
from bench.rounds import TAIL, WARMUP, RoundResult, Scenario, Stack, measure_round, set_up
from bench.tools import ensure_packages
from deployer.sandbox import AppBehaviour, ImageFactory, LocalRegistry, ensure_engine
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers

SCENARIOS = (
    Scenario("app answers at once", AppBehaviour.SERVE),
    Scenario("app needs 1 s to start", AppBehaviour.SLOW, delay=1.0),
)
HOW = """\
- stacks: `floor` (the unavoidable parts by hand: pull, `docker run` until the app's first 200,
  `nginx -t`, reload until the old workers stop accepting, as deployer/nginx_workers.py sees
  it), `deployer` (`deployer serve`, default config: only paths, ports, instance and the
  sandbox nginx with its pid file are set), `script` (Debian's `webhook` running `docker pull`,
  `stop`, `rm`, `run` on the port nginx proxies to), `compose` (Debian's `webhook` running
  `docker-compose pull && docker-compose up -d`, host networking)
- each stack has its own sandbox nginx (same nginx.conf, one upstream `web`) and its own image
  in the same local registry; rounds are interleaved (floor, deployer, script, compose, floor,
  ...); each round pushes a new version (local copy removed: the pull is real) and runs its own
  load only on the stack under test, so stacks never share a reload or a CPU burst
- load: {clients} client threads in a child process at nice {nice} (they stand for users on
  other machines: at nice 0 they take this 2-core machine's CPU from the stack under test),
  one fresh connection per GET /version through nginx, from {warmup:g} s before the webhook
  until {tail:g} s after the deployment finished and the new version was seen; `failed`
  counts every error in that window
- times in seconds after the webhook was sent: `served` = the first request that got the new
  version began, `only new from` = every request from then on got it, `finished` = deployer's
  `finished_at` / the hook script's exit / the floor's old container stopped; `x floor` divides
  by the floor's median in the same run and scenario (the floor's `served` is end to end)
- acks: `trigger ack` is the push webhook's answer time; `ack p50/p99` are webhooks of a tag
  no service follows (authenticated, parsed, answered, nothing deployed) sent every 20 ms while
  the deployment ran, each on a fresh connection, and the same for {warmup:g} s before the
  webhook; the load keeps this machine's CPUs busy, so a p99 is the machine's scheduling noise
  as much as the stack's own delay: compare it with the column before the webhook and with the
  peers' webhook server (Go)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per stack and scenario")
    parser.add_argument("--clients", type=int, default=4, help="load threads (default 4)")
    parser.add_argument("--nginx-services", type=int, default=500, help="services in nginx step")
    parser.add_argument(
        "--load-nice",
        type=int,
        default=19,
        help="niceness of the load's client process (default 19: clients stand for users on "
        "other machines; 0 lets them compete with the stack for the CPUs)",
    )
    parser.add_argument("--write", metavar="PATH", help="also write the report to PATH")
    args = parser.parse_args()
    ensure_packages()
    ensure_engine(SANDBOX_DIR / "dockerd.log")
    began, load_before = time.monotonic(), load_average()
    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as scratch:
        results, nginx = run(Path(scratch), args)
    took = time.monotonic() - began
    text = report(
        head(args, took, f"{load_before} at start, {load_average()} at end"), results, nginx
    )
    sys.stdout.write(text)
    if args.write:
        Path(args.write).write_text(text)
    return 0


def run(scratch: Path, args: argparse.Namespace) -> tuple[list[RoundResult], list[NginxStepTiming]]:
    instance = f"bench-peers-{secrets.token_hex(3)}"
    with LocalRegistry(scratch / "registry") as registry, ExitStack() as cleanup:
        cleanup.callback(remove_instance_containers, instance)
        images = ImageFactory(registry.address, "bench", scratch / "build")
        stacks = start_stacks(scratch, images, instance, cleanup)
        for stack in stacks:
            set_up(stack, images, "v1")
        results = [
            measure_round(stack, images, scenario, f"v{number}", args.clients, args.load_nice)
            for number, scenario in versions(args.rounds)
            for stack in stacks
        ]
        print(f"{len(results)} rounds done; nginx step next", file=sys.stderr)
        nginx = [
            measure_nginx_step(scratch / f"nginx-{count}", count)
            for count in (1, args.nginx_services)
        ]
    return results, nginx


def start_stacks(
    scratch: Path, images: ImageFactory, instance: str, cleanup: ExitStack
) -> list[Stack]:
    """Start every stack; each is stopped when `cleanup` closes."""
    floor = FloorStack(scratch, images, instance)
    deployer = DeployerStack(scratch, images, instance)
    script = HookStack(script_plan(images, instance), scratch / "script")
    compose = HookStack(compose_plan(images, instance, scratch / "compose"), scratch / "compose")
    for stack in (floor, deployer, script, compose):
        cleanup.callback(stack.stop)
        stack.start()
    return [floor, deployer, script, compose]


def versions(rounds: int) -> list[tuple[int, Scenario]]:
    """(version number, scenario) for every round: v2.. in the first scenario, then on."""
    return [
        (2 + index * rounds + number, scenario)
        for index, scenario in enumerate(SCENARIOS)
        for number in range(rounds)
    ]


def head(args: argparse.Namespace, took: float, load: str) -> list[str]:
    """Title, machine, command and how it was measured."""
    tools = [["webhook", "-version"], ["docker-compose", "version"]]
    return [
        "# Benchmark: deployer beside its peers",
        "",
        *machine(tools),
        f"- load average (1, 5, 15 min): {load} (the machine is shared: other processes count)",
        f"- command: `.venv/bin/python -m bench.peers --rounds {args.rounds} "
        f"--clients {args.clients} --load-nice {args.load_nice} "
        f"--nginx-services {args.nginx_services} "
        "--write bench/RESULTS.md` (as root; about "
        f"{took / 60:.0f} min for this run)",
        HOW.format(clients=args.clients, nice=args.load_nice, warmup=WARMUP, tail=TAIL).rstrip(),
    ]


if __name__ == "__main__":
    sys.exit(main())
