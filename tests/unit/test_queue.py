"""The queue: coalescing, superseding, per-service serial, services in parallel, clean stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from deployer.errors import QueueClosed
from deployer.models import Deployment, DeploymentState
from deployer.queue import DeployQueue
from deployer.store import Store


class Recorder:
    """A runner that blocks until released and records which jobs overlapped."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.active: set[str] = set()
        self.max_parallel: dict[str, int] = {}
        self.seen_together: list[set[str]] = []
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, deployment: Deployment) -> None:
        with self.lock:
            self.active.add(deployment.id)
            self.seen_together.append(set(self.active))
            self.ran.append(deployment.id)
        self.release.wait(5)
        with self.lock:
            self.active.discard(deployment.id)


def make_queue(
    tmp_path: Path, runner: Recorder, coalesce: float = 0.0
) -> tuple[DeployQueue, Store]:
    store = Store(tmp_path / "history.sqlite3")
    queue = DeployQueue(runner, store, coalesce, threading.Event())
    return queue, store


def wait_until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_twenty_identical_pushes_within_the_window_become_one_deployment(tmp_path: Path) -> None:
    runner = Recorder()
    runner.release.set()
    queue, store = make_queue(tmp_path, runner, coalesce=0.5)
    queue.start()
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.append(queue.submit("web", "img", "latest", "push").id))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    wait_until(lambda: runner.ran and queue.idle())

    assert len(set(ids)) == 1
    assert runner.ran == [ids[0]]
    assert len(store.history()) == 1
    queue.stop(1)


def test_newer_push_supersedes_the_waiting_one(tmp_path: Path) -> None:
    runner = Recorder()
    runner.release.set()
    queue, store = make_queue(tmp_path, runner, coalesce=0.3)
    queue.start()

    older = queue.submit("web", "img", "v1", "push")
    newer = queue.submit("web", "img", "v2", "push")
    wait_until(lambda: runner.ran and queue.idle())

    assert runner.ran == [newer.id]
    superseded = store.get(older.id)
    assert superseded is not None
    assert superseded.state is DeploymentState.SUPERSEDED
    assert superseded.error == f"superseded by deployment {newer.id} (img:v2) before it started"
    queue.stop(1)


def test_one_service_never_overlaps_but_two_services_run_in_parallel(tmp_path: Path) -> None:
    runner = Recorder()
    queue, _ = make_queue(tmp_path, runner)
    queue.start()

    web1 = queue.submit("web", "img", "v1", "push")
    api1 = queue.submit("api", "img", "v1", "push")
    wait_until(lambda: len(runner.active) == 2)
    web2 = queue.submit("web", "img", "v2", "push")
    time.sleep(0.1)
    assert runner.active == {web1.id, api1.id}
    runner.release.set()
    wait_until(lambda: queue.idle())

    assert runner.ran[-1] == web2.id
    assert not any({web1.id, web2.id} <= together for together in runner.seen_together)
    queue.stop(1)


def test_stop_refuses_new_work_and_leaves_waiting_jobs_queued(tmp_path: Path) -> None:
    runner = Recorder()
    queue, store = make_queue(tmp_path, runner, coalesce=10)
    queue.start()
    waiting = queue.submit("web", "img", "v1", "push")

    assert queue.stop(1)

    stored = store.get(waiting.id)
    assert stored is not None
    assert stored.state is DeploymentState.QUEUED
    with pytest.raises(QueueClosed, match="stopping"):
        queue.submit("web", "img", "v2", "push")


def test_a_superseded_deployment_is_reported_like_a_finished_one(tmp_path: Path) -> None:
    runner = Recorder()
    runner.release.set()
    store = Store(tmp_path / "history.sqlite3")
    reported: list[tuple[str, DeploymentState]] = []
    queue = DeployQueue(
        runner,
        store,
        0.3,
        threading.Event(),
        on_finished=lambda deployment: reported.append((deployment.id, deployment.state)),
    )
    queue.start()

    older = queue.submit("web", "img", "v1", "push")
    queue.submit("web", "img", "v2", "push")
    wait_until(lambda: runner.ran and queue.idle())

    assert reported == [(older.id, DeploymentState.SUPERSEDED)]
    queue.stop(1)


def test_a_held_service_keeps_its_pushes_waiting_until_the_hold_ends(tmp_path: Path) -> None:
    runner = Recorder()
    runner.release.set()
    queue, store = make_queue(tmp_path, runner)
    queue.start()

    with queue.holding("web") as held:
        pushed = queue.submit("web", "img", "latest", "push")
        other = queue.submit("api", "img", "latest", "push")
        wait_until(lambda: other.id in runner.ran)  # other services run meanwhile
        time.sleep(0.1)
        ran_while_held = list(runner.ran)
        with queue.holding("web") as second:
            assert second is False  # one hold at a time, and never beside a job
    wait_until(lambda: pushed.id in runner.ran)
    wait_until(queue.idle)

    assert held is True
    assert ran_while_held == [other.id]
    with queue.holding("web") as again:
        assert again is True
    assert store.get(pushed.id) is not None
    queue.stop(1)


def test_a_hold_is_refused_while_a_job_of_the_service_runs(tmp_path: Path) -> None:
    runner = Recorder()
    queue, _ = make_queue(tmp_path, runner)
    queue.start()
    running = queue.submit("web", "img", "latest", "push")
    wait_until(lambda: running.id in runner.ran)

    with queue.holding("web") as held:
        assert held is False
    with queue.holding("api") as other:
        assert other is True
    runner.release.set()
    queue.stop(1)
    with pytest.raises(QueueClosed), queue.holding("web"):
        pass
