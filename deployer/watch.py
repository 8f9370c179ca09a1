"""The engine's view of deployer's containers, kept current in the background.

Readers (/status, the page, /metrics) read this memory and never wait on the engine. It is
kept current by the engine's event stream: a container that starts, dies, turns (un)healthy
or goes away is read again within milliseconds of the event. Everything is re-read every
RESYNC seconds and whenever the stream breaks (the engine restarted), so a missed event is
stale for RESYNC seconds at most; while the engine cannot be reached, the last state read is
shown with the time it was read.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from deployer.backends.base import Backend, ContainerEvents, ContainerInfo
from deployer.errors import ContainerMissing, DockerError
from deployer.models import utc_now

log = logging.getLogger(__name__)
RESYNC = 30.0  # seconds between full re-reads
RETRY = 1.0  # seconds before following the event stream again after it broke


def describe(info: ContainerInfo | None) -> str:
    """A container's state in a few words: `healthy`, `running, restarted 2 times`, ..."""
    if info is None:
        return "gone (not on the engine)"
    if info.stopped:
        return f"{info.status} (exit code {info.exit_code})"
    state = info.health or info.status
    if info.restart_count:
        state += f", restarted {info.restart_count} time{'s' if info.restart_count > 1 else ''}"
    return state


class ContainerWatch:
    """Container states by id, refreshed from the engine's events and a periodic re-read."""

    def __init__(
        self, backend: Backend, instance: str, resync: float = RESYNC, retry: float = RETRY
    ) -> None:
        self.backend = backend
        self.instance = instance
        self.resync = resync
        self.retry = retry
        self._seen: dict[str, ContainerInfo] = {}
        self._read_at: datetime | None = None
        self._error: str | None = None
        self._writing = threading.Lock()
        self._stopping = threading.Event()
        self._stream: ContainerEvents | None = None
        self._threads: list[threading.Thread] = []
        self._tracked: set[str] = set()  # containers without deployer's labels (taken over)

    def state(self, container_id: str) -> str:
        """What a reader shows for a container (never calls the engine)."""
        if self._read_at is None:
            return "unknown (not read from the engine yet)"
        found = describe(self._seen.get(container_id))
        if self._error is not None:
            return f"{found} as of {self._read_at:%H:%M:%S} UTC; engine: {self._error}"
        return found

    def deployments(self) -> set[str]:
        """Ids of the deployments that started the containers on the engine (as last read)."""
        return {container.deployment for container in self._seen.values()}

    def get(self, container_id: str) -> ContainerInfo | None:
        """The container as last read, or None when the engine did not list it."""
        return self._seen.get(container_id)

    def start(self) -> None:
        """Read everything once, then follow the engine in two background threads."""
        self.read_all()
        for target, name in ((self._follow, "watch-events"), (self._resync, "watch-resync")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def track(self, container_id: str) -> None:
        """Also follow a container that carries no deployer labels (one taken over)."""
        self._tracked.add(container_id)
        self.read_one(container_id)

    def read_all(self) -> None:
        """Re-read every managed container (one engine listing) and the tracked ones."""
        try:
            listed = self.backend.list_managed(self.instance)
        except DockerError as err:
            self._failed(err)
            return
        with self._writing:
            self._seen = {container.id: container for container in listed}
            self._read_at, self._error = utc_now(), None
        for container_id in list(self._tracked - set(self._seen)):
            self.read_one(container_id)

    def read_one(self, container_id: str) -> None:
        """Re-read one container after an event about it."""
        try:
            info: ContainerInfo | None = self.backend.inspect(container_id)
        except ContainerMissing:
            info = None
        except DockerError as err:
            self._failed(err)
            return
        with self._writing:
            seen = {key: value for key, value in self._seen.items() if key != container_id}
            if info is not None:
                seen[info.id] = info
            self._seen, self._read_at = seen, utc_now()

    def _failed(self, err: DockerError) -> None:
        with self._writing:
            self._error = str(err).splitlines()[0]

    def _follow(self) -> None:
        while not self._stopping.is_set():
            try:
                self._stream = self.backend.events(self.instance)
            except DockerError as err:
                self._failed(err)
                self._stopping.wait(self.retry)
                continue
            self.read_all()  # whatever happened while no stream was open
            for container_id in self._stream:
                self.read_one(container_id)
            if not self._stopping.is_set():
                log.info("the engine's event stream ended; following it again")
                self._stopping.wait(self.retry)

    def _resync(self) -> None:
        while not self._stopping.wait(self.resync):
            self.read_all()
