"""Port rotation for host-networked Swarm services (start-first cannot reuse a host port)."""

from __future__ import annotations

import pytest

from deployer.rollout.port_rotation import next_port, ports_in_use
from tests.swarm_recordings import load

POOL = [18000, 18001, 18002]


@pytest.mark.parametrize(
    ("current", "in_use", "expected"),
    [
        (None, set(), 18000),  # first deployment: the pool's first port
        (18000, set(), 18001),
        (18001, set(), 18002),
        (18002, set(), 18000),  # wraps around
        (18000, {18001}, 18002),  # a lingering old task still holds 18001
        (18000, {18001, 18002}, None),  # nothing free: the caller says so (NoFreePort)
        (19000, set(), 18000),  # a port outside the pool (config changed): start over
        (19000, {18000}, 18001),
    ],
)
def test_next_port_rotates_through_the_pool(
    current: int | None, in_use: set[int], expected: int | None
) -> None:
    assert next_port(POOL, current, in_use) == expected


def test_a_pool_of_two_alternates() -> None:
    assert next_port([18000, 18001], 18000) == 18001
    assert next_port([18000, 18001], 18001) == 18000


def test_tasks_that_linger_after_swarm_told_them_to_stop_still_hold_their_port() -> None:
    recording = load("update_start_first_success")
    completed = next(
        seen
        for seen in recording.observations
        if seen.service and seen.service.update_state == "completed"
    )
    assert completed.service is not None
    new_port, old_port = completed.service.port, completed.service.previous_port
    assert new_port is not None
    assert old_port is not None
    pool = [new_port, old_port, 65000]

    during = ports_in_use(completed.tasks)
    after = ports_in_use(recording.observations[-1].tasks)

    # Swarm told the old task to shut down, but it still runs (and listens) for a while.
    assert during == {new_port, old_port}
    assert next_port(pool, new_port, during) == 65000
    assert after == {new_port}
    assert next_port(pool, new_port, after) == old_port
