"""Notifications: one message per finished deployment, to each `notify:` target that wants it.

Messages are built by pure functions (make_message), and sent by one background thread with a
timeout per attempt and a bounded number of attempts. A slow or dead receiver delays only other
notifications, never a deployment; when the backlog is full new messages are dropped, with a
log line. URLs may hold secrets (`${VAR}` from the environment): they are never logged, only
their host.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from deployer.config import NotifyTarget, expand_environment
from deployer.documents import deployment_json, short_digest
from deployer.models import Deployment

log = logging.getLogger(__name__)
BACKLOG = 1000
BACKOFF = 1.0  # seconds before the second attempt; doubled for each further one


@dataclass(frozen=True)
class Message:
    target: NotifyTarget
    url: str
    body: dict[str, Any]
    deployment: str


def make_message(deployment: Deployment, format: str) -> dict[str, Any]:
    """The JSON body for one finished deployment: `json` (full record) or `slack` (text)."""
    duration = (
        (deployment.finished_at - deployment.started_at).total_seconds()
        if deployment.started_at and deployment.finished_at
        else None
    )
    if format == "slack":
        icon = {"succeeded": ":white_check_mark:", "failed": ":x:"}.get(
            deployment.state, ":grey_question:"
        )
        text = (
            f"{icon} *{deployment.service}* {deployment.state}: "
            f"{short_digest(deployment.previous_digest) or 'none'} -> "
            f"{short_digest(deployment.digest) or 'none'}"
            + (f" in {duration:.1f} s" if duration is not None else "")
            + f" ({deployment.trigger}, deployment {deployment.id})"
        )
        if deployment.error:
            text += f"\n> {deployment.error.splitlines()[0]}"
        return {"text": text}
    return {
        "event": "deployment.finished",
        "service": deployment.service,
        "state": deployment.state.value,
        "old_digest": deployment.previous_digest,
        "new_digest": deployment.digest,
        "duration_seconds": None if duration is None else round(duration, 3),
        "error": deployment.error,
        "deployment": deployment_json(deployment),
    }


def host_of(url: str) -> str:
    return urlsplit(url).hostname or "(no host)"


class Notifier:
    """Queues messages for finished deployments and sends them from one background thread."""

    def __init__(
        self,
        targets: list[NotifyTarget],
        environ: Mapping[str, str],
        post: Callable[..., requests.Response] = requests.post,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.targets = targets
        self.environ = environ
        self._post = post
        self._sleep = sleep
        self._queue: queue.Queue[Message | None] = queue.Queue(BACKLOG)
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self.sent = 0
        self.failed = 0

    def deployment_finished(self, deployment: Deployment) -> None:
        """Queue one message per interested target; never blocks."""
        for target in self.targets:
            if deployment.state.value not in target.on:
                continue
            message = Message(
                target,
                expand_environment(target.url, self.environ),
                make_message(deployment, target.format),
                deployment.id,
            )
            try:
                self._queue.put_nowait(message)
            except queue.Full:
                log.error("notification for deployment %s dropped: backlog full", deployment.id)
        if self.targets:
            self.start()

    def start(self) -> None:
        """Start the sending thread (once; deployments of several services finish at once)."""
        with self._starting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="notify", daemon=True)
                self._thread.start()

    def stop(self, timeout: float) -> None:
        """Send what is queued for up to timeout seconds, then give up on the rest."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _work(self) -> None:
        while (message := self._queue.get()) is not None:
            if self._send(message):
                self.sent += 1
            else:
                self.failed += 1
            self._queue.task_done()
        self._queue.task_done()

    def _send(self, message: Message) -> bool:
        host = host_of(message.url)
        problem = ""
        for attempt in range(1, message.target.attempts + 1):
            try:
                answer = self._post(message.url, json=message.body, timeout=message.target.timeout)
                if answer.status_code < 300:
                    return True
                problem = f"HTTP {answer.status_code}"
                if 400 <= answer.status_code < 500 and answer.status_code != 429:
                    break  # the receiver refuses this message: retrying will not help
            except requests.RequestException as err:
                problem = type(err).__name__
            if attempt < message.target.attempts:
                self._sleep(BACKOFF * 2 ** (attempt - 1))
        log.warning(
            "notification for deployment %s to %s failed after %d attempt(s): %s",
            message.deployment,
            host,
            attempt,
            problem,
        )
        return False

    def wait_idle(self) -> None:
        """Block until every queued message was sent or given up (for tests and stop)."""
        self._queue.join()
