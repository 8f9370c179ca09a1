"""The converge watcher, replaying recorded Swarm updates through a fake engine and clock."""

from __future__ import annotations

import threading

import pytest

from deployer.backends.swarm_types import ServiceState, TaskInfo, UpdateState
from deployer.errors import DeploymentCancelled, ServiceError
from deployer.rollout.converge import Outcome
from deployer.rollout.swarm_watch import Watch, watch
from tests.swarm_recordings import Recording, load


class ReplayedSwarm:
    """A SwarmEngine that answers with a recording, one observation per service() call; its
    clock is the recording's. After the last observation time moves on, the state does not."""

    def __init__(self, recording: Recording, logs: dict[str, str] | None = None) -> None:
        self.recording = recording
        self.logs = logs or {}
        self.index = -1
        self.now = 0.0
        self.logs_asked: list[str] = []

    def clock(self) -> float:
        return self.now

    def service(self, name: str) -> ServiceState | None:
        observations = self.recording.observations
        if self.index + 1 < len(observations):
            self.index += 1
            self.now = observations[self.index].at
        else:
            self.now += 1.0
        return observations[self.index].service

    def tasks(self, service: str) -> list[TaskInfo]:
        return list(self.recording.observations[self.index].tasks)

    def task_logs(self, task: TaskInfo, tail: int = 20) -> str:
        self.logs_asked.append(task.id)
        return self.logs.get(task.id, "(no output)")


def make_watch(recording: Recording, **overrides: float) -> Watch:
    values = {"window": recording.window, "timeout": 60.0, "interval": 0.0, **overrides}
    return Watch(
        service="web",
        target=recording.target,
        since=recording.since,
        window=values["window"],
        timeout=values["timeout"],
        interval=values["interval"],
        settle=values.get("settle", 0.0),
    )


def test_a_successful_update_is_watched_until_it_stayed_up_a_whole_window() -> None:
    recording = load("update_start_first_success")
    engine = ReplayedSwarm(recording)

    result = watch(engine, make_watch(recording), clock=engine.clock)

    decided_at, _ = recording.first_finished()
    assert result.succeeded
    assert result.logs == ()
    assert engine.now == decided_at  # it stopped at the first observation that decided
    assert result.observations == engine.index + 1
    assert result.seconds == decided_at


def test_a_rollback_is_reported_with_the_failed_tasks_last_log_lines() -> None:
    recording = load("update_exits_rolled_back")
    failed = next(task for task in recording.observations[-1].tasks if task.failed)
    engine = ReplayedSwarm(recording, {failed.id: "fatal: cannot read /etc/app.conf"})

    result = watch(engine, make_watch(recording), clock=engine.clock)

    assert result.verdict.outcome is Outcome.FAILED
    assert result.verdict.update_state is UpdateState.ROLLBACK_STARTED
    assert engine.logs_asked == [failed.id]
    described = result.describe().splitlines()
    assert described[0].startswith("Swarm is rolling the update back")
    assert described[1:] == [
        f"task {failed.short_id} (slot 1, node {failed.node}): task: non-zero exit (3)",
        "last log lines:",
        "fatal: cannot read /etc/app.conf",
    ]


def test_with_settle_the_watcher_waits_for_the_rollback_to_end() -> None:
    recording = load("update_exits_rolled_back")
    engine = ReplayedSwarm(recording)

    result = watch(engine, make_watch(recording, settle=10.0), clock=engine.clock)

    assert result.verdict.outcome is Outcome.FAILED
    assert result.verdict.update_state is UpdateState.ROLLBACK_COMPLETED
    assert result.verdict.reason.startswith("Swarm rolled the update back")


def test_settling_is_bounded_when_the_rollback_never_ends() -> None:
    recording = load("update_exits_rolled_back")
    first_rollback = next(
        index
        for index, seen in enumerate(recording.observations)
        if seen.service is not None and seen.service.update_state is UpdateState.ROLLBACK_STARTED
    )
    stuck = Recording(
        recording.scenario,
        recording.target,
        recording.window,
        recording.since,
        recording.observations[: first_rollback + 1],
        recording.raw,
    )
    engine = ReplayedSwarm(stuck)

    result = watch(engine, make_watch(stuck, settle=3.0), clock=engine.clock)

    assert result.verdict.update_state is UpdateState.ROLLBACK_STARTED
    assert 3.0 <= result.seconds - stuck.observations[-1].at <= 4.0


def test_the_deadline_ends_a_watch_that_would_wait_forever() -> None:
    recording = load("update_unhealthy_rolled_back")
    engine = ReplayedSwarm(recording)

    result = watch(engine, make_watch(recording, timeout=2.0), clock=engine.clock)

    assert result.verdict.outcome is Outcome.FAILED
    assert result.verdict.reason.startswith("did not converge before the deadline")


def test_deployer_stopping_ends_the_watch_and_says_swarm_carries_on() -> None:
    recording = load("update_start_first_success")
    engine = ReplayedSwarm(recording)
    stopping = threading.Event()
    stopping.set()

    with pytest.raises(DeploymentCancelled, match="Swarm carries on without deployer"):
        watch(engine, make_watch(recording), stopping, clock=engine.clock)


class FlakySwarm(ReplayedSwarm):
    """A replayed engine whose reads fail `failures` times first (a manager election)."""

    def __init__(self, recording: Recording, failures: int) -> None:
        super().__init__(recording)
        self.failures = failures

    def service(self, name: str) -> ServiceState | None:
        if self.failures > 0:
            self.failures -= 1
            self.now += 0.5
            raise ServiceError(name, f"cannot read Swarm service {name}: rpc error: no leader")
        return super().service(name)


def test_reads_that_fail_for_a_while_do_not_end_the_watch() -> None:
    recording = load("update_start_first_success")
    engine = FlakySwarm(recording, failures=3)

    result = watch(engine, make_watch(recording), clock=engine.clock)

    assert result.succeeded
    assert engine.failures == 0


def test_reads_that_still_fail_at_the_deadline_are_an_error() -> None:
    recording = load("update_start_first_success")
    engine = FlakySwarm(recording, failures=100)

    with pytest.raises(ServiceError, match=r"no leader; still failing at the deadline \(5 s\)"):
        watch(engine, make_watch(recording, timeout=5.0), clock=engine.clock)
