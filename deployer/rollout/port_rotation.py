"""Port rotation for Swarm services on host networking (pure).

Swarm's start-first order starts the new task beside the old one, and with host networking
both would bind the same port: the new task fails to bind and Swarm rolls back (moby#36934).
So every update gives the release the next port of the service's pool; nginx lists both the
old and the new port while Swarm switches, then only the new one.

Several replicas on host networking may share a node, so each slot gets a port of its own: a
release takes a block of the pool, base + 1 .. base + replicas with base a multiple of 10
(the task in slot k listens on base + k: `PORT=<base/10>{{.Task.Slot}}`, expanded by Swarm),
and the next release takes the next block.
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


def slot_blocks(pool: Iterable[int], replicas: int) -> list[int]:
    """Bases (multiples of 10) of the blocks whose ports base+1..base+replicas are all in pool."""
    members = set(pool)
    bases = sorted({port - port % 10 for port in members})
    return [
        base for base in bases if all(base + slot in members for slot in range(1, replicas + 1))
    ]


def next_block(
    pool: Sequence[int], replicas: int, current: int | None, in_use: Iterable[int] = ()
) -> int | None:
    """The base of the block after `current` (wrapping) none of whose ports is in use."""
    taken = set(in_use)
    blocks = slot_blocks(pool, replicas)
    start = blocks.index(current) + 1 if current in blocks else 0
    rotated = blocks[start:] + blocks[:start]
    return next(
        (
            base
            for base in rotated
            if base != current and not taken & set(range(base + 1, base + replicas + 1))
        ),
        None,
    )
