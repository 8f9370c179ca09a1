"""Steady load through nginx: client threads in a child process, each answer stamped.

The clients run in their own process so that the benchmark's timing threads (webhook acks,
polling) do not wait for the load's Python threads. Load is bounded in count and in time.
That process may run at a lower priority (`nice`): the clients stand for users on other
machines, whose CPU is not the deployment host's; at 0 they compete with the stack under test
for this machine's two cores.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event

from deployer.sandbox.net import http_get

MAX_ANSWERS = 200_000  # per Load: about a minute at the rate this machine reaches
MAX_SECONDS = 180.0


@dataclass(frozen=True)
class Answer:
    """One GET: when it began and ended (epoch seconds) and the version served or the error."""

    began: float
    ended: float
    outcome: str  # the body (a version), or `error: ...`

    @property
    def failed(self) -> bool:
        return self.outcome.startswith("error")


def first_served(answers: Sequence[Answer], version: str) -> float | None:
    """When the first request that got `version` began; None when none did."""
    return min((answer.began for answer in answers if answer.outcome == version), default=None)


def only_new_since(answers: Sequence[Answer], version: str) -> float | None:
    """When the trailing run of answers that are all `version` began; None if the last is not."""
    since = None
    for answer in sorted(answers, key=lambda item: item.began, reverse=True):
        if answer.outcome != version:
            break
        since = answer.began
    return since


def error_kinds(answers: Sequence[Answer]) -> list[str]:
    """The distinct errors among the answers, sorted."""
    return sorted({answer.outcome for answer in answers if answer.failed})


class Load:
    """`clients` threads in a child process sending GET `url` on fresh connections.

    `watch` names a version: `wait_for_watched()` returns once any client got it.
    """

    def __init__(self, url: str, clients: int, watch: str = "", nice: int = 0) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._watched = context.Event()
        self._receive, self._send = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_generate,
            args=(url, clients, watch, nice, self._stop, self._watched, self._send),
            daemon=True,
        )
        self.answers: list[Answer] = []

    def start(self) -> Load:
        self._process.start()
        self._send.close()  # the child's copy stays open: recv() ends if the child dies
        return self

    def wait_for_watched(self, timeout: float) -> bool:
        """True once a client got the watched version; False after timeout."""
        return self._watched.wait(timeout)

    def stop(self) -> list[Answer]:
        """Stop the clients and return every answer, in the order they ended."""
        self._stop.set()
        try:
            rows = self._receive.recv()
        except EOFError:
            raise RuntimeError("the load process ended without sending its answers") from None
        self._process.join(10)
        self.answers = [Answer(*row) for row in rows]
        return self.answers


def _generate(
    url: str, clients: int, watch: str, nice: int, stop: Event, watched: Event, send: Connection
) -> None:
    os.nice(nice)
    rows: list[tuple[float, float, str]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + MAX_SECONDS

    def client() -> None:
        while not stop.is_set() and len(rows) < MAX_ANSWERS and time.monotonic() < deadline:
            began = time.time()
            try:
                status, body = http_get(url, timeout=5)
                outcome = body.strip() if status == 200 else f"error: HTTP {status}"
            except (OSError, http.client.HTTPException) as err:
                outcome = f"error: {type(err).__name__}"
            if outcome == watch:
                watched.set()
            with lock:
                rows.append((began, time.time(), outcome))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    send.send(rows)
