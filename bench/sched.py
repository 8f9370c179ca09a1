"""Where the CPUs were while a webhook answer was slow: the kernel's scheduler events, read.

Pure: parses ftrace's text output of `sched:sched_switch` and `sched:sched_wakeup` (with the
`record-tgid` option, `trace_clock` mono) and attributes the CPU time of a time window to
process groups, and the time the server's threads spent runnable but not running (waiting for a
CPU) inside it. bench/ack_trace.py records the trace around real deployments.

A line looks like::

    python-4640 (   4597) [001] d..2. 27356.088045: sched_switch: prev_comm=python
        prev_pid=4640 prev_prio=120 prev_state=S ==> next_comm=nginx next_pid=812 next_prio=120
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

_LINE = re.compile(
    r"^\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\(\s*(?P<tgid>[-\d]+)\)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?"
    r"(?P<ts>\d+\.\d+): (?P<event>sched_switch|sched_wakeup|sched_wakeup_new): (?P<fields>.*)$"
)
_FIELD = re.compile(r"(\w+)=(\S+)")
IDLE = 0
ENGINE_COMMS = {"dockerd": "dockerd", "containerd": "containerd", "exe": "runc"}


@dataclass
class Trace:
    """Run intervals per CPU and runnable-but-waiting intervals per thread."""

    runs: list[tuple[float, float, int]] = field(default_factory=list)  # start, end, tid
    waits: list[tuple[float, float, int]] = field(default_factory=list)  # woken, ran, tid
    tgid: dict[int, int] = field(default_factory=dict)
    comm: dict[int, str] = field(default_factory=dict)
    prio: dict[int, int] = field(default_factory=dict)


def parse(lines: Iterable[str]) -> Trace:
    """Read ftrace lines; other events are skipped. ValueError when no line was a switch (the
    trace is empty, or printed in a format this does not read: record-tgid off, say).

    A thread is waiting for a CPU from its wakeup (or from being preempted while runnable)
    until it is switched in; a wakeup of a thread that is running (woken between deciding to
    sleep and sleeping: the kernel traces it) does not count, and a thread switched out asleep
    is no longer waiting."""
    trace = Trace()
    running: dict[int, tuple[int, float]] = {}  # cpu -> (tid, since)
    runnable: dict[int, float] = {}  # tid -> since (woken, or preempted while runnable)
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        tid, cpu, at = int(match["pid"]), int(match["cpu"]), float(match["ts"])
        if match["tgid"].strip("-"):
            trace.tgid[tid] = int(match["tgid"])
        trace.comm.setdefault(tid, match["comm"])
        fields = dict(_FIELD.findall(match["fields"]))
        if match["event"] != "sched_switch":
            woken = int(fields["pid"])
            if all(woken != current for current, _ in running.values()):
                runnable.setdefault(woken, at)
            continue
        previous, following = int(fields["prev_pid"]), int(fields["next_pid"])
        trace.comm[previous], trace.comm[following] = fields["prev_comm"], fields["next_comm"]
        trace.prio[following] = int(fields["next_prio"])
        if cpu in running:
            trace.runs.append((running[cpu][1], at, running[cpu][0]))
        running[cpu] = (following, at)
        if following in runnable:
            trace.waits.append((runnable.pop(following), at, following))
        if fields["prev_state"].startswith("R") and previous != IDLE:
            runnable[previous] = at  # preempted: waits for a CPU from now
        else:
            runnable.pop(previous, None)
    if not trace.runs and not running:
        raise ValueError("no sched_switch line read: is record-tgid on and the trace not empty?")
    return trace


def overlap(start: float, end: float, first: float, last: float) -> float:
    """Seconds of [start, end] inside [first, last]."""
    return max(0.0, min(end, last) - max(start, first))


def cpu_by_group(
    trace: Trace, first: float, last: float, group: Callable[[int], str]
) -> dict[str, float]:
    """Seconds of CPU each group ran inside [first, last], over every CPU."""
    used: dict[str, float] = defaultdict(float)
    for start, end, tid in trace.runs:
        seconds = overlap(start, end, first, last)
        if seconds > 0:
            used[group(tid)] += seconds
    return used


def waiting(trace: Trace, first: float, last: float, process: int) -> float:
    """Seconds the threads of `process` spent runnable but not running inside [first, last],
    summed over its threads."""
    return sum(
        overlap(woken, ran, first, last)
        for woken, ran, tid in trace.waits
        if trace.tgid.get(tid) == process
    )


def grouper(trace: Trace, named: dict[int, str], low_priority: str) -> Callable[[int], str]:
    """Names a thread's group: a process in `named` (by tgid), else idle, the engine's parts,
    nginx, the app (busybox), kernel threads, `low_priority` for a niced process (priority
    above 130: nice 11 and up), else `other`."""

    def group(tid: int) -> str:
        if tid == IDLE:
            return "idle"
        process = trace.tgid.get(tid, tid)
        if process in named:
            return named[process]
        comm = trace.comm.get(tid, "")
        if comm in ENGINE_COMMS:
            return ENGINE_COMMS[comm]
        if comm.startswith(("containerd-shim", "runc")):  # runc:[2:INIT] and its kin
            return "containerd" if comm.startswith("containerd") else "runc"
        if comm.startswith("nginx"):
            return "nginx"
        if comm in ("busybox", "httpd"):
            return "app"
        if comm.startswith(("kworker", "ksoftirqd", "rcu_", "migration", "kdamond")):
            return "kernel"
        if trace.prio.get(tid, 120) > 130:
            return low_priority
        return "other"

    return group
