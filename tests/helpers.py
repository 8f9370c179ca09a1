"""Test helpers shared by several test modules (house style: never import one test module
from another)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from deployer.models import Deployment
from deployer.queue import new_deployment_id
from deployer.runtime import Runtime
from deployer.sandbox.net import http_get
from tests.conftest import WEB_IMAGE

PAYLOAD: dict[str, Any] = json.loads(
    (Path(__file__).parent / "payloads" / "dockerhub_push.json").read_text()
)


def deploy(runtime: Runtime, service: str = "web", tag: str = "latest") -> Deployment:
    """Run one deployment of service:tag to its end, in this thread; return it as stored."""
    deployment = Deployment(
        id=new_deployment_id(), service=service, trigger="test", image=WEB_IMAGE, tag=tag
    )
    runtime.store.save(deployment)
    runtime.deployer.run(deployment)
    found = runtime.store.get(deployment.id)
    assert found is not None
    return found


def finished(runtime: Runtime, deployment_id: str) -> Deployment:
    """Wait (up to 5 s) until the queued deployment finished and the queue is idle."""
    deadline = time.monotonic() + 5
    while True:
        found = runtime.store.get(deployment_id)
        if found is not None and found.state.finished and runtime.queue.idle():
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.01)


class Load:
    """GETs through nginx in a loop (bounded in count and time), counting every failure."""

    def __init__(self, url: str, max_requests: int = 20000, max_seconds: float = 60) -> None:
        self.url, self.max_requests, self.max_seconds = url, max_requests, max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []
        self.answers: list[tuple[float, str]] = []  # (time.time() the request began, body)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            began = time.time()
            try:
                status, body = http_get(self.url, timeout=5)
            except OSError as err:
                self.failures.append(repr(err))
                continue
            if status == 200:
                self.ok += 1
                self.answers.append((began, body.strip()))
                if not self.versions or self.versions[-1] != body.strip():
                    self.versions.append(body.strip())
            else:
                self.failures.append(f"HTTP {status}")
