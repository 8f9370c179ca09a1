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
from bench.stats import markdown_table, milliseconds, percentile
from deployer.sandbox import ImageFactory, LocalRegistry, ensure_engine
from deployer.sandbox.engine import SANDBOX_DIR, remove_instance_containers

TRACEFS = Path("/sys/kernel/tracing")
SLOW = 0.005  # issue 11's target for the ack p99
SETTINGS = {
    "trace_clock": "mono",  # CLOCK_MONOTONIC: time.monotonic() in this process
    "options/record-tgid": "1",  # each line names its thread's process
    "set_event": "sched:sched_switch sched:sched_wakeup sched:sched_wakeup_new",
}
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
    """Record scheduler events while the block runs, in a tracefs instance of its own
    (`buffer_kb` per CPU; the system's own trace settings are never touched, and the instance
    goes afterwards). Needs root; mounts tracefs when it is not mounted."""
    if not (TRACEFS / "instances").exists():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
    instance = TRACEFS / "instances" / f"deployer-bench-{os.getpid()}"
    instance.mkdir()
    handle, name = tempfile.mkstemp(prefix="sched-", suffix=".trace")
    os.close(handle)
    done = Recording(Path(name))
    try:
        for setting, value in SETTINGS.items():
            (instance / setting).write_text(value)
        (instance / "buffer_size_kb").write_text(str(buffer_kb))
        (instance / "tracing_on").write_text("1")
        yield done
    finally:
        (instance / "tracing_on").write_text("0")
        done.lost = overrun(instance)
        with (instance / "trace").open() as source, done.path.open("w") as target:
            target.writelines(source)
        (instance / "set_event").write_text("")
        instance.rmdir()


def overrun(instance: Path) -> int:
    """Events lost because a CPU's buffer was full, over every CPU."""
    return sum(
        int(line.split()[1])
        for stats in instance.glob("per_cpu/cpu*/stats")
        for line in stats.read_text().splitlines()
        if line.startswith("overrun:")
    )


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
            offset = time.time() - time.monotonic()  # epoch -> the trace's clock
            scenario = SCENARIOS[0]  # the app answers at once
            results = [
                measure_round(stack, images, scenario, f"v{number}", args.clients, args.load_nice)
                for number in range(2, args.rounds + 2)
                for stack in (deployer, script)
            ]
    try:
        with recorded.path.open() as lines:
            trace = parse(lines)
    finally:
        recorded.path.unlink()
    return report(trace, results, servers, offset, args, recorded.lost)


def during_deployments(
    results: Sequence[RoundResult], stack: str, offset: float
) -> list[tuple[float, float]]:
    """The stack's probe answers sent between a push webhook and that deployment's end:
    (sent, on the monotonic clock: epoch - offset; seconds to answer). Pure."""
    return [
        (sent - offset, seconds)
        for result in results
        if result.stack == stack
        for sent, seconds in result.answered
        if result.sent <= sent <= result.finished_at
    ]


@dataclass
class Tally:
    """One stack's answers during its deployments, and what the slow ones were made of."""

    answers: list[float]  # seconds
    slow: int  # answers slower than SLOW
    slow_time: float  # their seconds, summed
    waited: float  # the server's threads runnable but not running, summed over threads
    cpu: dict[str, float]  # seconds of CPU per group, both CPUs


def tally(trace: Trace, probes: list[tuple[float, float]], server: int) -> Tally:
    """Attribute every slow answer's time span (pure)."""
    group = grouper(trace, {server: "server", os.getpid(): "bench"}, LOW_PRIORITY)
    slow = [(at, seconds) for at, seconds in probes if seconds > SLOW]
    cpu: dict[str, float] = defaultdict(float)
    for at, seconds in slow:
        for name, used in cpu_by_group(trace, at, at + seconds, group).items():
            cpu[name] += used
    return Tally(
        answers=[seconds for _, seconds in probes],
        slow=len(slow),
        slow_time=sum(seconds for _, seconds in slow),
        waited=sum(waiting(trace, at, at + seconds, server) for at, seconds in slow),
        cpu=cpu,
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def tables(tallies: dict[str, Tally]) -> list[str]:
    """The per-stack table, then CPU time per group during the slow answers."""
    head = [
        "stack",
        "answers during deployments",
        f"> {SLOW * 1000:g} ms",
        "p99",
        "time in slow answers (ms)",
        "server threads waiting for a CPU (ms)",
        "server threads running (ms)",
    ]
    rows = [
        [
            stack,
            str(len(item.answers)),
            str(item.slow),
            milliseconds(percentile(item.answers, 0.99)),
            ms(item.slow_time),
            ms(item.waited),
            ms(item.cpu.get("server", 0.0)),
        ]
        for stack, item in tallies.items()
    ]
    cpu_rows = [
        [stack, *[ms(item.cpu.get(name, 0.0)) for name in GROUPS]]
        for stack, item in tallies.items()
    ]
    return [
        *markdown_table(head, rows),
        "",
        "CPU time (ms, both CPUs) of each group during the slow answers: `server` is the "
        "stack's webhook server process (deployer, all its threads, its deployment work among "
        "them; or the Go `webhook`, whose deployment work runs in child processes: `other`), "
        f"`bench` the prober and the round's bookkeeping, `{LOW_PRIORITY}` the load's "
        "clients, `app` the busybox containers, `runc` includes runc init, `other` the rest "
        "(the script's shell and `docker` CLI among them)",
        "",
        *markdown_table(["stack (slow answers)", *GROUPS], cpu_rows),
    ]


def report(
    trace: Trace,
    results: Sequence[RoundResult],
    servers: dict[str, int],
    offset: float,
    args: argparse.Namespace,
    lost: int = 0,
) -> str:
    """The Markdown report: per stack, its slow answers and where the CPUs were meanwhile."""
    tallies = {
        stack: tally(trace, during_deployments(results, stack, offset), server)
        for stack, server in servers.items()
    }
    partial = " (the attribution of the earliest rounds is partial)" if lost else ""
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
            "meanwhile (ftrace, in a tracefs instance of its own), and each answer slower than "
            f"{SLOW * 1000:g} ms sent between the push webhook and the deployment's end is "
            "looked at over its own time span",
            f"- events lost to full trace buffers: {lost}{partial}",
            "- `waiting for a CPU`: summed over the server's threads (several can wait at once, "
            "so it can exceed the time in slow answers), the time each was woken (or "
            "preempted) and not yet running; `running`: the CPU time they got",
            "",
            *tables(tallies),
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
