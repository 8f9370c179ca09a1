"""Continuous GET load on a loopback URL (through nginx), bounded in count and time.

Client threads GET `url` in a loop, each on a fresh connection, and keep every answer with the
wall-clock time its request began and ended, so a test can ask what happened in a window
(e.g. between SIGKILL of `deployer serve` and the end of its restart)::

    with Load(nginx.url("web", "/version"), clients=2) as load:
        ...kill, restart, deploy...
    assert load.failures() == []
    assert load.bodies()[-1] == "v2"
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from typing import Self

from deployer.sandbox.net import http_get
from deployer.sandbox.process import StartStop


@dataclass(frozen=True)
class Answer:
    """One request: when it began and ended (time.time()), and its status and body or error."""

    began: float
    ended: float
    status: int | None
    body: str

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load(StartStop):
    """See the module docstring; `max_requests` and `max_seconds` bound the whole run."""

    url: str
    clients: int = 2
    max_requests: int = 50_000
    max_seconds: float = 120.0
    timeout: float = 5.0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Self:
        """Start the client threads."""
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{number}", daemon=True)
            for number in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop the clients and wait for their requests in flight."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def between(self, first: float, last: float) -> list[Answer]:
        """Answers to requests that began within [first, last] (time.time())."""
        with self._lock:
            return [answer for answer in self.answers if first <= answer.began <= last]

    def failures(self) -> list[Answer]:
        """Every answer that was not a 200."""
        with self._lock:
            return [answer for answer in self.answers if not answer.ok]

    def bodies(self) -> list[str]:
        """The distinct 200 bodies (stripped) in the order they first followed one another."""
        changes: list[str] = []
        with self._lock:
            for answer in self.answers:
                body = answer.body.strip()
                if answer.ok and (not changes or changes[-1] != body):
                    changes.append(body)
        return changes

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.answers) >= self.max_requests:
                    return
            began = time.time()
            try:
                status, body = http_get(self.url, timeout=self.timeout)
                answer = Answer(began, time.time(), status, body)
            except (OSError, http.client.HTTPException) as err:  # e.g. IncompleteRead: cut off
                answer = Answer(began, time.time(), None, f"{type(err).__name__}: {err!r}")
            with self._lock:
                self.answers.append(answer)
