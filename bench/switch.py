"""Benchmark: deployer's v(N) -> v(N+1) switch under steady load through nginx, step by step.

Runs `deployer serve` as a process against the real engine, a local registry and a private
nginx (all on 127.0.0.1), deploys v1, then for each round pushes the next version (the local copy
removed, so the pull is a real pull), sends a Docker Hub webhook and measures (bench/rounds.py):
requests answered OK and failed through nginx, the time from the webhook to the first answer of
the new version, and each step's duration as recorded by deployer. For deployer beside its
peers and the machine's floor, see bench/peers.py.

Prints a Markdown report; `--write PATH` also saves it.
    .venv/bin/python -m bench.switch --rounds 5 --write /tmp/switch.md
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench.deployer_stack import DeployerStack
from bench.machine import machine
from bench.peers_report import DEPLOYER_STEPS
from bench.rounds import TAIL, WARMUP, RoundResult, Scenario, measure_round, set_up
from bench.stats import markdown_table, median, seconds
from deployer.sandbox import AppBehaviour, ImageFactory, LocalRegistry, ensure_engine
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers


def report(rounds: list[RoundResult], args: argparse.Namespace) -> str:
    """The Markdown report: one row per switch, then the totals."""
    head = ["switch", "state", *DEPLOYER_STEPS, "webhook->served", "finished", "OK", "failed"]
    rows = [
        [
            f"v{int(item.version[1:]) - 1}->{item.version}",
            item.state,
            *[seconds(item.details.get(step), 3) for step in DEPLOYER_STEPS],
            seconds(item.served),
            seconds(item.finished),
            str(item.ok),
            str(item.failed),
        ]
        for item in rounds
    ]
    errors = sorted({error for item in rounds for error in item.errors})
    lines = [
        "# Benchmark: switch under load through nginx",
        "",
        *machine(),
        f"- command: `.venv/bin/python -m bench.switch --rounds {args.rounds} "
        f"--clients {args.clients} --coalesce {args.coalesce:g} --drain {args.drain:g}`",
        f"- load: {args.clients} client threads, one fresh connection per GET /version through "
        f"nginx, from {WARMUP:g} s before the webhook until {TAIL:g} s after the deployment "
        "finished (drain and retire included)",
        "- times in seconds; `queued` is the coalesce window; `webhook->served` is the first "
        "answer of the new version through nginx",
        "",
        *markdown_table(head, rows),
        "",
        f"**{sum(item.ok for item in rounds)} requests OK, "
        f"{sum(item.failed for item in rounds)} failed** over {len(rounds)} switches"
        + (f" (errors: {', '.join(errors)})" if errors else "")
        + f"; webhook -> new version served: median {seconds(median([r.served for r in rounds]))}"
        f" s, of which queued {seconds(median([r.details.get('queued') for r in rounds]))} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5, help="switches to measure (default 5)")
    parser.add_argument("--clients", type=int, default=4, help="load threads (default 4)")
    parser.add_argument("--coalesce", type=float, default=2.0, help="queue.coalesce (default 2)")
    parser.add_argument("--drain", type=float, default=2.0, help="services.web.drain (default 2)")
    parser.add_argument("--write", metavar="PATH", help="also write the report to PATH")
    args = parser.parse_args()
    ensure_engine(SANDBOX_DIR / "dockerd.log")
    with tempfile.TemporaryDirectory(prefix="deployer-bench-") as scratch:
        text = report(bench(Path(scratch), args), args)
    sys.stdout.write(text)
    if args.write:
        Path(args.write).write_text(text)
    return 0


def bench(scratch: Path, args: argparse.Namespace) -> list[RoundResult]:
    instance = f"bench-switch-{secrets.token_hex(3)}"
    overrides = {"coalesce": args.coalesce, "drain": args.drain}
    scenario = Scenario("switch", AppBehaviour.SERVE)
    with LocalRegistry(scratch / "registry") as registry, ExitStack() as cleanup:
        cleanup.callback(remove_instance_containers, instance)
        images = ImageFactory(registry.address, "bench", scratch / "build")
        stack = DeployerStack(scratch, images, instance, overrides, app="web")
        cleanup.callback(stack.stop)
        stack.start()
        set_up(stack, images, "v1")
        return [
            measure_round(stack, images, scenario, f"v{number}", args.clients)
            for number in range(2, args.rounds + 2)
        ]


if __name__ == "__main__":
    sys.exit(main())
