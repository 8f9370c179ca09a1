"""The converge judge on recorded Swarm updates (tests/payloads/swarm) and edited copies."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from deployer.backends.swarm_types import TaskInfo, UpdateState
from deployer.rollout.converge import Observation, Outcome, judge
from tests.swarm_recordings import Recording, load


def outcomes(recording: Recording, deadline: float = math.inf) -> list[tuple[float, Outcome]]:
    return [
        (seen.at, verdict.outcome)
        for seen, verdict in zip(recording.observations, recording.verdicts(deadline), strict=True)
    ]


def completed_at(recording: Recording) -> float:
    return next(
        seen.at
        for seen in recording.observations
        if seen.service is not None and seen.service.update_state is UpdateState.COMPLETED
    )


def test_clean_start_first_update_succeeds_one_window_after_swarm_completed() -> None:
    recording = load("update_start_first_success")

    at, verdict = recording.first_finished()

    assert verdict.outcome is Outcome.SUCCEEDED
    assert verdict.update_state is UpdateState.COMPLETED
    assert at >= completed_at(recording) + recording.window
    # Before that: pending, including the observation where Swarm already said `completed`.
    assert {outcome for seen_at, outcome in outcomes(recording) if seen_at < at} == {
        Outcome.PENDING
    }
    assert "1/1 tasks run sha256:" in verdict.reason


def test_rollback_after_a_port_bind_failure_is_a_failure_although_the_cli_said_converged() -> None:
    recording = load("cli_port_bind_rolled_back")

    verdict = recording.verdicts()[-1]

    # What `docker service update` said about this very update:
    assert recording.raw["cli"]["returncode"] == 0
    assert recording.raw["cli"]["last_line"].endswith("converged")
    # What the judge says:
    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.ROLLBACK_COMPLETED
    assert verdict.reason.startswith("Swarm rolled the update back")
    assert "early termination of task" in verdict.reason
    [failure] = verdict.failures
    assert failure.error == "exited with status 0 although it should keep running"
    assert failure.task_id in verdict.reason  # Swarm's message names the task at fault


def test_rollback_started_and_still_in_progress_is_already_a_failure() -> None:
    recording = load("update_exits_rolled_back")
    first_rollback = next(
        index
        for index, seen in enumerate(recording.observations)
        if seen.service is not None and seen.service.update_state is UpdateState.ROLLBACK_STARTED
    )

    verdict = judge(
        recording.observations[: first_rollback + 1], recording.target, recording.window, math.inf
    )

    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.ROLLBACK_STARTED
    assert verdict.reason.startswith("Swarm is rolling the update back: update rolled back")
    assert [failure.error for failure in verdict.failures] == ["task: non-zero exit (3)"]


def test_a_paused_update_fails() -> None:
    _at, verdict = load("update_paused").first_finished()

    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.PAUSED
    assert verdict.reason.startswith("Swarm paused the update")
    assert [failure.error for failure in verdict.failures] == ["task: non-zero exit (3)"]


def test_a_paused_rollback_fails_and_says_a_human_is_needed() -> None:
    verdict = load("update_exits_without_healthcheck_rollback_paused").verdicts()[-1]

    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.ROLLBACK_PAUSED
    assert "rollback failed and is paused" in verdict.reason
    assert "by hand" in verdict.reason


def test_without_update_status_the_tasks_decide_once_they_ran_a_whole_window() -> None:
    recording = load("create_no_update_status")
    running_from = next(
        seen.at
        for seen in recording.observations
        if any(task.state == "running" for task in seen.tasks)
    )

    at, verdict = recording.first_finished()

    assert all(
        seen.service and seen.service.update_state is None for seen in recording.observations
    )
    assert verdict.outcome is Outcome.SUCCEEDED
    assert at >= running_from + recording.window
    assert "reports no update status" in verdict.reason


def test_a_task_that_dies_after_swarm_completed_fails_even_once_it_runs_again() -> None:
    recording = load("flap_after_completed")
    died = next(
        seen.at for seen in recording.observations if any(task.failed for task in seen.tasks)
    )

    at, verdict = recording.first_finished()
    last = recording.verdicts()[-1]

    assert at == died
    assert verdict.outcome is Outcome.FAILED
    assert "after Swarm completed the update" in verdict.reason
    assert [failure.error for failure in verdict.failures] == ["task: non-zero exit (137)"]
    # The replacement task runs the target digest again; the flap still counts.
    assert any(task.state == "running" for task in recording.observations[-1].tasks)
    assert last.outcome is Outcome.FAILED


def test_a_new_service_whose_task_crashes_fails_at_the_first_crash() -> None:
    _at, verdict = load("create_crash_loop").first_finished()

    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is None
    assert "stopped by themselves" in verdict.reason
    assert verdict.failures[0].error == "task: non-zero exit (3)"


def test_two_replicas_where_the_second_new_task_cannot_bind_roll_back_and_fail() -> None:
    verdict = load("replicas2_second_task_cannot_bind").verdicts()[-1]

    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.ROLLBACK_COMPLETED
    assert [failure.slot for failure in verdict.failures] == [2]


def test_two_replicas_where_one_new_task_never_starts_fail_at_the_deadline() -> None:
    recording = load("replicas2_start_first_success")
    stuck = [_slot_never_starts(seen, slot=1) for seen in recording.observations]
    deadline = 4.0

    verdicts = [
        judge(stuck[: index + 1], recording.target, recording.window, deadline, recording.since)
        for index in range(len(stuck))
    ]

    assert [verdict.outcome for seen, verdict in zip(stuck, verdicts, strict=True)] == [
        Outcome.FAILED if seen.at >= deadline else Outcome.PENDING for seen in stuck
    ]
    final = verdicts[-1]
    assert final.reason.startswith("did not converge before the deadline; last seen: Swarm")
    assert "1/2 tasks run" in final.reason
    assert "slot 1: pending (no suitable node" in final.reason
    assert [(failure.slot, failure.state) for failure in final.failures] == [(1, "pending")]


def test_two_replicas_start_first_succeed_and_two_tasks_run_throughout() -> None:
    recording = load("replicas2_start_first_success")

    _at, verdict = recording.first_finished()

    assert verdict.outcome is Outcome.SUCCEEDED
    for seen in recording.observations:
        # Start-first: an old task is told to stop only once its replacement runs.
        assert sum(task.state == "running" for task in seen.tasks) >= 2, seen.at


def test_deadline_passing_while_swarm_is_updating_fails_with_the_last_state_seen() -> None:
    recording = load("update_unhealthy_rolled_back")

    at, verdict = recording.first_finished(deadline=3.0)

    assert at == min(seen.at for seen in recording.observations if seen.at >= 3.0)
    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.UPDATING
    assert verdict.reason.startswith(
        "did not converge before the deadline; last seen: Swarm updating (update in progress)"
    )
    assert "slot 1: starting (its HEALTHCHECK has not passed yet)" in verdict.reason
    assert [failure.state for failure in verdict.failures] == ["starting"]


def test_a_rollback_seen_after_the_deadline_says_swarm_rolled_back() -> None:
    recording = load("update_unhealthy_rolled_back")

    verdict = recording.verdicts(deadline=3.0)[-1]

    assert verdict.outcome is Outcome.FAILED
    assert verdict.reason.startswith("Swarm rolled the update back")
    assert verdict.reason.endswith("(seen after the deadline)")
    assert verdict.failures[0].error == "exited with status 0 although it should keep running"


def test_an_unhealthy_release_rolled_back_by_swarm_fails() -> None:
    _at, verdict = load("update_unhealthy_rolled_back").first_finished()

    assert verdict.outcome is Outcome.FAILED
    assert verdict.update_state is UpdateState.ROLLBACK_STARTED


def test_reattaching_counts_the_window_from_the_first_observation_it_makes() -> None:
    recording = load("update_start_first_success")
    completed = completed_at(recording)
    after_crash = [seen for seen in recording.observations if seen.at > completed]

    verdicts = [
        judge(after_crash[: index + 1], recording.target, recording.window, math.inf)
        for index in range(len(after_crash))
    ]

    assert verdicts[0].outcome is Outcome.PENDING
    assert verdicts[-1].outcome is Outcome.SUCCEEDED
    assert after_crash[-1].at - after_crash[0].at >= recording.window


def test_failed_tasks_of_the_target_digest_from_before_since_are_history() -> None:
    recording = load("create_no_update_status")
    old_failure = _failed_copy(recording.observations[-1].tasks[0], days_ago=1)
    observations = [
        replace(seen, tasks=(*seen.tasks, old_failure)) for seen in recording.observations
    ]

    counted = judge(observations, recording.target, recording.window, math.inf, None)
    ignored = judge(observations, recording.target, recording.window, math.inf, recording.since)

    assert counted.outcome is Outcome.FAILED
    assert ignored.outcome is Outcome.SUCCEEDED


def test_a_failure_swarm_tolerated_before_completing_does_not_fail_the_deployment() -> None:
    recording = load("update_start_first_success")
    running = next(task for task in recording.observations[-1].tasks if task.state == "running")
    tolerated = replace(
        _failed_copy(running, days_ago=0),
        created_at=recording.since + timedelta(seconds=0.1),
        state_since=recording.since + timedelta(seconds=0.2),
    )
    observations = [
        replace(seen, tasks=(*seen.tasks, tolerated)) for seen in recording.observations
    ]

    verdict = judge(observations, recording.target, recording.window, math.inf, recording.since)

    assert verdict.outcome is Outcome.SUCCEEDED


def test_a_service_someone_else_moved_to_another_digest_fails() -> None:
    recording = load("update_start_first_success")
    last = recording.observations[-1]
    assert last.service is not None
    moved = replace(last, service=replace(last.service, digest="sha256:" + "e" * 64))

    verdict = judge([*recording.observations[:-1], moved], recording.target, 1.0, math.inf)

    assert verdict.outcome is Outcome.FAILED
    assert "someone else updated it" in verdict.reason


def test_a_removed_service_fails() -> None:
    recording = load("update_start_first_success")
    gone = Observation(recording.observations[-1].at + 1, None, ())

    verdict = judge([*recording.observations, gone], recording.target, 1.0, math.inf)

    assert verdict.outcome is Outcome.FAILED
    assert "no longer exists" in verdict.reason


@pytest.mark.parametrize(
    "scenario",
    [
        "update_start_first_success",
        "create_no_update_status",
        "replicas2_start_first_success",
    ],
)
def test_a_larger_window_delays_success_and_never_turns_it_into_failure(scenario: str) -> None:
    recording = load(scenario)

    verdicts = [
        judge(recording.observations[: index + 1], recording.target, 60.0, math.inf)
        for index in range(len(recording.observations))
    ]

    assert {verdict.outcome for verdict in verdicts} == {Outcome.PENDING}
    assert "up for" in verdicts[-1].reason


def test_no_observation_is_pending() -> None:
    assert judge([], "sha256:" + "0" * 64, 1.0, 0.0).outcome is Outcome.PENDING


def _slot_never_starts(seen: Observation, slot: int) -> Observation:
    """The same moment, except that slot's new task is stuck `pending` (no node fits) and
    Swarm is still `updating`, while its old task keeps running desired."""
    assert seen.service is not None
    target = seen.service.digest
    tasks = []
    for task in seen.tasks:
        if task.slot == slot and task.digest == target:
            task = replace(task, state="pending", message="no suitable node (insufficient cpu)")
        elif task.slot == slot:
            task = replace(task, desired_state="running", state="running")
        tasks.append(task)
    service = replace(seen.service, update_state=UpdateState.UPDATING, update_message="updating")
    return replace(seen, service=service, tasks=tuple(tasks))


def _failed_copy(task: TaskInfo, days_ago: int) -> TaskInfo:
    assert task.created_at is not None
    return replace(
        task,
        id="old" + task.id[3:],
        desired_state="shutdown",
        state="failed",
        error="task: non-zero exit (1)",
        created_at=task.created_at - timedelta(days=days_ago),
        state_since=task.created_at - timedelta(days=days_ago),
    )


def test_old_tasks_of_a_digest_deployed_again_are_not_the_updates_tasks() -> None:
    recording = load("update_start_first_success")
    last = recording.observations[-1]
    assert last.service is not None
    hour = timedelta(hours=1)
    since = max(t.created_at for t in last.tasks if t.created_at is not None) + hour
    # Right after a forced write: no UpdateStatus yet, the old tasks run the target digest.
    service = replace(last.service, update_state=None)
    seen = Observation(0.0, service, last.tasks)

    verdict = judge([seen], recording.target, 0.0, math.inf, since)

    assert verdict.outcome is Outcome.PENDING
