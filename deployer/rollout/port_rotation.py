"""Port rotation for Swarm services on host networking (pure).

Swarm's start-first order starts the new task beside the old one, and with host networking
both would bind the same port: the new task fails to bind and Swarm rolls back (moby#36934).
So every update gives the release the next port of the service's pool; nginx lists both the
old and the new port while Swarm switches, then only the new one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from deployer.backends.swarm_types import TaskInfo


def ports_in_use(tasks: Iterable[TaskInfo]) -> set[int]:
    """Ports held by running tasks (old ones linger while stopping) or soon by desired ones."""
    return {
        task.port
        for task in tasks
        if task.port is not None and (task.alive or task.desired_state == "running")
    }


def next_port(pool: Sequence[int], current: int | None, in_use: Iterable[int] = ()) -> int | None:
    """The port after `current` in pool (wrapping), skipping `current` and in_use; None if none.

    Without a current port (first deployment, or one outside the pool) the pool's first free
    port. A pool of 2 suffices for one deployment at a time; with 3 a deployment can follow
    right after another while the previous release's tasks are still stopping.
    """
    ports = list(pool)
    taken = {*in_use, *([current] if current is not None else [])}
    start = ports.index(current) + 1 if current in ports else 0
    rotated = ports[start:] + ports[:start]
    return next((port for port in rotated if port not in taken), None)
