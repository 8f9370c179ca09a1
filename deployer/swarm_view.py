"""The engine's view of deployer's Swarm services, kept current in the background.

Readers (/status, the page, /metrics, rollback's "runs it already" check) read this memory and
never wait on the engine. A thread re-reads every Swarm service and its tasks every REFRESH
seconds (2 s), and the Swarm strategy re-reads a service right after each of its steps, so
what a reader sees is at most REFRESH seconds plus one read old. While the engine cannot be
reached, the last state read is kept and shown with the time it was read and the error.
Each background read that succeeded goes to `on_read`: the runtime has nginx follow tasks
Swarm moved between deployments (SwarmStrategy.follow).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from deployer.backends.base import LABEL_DEPLOYMENT
from deployer.backends.swarm_types import ServiceState, SwarmEngine, TaskInfo
from deployer.errors import DockerError
from deployer.models import utc_now
from deployer.rollout.swarm_status import SwarmStatus, make_status

log = logging.getLogger(__name__)
REFRESH = 2.0  # seconds between two reads of every Swarm service


@dataclass(frozen=True)
class SwarmSnapshot:
    """One service as last read: its state (None: no such service), tasks and status."""

    state: ServiceState | None
    tasks: tuple[TaskInfo, ...]
    status: SwarmStatus | None
    read_at: datetime
    error: str | None = None  # the last read failed: what it said (the rest is older)


class SwarmView:
    """Swarm services by name, re-read every `refresh` seconds in one background thread."""

    def __init__(
        self,
        engine: SwarmEngine,
        services: Iterable[str],
        refresh: float = REFRESH,
        on_read: Callable[[str, SwarmSnapshot], None] = lambda name, snapshot: None,
    ) -> None:
        self.engine = engine
        self.services = sorted(services)
        self.refresh = refresh
        self.on_read = on_read  # after each background read that succeeded (nginx follows)
        self._seen: dict[str, SwarmSnapshot] = {}
        self._writing = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def get(self, name: str) -> SwarmSnapshot | None:
        """The service as last read (None: never read yet)."""
        return self._seen.get(name)

    def deployments(self) -> set[str]:
        """Ids of the deployments that wrote the services now on the engine (as last read)."""
        return {
            snapshot.state.labels[LABEL_DEPLOYMENT]
            for snapshot in self._seen.values()
            if snapshot.state is not None and LABEL_DEPLOYMENT in snapshot.state.labels
        }

    def start(self) -> None:
        """Read every service once, then keep re-reading them in a background thread."""
        if not self.services:
            return
        self.read_all()
        self._thread = threading.Thread(target=self._follow, name="swarm-view", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def read_all(self) -> None:
        for name in self.services:
            self.read(name)

    def read(self, name: str) -> None:
        """Re-read one service and its tasks."""
        try:
            state = self.engine.service(name)
            tasks = tuple(self.engine.tasks(state.id)) if state is not None else ()
        except DockerError as err:
            with self._writing:
                old = self._seen.get(name)
                error = str(err).splitlines()[0]
                if old is None:
                    first = SwarmSnapshot(None, (), None, utc_now(), error)
                    self._seen = {**self._seen, name: first}
                else:
                    self._seen = {**self._seen, name: _with_error(old, error)}
            return
        self.record(name, state, tasks)

    def record(self, name: str, state: ServiceState | None, tasks: Iterable[TaskInfo]) -> None:
        """Keep what a caller has just read of the service (no second read of the engine)."""
        kept = tuple(tasks)
        status = make_status(state, kept) if state is not None else None
        snapshot = SwarmSnapshot(state, kept, status, utc_now())
        with self._writing:
            self._seen = {**self._seen, name: snapshot}

    def follow_once(self) -> None:
        """Re-read every service and hand each read that succeeded to `on_read`."""
        for name in self.services:
            self.read(name)
            snapshot = self._seen.get(name)
            if snapshot is not None and snapshot.error is None:
                self.on_read(name, snapshot)

    def _follow(self) -> None:
        while not self._stopping.wait(self.refresh):
            try:
                self.follow_once()
            except Exception:  # an odd document must not end the thread (readers would freeze)
                log.exception(
                    "reading the Swarm services failed; trying again in %g s", self.refresh
                )


def _with_error(old: SwarmSnapshot, error: str) -> SwarmSnapshot:
    return SwarmSnapshot(old.state, old.tasks, old.status, old.read_at, error)
