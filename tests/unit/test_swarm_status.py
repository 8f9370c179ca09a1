"""What the status surfaces show for a Swarm service, from recorded engine states."""

from __future__ import annotations

from deployer.backends.swarm_types import UpdateState
from deployer.rollout.swarm_status import make_status
from tests.swarm_recordings import load


def test_status_counts_running_replicas_on_the_spec_digest_and_shows_lingering_tasks() -> None:
    recording = load("update_start_first_success")
    completed = next(
        seen
        for seen in recording.observations
        if seen.service and seen.service.update_state is UpdateState.COMPLETED
    )
    assert completed.service is not None

    status = make_status(completed.service, completed.tasks)

    assert (status.replicas_desired, status.replicas_running) == (1, 1)
    assert status.update_state == "completed"
    assert status.digest == recording.target
    # The old task was told to stop but still runs (and answers on its port): shown.
    assert [(task.desired_state, task.state, task.digest) for task in status.tasks] == [
        ("shutdown", "running", completed.service.previous_digest),
        ("running", "running", recording.target),
    ]


def test_status_leaves_out_task_history() -> None:
    recording = load("update_exits_rolled_back")
    last = recording.observations[-1]
    assert last.service is not None

    status = make_status(last.service, last.tasks)

    assert len(last.tasks) > len(status.tasks)
    assert [(task.state, task.digest) for task in status.tasks] == [
        ("running", last.service.digest)
    ]
    assert status.update_state == "rollback_completed"


def test_status_mid_update_of_two_replicas() -> None:
    recording = load("replicas2_second_task_cannot_bind")
    seen = next(
        seen
        for seen in recording.observations
        if seen.service and seen.service.update_state is UpdateState.ROLLBACK_STARTED
    )
    assert seen.service is not None

    status = make_status(seen.service, seen.tasks)

    assert status.replicas_desired == 2
    assert status.replicas_running == sum(
        task.desired_state == "running" and task.state == "running" and task.digest == status.digest
        for task in status.tasks
    )
    assert {task.slot for task in status.tasks} == {1, 2}
    assert all(task.node for task in status.tasks)
