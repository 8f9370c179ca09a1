"""The health gate: probing starts at once and backs off up to health.interval."""

from __future__ import annotations

import threading

import pytest

from deployer.config import HealthConfig
from deployer.errors import HealthCheckFailed
from deployer.rollout.health import wait_until_healthy
from tests.fakes import FakeBackend
from tests.helpers import start_container

V1 = "sha256:" + "1" * 64


class RecordingEvent(threading.Event):
    """A stop event that never fires and remembers each wait (no real sleeping)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return False


def test_probing_starts_at_once_and_backs_off_to_the_interval(backend: FakeBackend) -> None:
    container = start_container(backend, V1, behaviour="silent")
    stopping = RecordingEvent()

    with pytest.raises(HealthCheckFailed):
        wait_until_healthy(
            backend, container, HealthConfig(timeout=0.05, interval=0.2), stopping, backend.probe
        )

    assert stopping.waits[:5] == [0.025, 0.05, 0.1, 0.2, 0.2]


def test_a_container_that_answers_at_once_is_healthy_without_any_wait(
    backend: FakeBackend,
) -> None:
    container = start_container(backend, V1)
    stopping = RecordingEvent()

    detail = wait_until_healthy(backend, container, HealthConfig(), stopping, backend.probe)

    assert detail == "GET /healthz answered HTTP 200"
    assert stopping.waits == []
