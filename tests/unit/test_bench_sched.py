"""bench/sched.py: scheduler events read into run and wait intervals, attributed to groups."""

from __future__ import annotations

import pytest

from bench.rounds import RoundResult
from bench.sched import cpu_by_group, grouper, parse, waiting


def switch(cpu: int, at: str, prev: tuple[str, int, int, str], nxt: tuple[str, int, int]) -> str:
    """A sched_switch line as ftrace prints it with record-tgid (`prev` is the current task)."""
    comm, tid, tgid, state = prev
    owner = "-------" if tgid < 0 else f"{tgid:7d}"
    return (
        f"{comm}-{tid} ({owner}) [{cpu:03d}] d..2. {at}: sched_switch: prev_comm={comm} "
        f"prev_pid={tid} prev_prio=120 prev_state={state} ==> next_comm={nxt[0]} "
        f"next_pid={nxt[1]} next_prio={nxt[2]}"
    )


def wakeup(cpu: int, at: str, waker: tuple[str, int, int], woken: tuple[str, int]) -> str:
    return (
        f"{waker[0]}-{waker[1]} ({waker[2]:7d}) [{cpu:03d}] dNs5. {at}: sched_wakeup: "
        f"comm={woken[0]} pid={woken[1]} prio=120 target_cpu={cpu:03d}"
    )


# cpu 0: dockerd runs 0-6 ms. cpu 1: nginx 0-4 ms, the server's thread 11 (woken at 1 ms,
# waiting 3 ms for the CPU) 4-5 ms, nginx again (preempted at 4 ms: runnable, waiting 1 ms).
TRACE = [
    "# tracer: nop",
    switch(0, "100.000000", ("swapper/0", 0, -1, "R"), ("dockerd", 50, 120)),
    switch(1, "100.000000", ("python", 11, 10, "S"), ("nginx", 70, 120)),
    wakeup(0, "100.001000", ("dockerd", 50, 50), ("python", 11)),
    switch(1, "100.004000", ("nginx", 70, 70, "R+"), ("python", 11, 120)),
    switch(1, "100.005000", ("python", 11, 10, "S"), ("nginx", 70, 120)),
    switch(0, "100.006000", ("dockerd", 50, 50, "S"), ("swapper/0", 0, 120)),
    switch(1, "100.006000", ("nginx", 70, 70, "S"), ("swapper/1", 0, 120)),
    "python-11 (     10) [001] d..2. 100.007000: sched_waking: comm=x pid=9 prio=120",
]


def microseconds(spans: list[tuple[float, float, int]]) -> list[tuple[int, int, int]]:
    return sorted((round(start * 1e6), round(end * 1e6), tid) for start, end, tid in spans)


def test_runs_and_waits_are_read_from_switches_and_wakeups() -> None:
    trace = parse(TRACE)

    assert microseconds(trace.runs) == [
        (100_000_000, 100_004_000, 70),
        (100_000_000, 100_006_000, 50),
        (100_004_000, 100_005_000, 11),
        (100_005_000, 100_006_000, 70),
    ]
    assert microseconds(trace.waits) == [
        (100_001_000, 100_004_000, 11),
        (100_004_000, 100_005_000, 70),
    ]
    assert trace.tgid[11] == 10
    assert 0 not in trace.tgid  # the idle task's tgid prints as dashes


def test_a_window_is_attributed_to_groups_and_the_servers_wait_is_summed() -> None:
    trace = parse(TRACE)
    group = grouper(trace, {10: "server"}, "low")

    used = cpu_by_group(trace, 100.000, 100.006, group)

    assert dict(used) == pytest.approx({"dockerd": 0.006, "nginx": 0.005, "server": 0.001})
    assert waiting(trace, 100.000, 100.006, 10) == pytest.approx(0.003)
    assert waiting(trace, 100.002, 100.003, 10) == pytest.approx(0.001)  # only the overlap
    assert waiting(trace, 100.000, 100.006, 70) == pytest.approx(0.001)


def test_groups_by_process_then_by_name_then_by_priority() -> None:
    trace = parse(TRACE)
    trace.comm.update({1: "exe", 2: "containerd-shim-runc-v2", 3: "python", 4: "kworker/1:1H"})
    trace.comm.update({5: "busybox", 6: "sh", 7: "runc:[2:INIT]"})
    trace.prio[3] = 139  # nice 19
    group = grouper(trace, {10: "server"}, "low")

    assert [group(tid) for tid in (0, 11, 50, 70, 1, 2, 3, 4, 5, 6, 7)] == [
        "idle",
        "server",
        "dockerd",
        "nginx",
        "runc",
        "containerd",
        "low",
        "kernel",
        "app",
        "other",
        "runc",
    ]


def test_a_wakeup_while_running_is_no_wait_and_a_sleep_ends_one() -> None:
    # thread 11 runs from 0; woken while still running at 1 ms (between deciding to sleep and
    # sleeping); sleeps at 2 ms; woken at 500 ms, on the CPU 10 us later: one 10 us wait
    lines = [
        switch(1, "100.000000", ("swapper/1", 0, -1, "R"), ("python", 11, 120)),
        wakeup(0, "100.001000", ("dockerd", 50, 50), ("python", 11)),
        switch(1, "100.002000", ("python", 11, 10, "S"), ("swapper/1", 0, 120)),
        wakeup(0, "100.500000", ("dockerd", 50, 50), ("python", 11)),
        switch(1, "100.500010", ("swapper/1", 0, -1, "R"), ("python", 11, 120)),
    ]

    trace = parse(lines)

    assert microseconds(trace.waits) == [(100_500_000, 100_500_010, 11)]
    assert waiting(trace, 100.4, 100.6, 10) == pytest.approx(0.00001)


def test_a_new_thread_waits_from_its_first_wakeup_and_lines_without_flags_are_read() -> None:
    new = wakeup(0, "100.001000", ("python", 11, 10), ("python", 12)).replace(
        "sched_wakeup:", "sched_wakeup_new:"
    )
    no_flags = switch(1, "100.003000", ("nginx", 70, 70, "S"), ("python", 12, 120)).replace(
        " d..2.", ""
    )

    trace = parse([new, no_flags])

    assert microseconds(trace.waits) == [(100_001_000, 100_003_000, 12)]


def test_a_trace_without_a_switch_read_is_an_error() -> None:
    with pytest.raises(ValueError, match="no sched_switch line read"):
        parse(["# tracer: nop", "garbage"])


def round_result(
    stack: str, sent: float, finished_at: float, answered: list[tuple[float, float]]
) -> RoundResult:
    return RoundResult(
        stack=stack,
        scenario="s",
        version="v2",
        state="succeeded",
        ack=0.001,
        served=0.3,
        only_new=0.4,
        finished=finished_at - sent,
        ok=1,
        failed=0,
        errors=[],
        probes=[],
        idle_probes=[],
        probe_failures=0,
        details={},
        sent=sent,
        finished_at=finished_at,
        answered=answered,
    )


def test_the_answers_looked_at_are_the_stacks_own_during_its_deployments_on_the_trace_clock() -> (
    None
):
    from bench.ack_trace import during_deployments, tally

    results = [
        round_result("deployer", 1000.0, 1000.5, [(999.9, 0.001), (1000.1, 0.008), (1000.6, 0.02)]),
        round_result("script", 1001.0, 1001.5, [(1001.2, 0.009)]),
    ]
    # epoch 1000.1 is 100.001 on the trace's monotonic clock when the offset is 900.099
    probes = during_deployments(results, "deployer", offset=900.099)

    assert [(round(at, 6), seconds) for at, seconds in probes] == [(100.001, 0.008)]
    counted = tally(parse(TRACE), probes, server=10)
    assert (len(counted.answers), counted.slow) == (1, 1)
    assert counted.slow_time == pytest.approx(0.008)
    # 100.001-100.009: thread 11 of process 10 waited from 100.001 to 100.004
    assert counted.waited == pytest.approx(0.003)
    assert counted.cpu == pytest.approx({"dockerd": 0.005, "nginx": 0.004, "server": 0.001})
