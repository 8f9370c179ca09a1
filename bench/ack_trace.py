"""Benchmark: why a webhook answer is slow during a deployment, from the kernel's scheduler.

Runs deployer and the `webhook` + script peer (bench/peers.py's stacks, same load and probes)
in interleaved rounds with the kernel recording every context switch and wakeup (ftrace
`sched:sched_switch`, `sched:sched_wakeup`, through tracefs: root). For each stack it reports
the probes answered during its deployments, how many took more than 5 ms, and for those slow
windows: how long the stack's own server threads were runnable but waiting for a CPU, and which
processes had the CPUs meanwhile (the stack's server, the bench's prober, the load's clients at
nice 19, nginx, the app, dockerd, containerd, runc, the kernel, idle).

Prints a Markdown report; `--write PATH` also saves it (about 2 minutes):
    .venv/bin/python -m bench.ack_trace --rounds 8 --write bench/ACK_TRACE.md
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.deployer_stack import DeployerStack
from bench.hook_stacks import HookStack, script_plan
from bench.machine import machine
from bench.peers import SCENARIOS
from bench.rounds import RoundResult, measure_round, set_up
from bench.sched import Trace, cpu_by_group, grouper, parse, waiting
from bench.stats import markdown_table, percentile
from deployer.sandbox import ImageFactory, LocalRegistry, ensure_engine
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers

TRACEFS = Path("/sys/kernel/tracing")
SLOW = 0.005  # issue 11's target for the ack p99
EVENTS = "sched:sched_switch sched:sched_wakeup"
LOW_PRIORITY = "load (nice 19)"
GROUPS = [
    "server",
    "bench",
    LOW_PRIORITY,
    "nginx",
    "app",
    "dockerd",
    "containerd",
    "runc",
    "kernel",
    "other",
    "idle",
]


@dataclass
class Recording:
    """Where the trace is copied once recording ends, and how many events the buffers lost."""

    path: Path
    lost: int = 0


@contextmanager
def recording(buffer_kb: int = 262144) -> Iterator[Recording]:
    """Record scheduler events while the block runs (`buffer_kb` per CPU). Needs root; mounts
    tracefs when it is not mounted."""
    if not (TRACEFS / "trace").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
    saved = {name: (TRACEFS / name).read_text() for name in ("trace_clock", "buffer_size_kb")}
    settings = {
        "tracing_on": "0",
        "trace_clock": "mono",  # CLOCK_MONOTONIC: time.monotonic() in this process
        "buffer_size_kb": str(buffer_kb),
        "options/record-tgid": "1",
        "trace": "",
        "set_event": EVENTS,
    }
    for name, value in settings.items():
        (TRACEFS / name).write_text(value)
    done = Recording(Path(tempfile.mkstemp(prefix="sched-", suffix=".trace")[1]))
    try:
        (TRACEFS / "tracing_on").write_text("1")
        yield done
    finally:
        (TRACEFS / "tracing_on").write_text("0")
        done.lost = overrun()
        with (TRACEFS / "trace").open() as source, done.path.open("w") as target:
            target.writelines(source)
        (TRACEFS / "set_event").write_text("")
        (TRACEFS / "trace_clock").write_text(_selected(saved["trace_clock"]))
        (TRACEFS / "buffer_size_kb").write_text(saved["buffer_size_kb"].split()[0])


def overrun() -> int:
    """Events lost because a CPU's buffer was full, over every CPU."""
    return sum(
        int(line.split()[1])
        for stats in TRACEFS.glob("per_cpu/cpu*/stats")
        for line in stats.read_text().splitlines()
        if line.startswith("overrun:")
    )


def _selected(choices: str) -> str:
    """The bracketed choice of a tracefs list such as `[local] global mono`."""
    return next((word[1:-1] for word in choices.split() if word.startswith("[")), "local")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds per stack (default 8)")
    parser.add_argument("--clients", type=int, default=4, help="load threads (default 4)")
    parser.add_argument("--load-nice", type=int, default=19, help="the load's niceness")
    parser.add_argument("--write", metavar="PATH", help="also write the report to PATH")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.stderr.write("bench.ack_trace reads the kernel's scheduler events: run it as root\n")
        return 2
    ensure_engine(SANDBOX_DIR / "dockerd.log")
    with tempfile.TemporaryDirectory(prefix="deployer-ack-trace-") as scratch:
        text = run(Path(scratch), args)
    sys.stdout.write(text)
    if args.write:
        Path(args.write).write_text(text)
    return 0


def run(scratch: Path, args: argparse.Namespace) -> str:
    instance = f"bench-ack-{secrets.token_hex(3)}"
    with LocalRegistry(scratch / "registry") as registry, ExitStack() as cleanup:
        cleanup.callback(remove_instance_containers, instance)
        images = ImageFactory(registry.address, "bench", scratch / "build")
        deployer = DeployerStack(scratch, images, instance)
        script = HookStack(script_plan(images, instance), scratch / "script")
        servers: dict[str, int] = {}
        for stack in (deployer, script):
            cleanup.callback(stack.stop)
            stack.start()
            set_up(stack, images, "v1")
            pid = stack.server.pid
            assert pid is not None  # started
            servers[stack.name] = pid
        with recording() as recorded:
            offset = _epoch_minus_monotonic()
            scenario = SCENARIOS[0]  # the app answers at once
            results = [
                measure_round(stack, images, scenario, f"v{number}", args.clients, args.load_nice)
                for number in range(2, args.rounds + 2)
                for stack in (deployer, script)
            ]
    with recorded.path.open() as lines:
        trace = parse(lines)
    recorded.path.unlink()
    return report(trace, results, servers, offset, args, recorded.lost)


def _epoch_minus_monotonic() -> float:
    return time.time() - time.monotonic()


def report(
    trace: Trace,
    results: Sequence[RoundResult],
    servers: dict[str, int],
    offset: float,
    args: argparse.Namespace,
    lost: int = 0,
) -> str:
    """The Markdown report: per stack, its slow answers and where the CPUs were meanwhile."""
    rows: list[list[str]] = []
    totals: dict[str, dict[str, float]] = {}
    for stack, server in servers.items():
        group = grouper(trace, {server: "server", os.getpid(): "bench"}, LOW_PRIORITY)
        probes = [
            (sent - offset, seconds)
            for result in results
            if result.stack == stack
            for sent, seconds in result.answered
            if result.sent <= sent <= result.finished_at
        ]
        slow = [(at, seconds) for at, seconds in probes if seconds > SLOW]
        used: dict[str, float] = defaultdict(float)
        waited = 0.0
        for at, seconds in slow:
            for name, cpu in cpu_by_group(trace, at, at + seconds, group).items():
                used[name] += cpu
            waited += waiting(trace, at, at + seconds, server)
        span = sum(seconds for _, seconds in slow)
        latencies = [seconds for _, seconds in probes]
        rows.append(
            [
                stack,
                str(len(probes)),
                str(len(slow)),
                f"{percentile(latencies, 0.99) * 1000:.1f} ms" if latencies else "-",
                f"{span * 1000:.0f} ms",
                f"{waited * 1000:.0f} ms",
                f"{used['server'] * 1000:.0f} ms",
            ]
        )
        totals[stack] = used
    head = [
        "stack",
        "answers during deployments",
        f"> {SLOW * 1000:g} ms",
        "p99",
        "time in slow answers",
        "server threads runnable, waiting for a CPU",
        "server threads running",
    ]
    cpu_head = ["stack (slow answers)", *GROUPS]
    cpu_rows = [
        [stack, *[f"{totals[stack][name] * 1000:.0f}" for name in GROUPS]] for stack in servers
    ]
    return "\n".join(
        [
            "# Benchmark: where the CPUs were while a webhook answer was slow",
            "",
            *machine(),
            f"- command: `.venv/bin/python -m bench.ack_trace --rounds {args.rounds} "
            f"--clients {args.clients} --load-nice {args.load_nice}` (as root)",
            "- deployer (default config) and the `webhook` + pull/stop/rm/run script, interleaved,"
            " each round as in bench/peers.py (app answers at once, the load through nginx, a "
            "probe webhook every 20 ms); the kernel records every context switch and wakeup "
            "meanwhile (ftrace), and each answer slower than "
            f"{SLOW * 1000:g} ms sent between the push webhook and the deployment's end is "
            "looked at over its own time span",
            f"- events lost to full trace buffers: {lost}"
            + (" (the attribution of the earliest rounds is partial)" if lost else ""),
            "- `waiting for a CPU`: summed over the server's threads, the time they were woken "
            "(or preempted) and not yet running; `running`: the CPU time they got",
            "",
            *markdown_table(head, rows),
            "",
            "CPU time (ms, both CPUs) of each group during the slow answers: `server` is the "
            "stack's webhook server (deployer, or the Go `webhook`), `bench` the prober and the "
            f"round's bookkeeping, `{LOW_PRIORITY}` the load's clients, `app` the busybox "
            "containers, `runc` includes runc init (`exe`), `other` the rest (the script's "
            "`docker` CLI among them)",
            "",
            *markdown_table(cpu_head, cpu_rows),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
