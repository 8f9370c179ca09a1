"""Several replicas per release, and the stop-first strategy (fake engine and nginx)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from deployer.config import Config
from deployer.errors import ConfigError, DockerError
from deployer.models import DeploymentState
from deployer.runtime import Runtime
from tests.conftest import SERVICES, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import deploy, kill_when_step_starts, new_deployment

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def with_web(tmp_path: Path, **web: Any) -> Config:
    return make_config(tmp_path, services={**SERVICES, "web": {**SERVICES["web"], **web}})


def web_servers(runtime: Runtime) -> list[str]:
    block = runtime.nginx.output.read_text().split("upstream web {")[1].split("}")[0]
    return [line.split()[1].rstrip(";") for line in block.splitlines() if "server " in line]


@pytest.fixture
def two(make_app: Callable[..., Flask], tmp_path: Path) -> Runtime:
    runtime: Runtime = make_app(with_web(tmp_path, replicas=2)).extensions["deployer"]
    return runtime


def test_a_release_of_two_replicas_serves_from_both_and_retires_both_old(
    two: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(two)
    backend.push(WEB_IMAGE, "latest", V2)

    second = deploy(two)

    assert (first.state, second.state) == (DeploymentState.SUCCEEDED, DeploymentState.SUCCEEDED)
    running = sorted(c.name for c in backend.running("web"))
    assert running == [f"web-{second.id}-1", f"web-{second.id}-2"]
    assert web_servers(two) == ["127.0.0.1:18002", "127.0.0.1:18003"]
    assert second.steps[-1].detail == f"stopped and removed web-{first.id}-1, web-{first.id}-2"
    assert second.steps[3].detail.startswith("2 replicas: ")


def test_one_replica_that_fails_rolls_back_the_whole_release(
    two: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(two)
    backend.push(WEB_IMAGE, "latest", V2)
    before = two.nginx.output.read_text()
    failing = new_deployment(two)
    backend.never_healthy.add(f"web-{failing.id}-2")

    two.deployer.run(failing)
    result = two.store.get(failing.id)

    assert result is not None
    assert result.state is DeploymentState.FAILED
    assert f"container web-{failing.id}-2" in (result.error or "")
    assert sorted(c.name for c in backend.running("web")) == [
        f"web-{first.id}-1",
        f"web-{first.id}-2",
    ]
    assert two.nginx.output.read_text() == before


def test_status_shows_each_replica_with_its_health(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    app = make_app(with_web(tmp_path, replicas=2))
    runtime: Runtime = app.extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.start()
    done = deploy(runtime)
    runtime.watch.read_all()

    web = app.test_client().get("/status").json["services"]["web"]  # type: ignore[index]

    assert [replica["container"] for replica in web["replicas"]] == [
        f"web-{done.id}-1",
        f"web-{done.id}-2",
    ]
    assert {replica["health"] for replica in web["replicas"]} == {"running"}
    assert web["address"] == "127.0.0.1:18000"


def test_a_pool_too_small_for_two_releases_of_the_replicas_is_a_config_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        with_web(tmp_path, replicas=6)

    assert caught.value.problems == [
        "services.web.ports: 18000-18009 has 10 ports; 6 replica(s) need 12 "
        "(the old and the new release)"
    ]


@pytest.fixture
def stop_first(make_app: Callable[..., Flask], tmp_path: Path) -> Runtime:
    runtime: Runtime = make_app(with_web(tmp_path, strategy="stop-first")).extensions["deployer"]
    return runtime


def test_stop_first_stops_the_old_release_first_and_records_the_gap(
    stop_first: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(stop_first)
    backend.push(WEB_IMAGE, "latest", V2)

    second = deploy(stop_first)

    assert second.state is DeploymentState.SUCCEEDED
    assert [step.name for step in second.steps] == [
        "resolve",
        "pull",
        "stop",
        "start",
        "healthy",
        "nginx",
        "retire",
    ]
    assert second.gap_seconds is not None
    assert second.gap_seconds >= 0
    assert [c.name for c in backend.running("web")] == [second.container]
    assert second.steps[-1].detail == f"removed {first.container}"
    assert first.gap_seconds is None  # nothing ran before: no gap


def test_stop_first_starts_the_old_release_again_when_the_new_one_fails(
    stop_first: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(stop_first)
    backend.push(WEB_IMAGE, "latest", V2, behaviour="exit")

    failed = deploy(stop_first)

    assert failed.state is DeploymentState.FAILED
    assert f"rolled back: {first.container} started again and serve (gap " in (failed.error or "")
    assert failed.gap_seconds is not None
    assert [(c.name, c.status) for c in backend.running("web")] == [(first.container, "running")]
    assert stop_first.fleet.serving("web").names == first.container  # type: ignore[union-attr]


def test_stop_first_killed_in_its_gap_starts_the_old_release_again_at_restart(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    config = with_web(tmp_path, strategy="stop-first")
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(first)
    backend.push(WEB_IMAGE, "latest", V2)
    interrupted = new_deployment(first)
    kill_when_step_starts(first, interrupted, "healthy")
    assert [c.status for c in backend.running("web") if c.name == good.container] == ["exited"]

    second: Runtime = make_app(config).extensions["deployer"]
    report = second.start()

    assert [(c.name, c.status) for c in backend.running("web")] == [(good.container, "running")]
    assert second.fleet.serving("web").names == good.container  # type: ignore[union-attr]
    assert any("started again" in line for line in report)
    closed = second.store.get(interrupted.id)
    assert closed is not None
    assert closed.state is DeploymentState.FAILED


def test_stop_first_killed_in_its_stop_step_stops_then_starts_the_old_release_at_restart(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    """Killed in `stop`: the engine may still be stopping the old container (its app ignores
    SIGTERM) and would end it after the restart adopted it. The restart waits that stop out
    (a stop of its own, which waits for one under way) and starts it again."""
    config = with_web(tmp_path, strategy="stop-first", stop_timeout=7)
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(first)
    backend.push(WEB_IMAGE, "latest", V2)
    interrupted = new_deployment(first)
    kill_when_step_starts(first, interrupted, "stop")
    [old] = backend.running("web")
    calls: list[tuple[str, str, float | None]] = []
    halt, start_again = backend.halt, backend.start_again

    def watched_halt(container_id: str, timeout: float) -> None:
        calls.append(("halt", container_id, timeout))
        halt(container_id, timeout)

    def watched_start_again(container_id: str) -> None:
        calls.append(("start again", container_id, None))
        start_again(container_id)

    backend.halt = watched_halt  # type: ignore[method-assign]
    backend.start_again = watched_start_again  # type: ignore[method-assign]

    second: Runtime = make_app(config).extensions["deployer"]
    report = second.start()

    assert old.status == "running"  # the kill came before the engine was asked to stop it
    assert calls == [("halt", old.id, 7.0), ("start again", old.id, None)]
    assert [(c.name, c.status) for c in backend.running("web")] == [(good.container, "running")]
    assert f"{good.container}: started again (a stop-first deployment was interrupted)" in report
    closed = second.store.get(interrupted.id)
    assert closed is not None
    assert (closed.error or "").startswith("interrupted at stop")


def test_stop_first_killed_in_its_gap_removes_the_new_container_before_the_old_starts_again(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    config = with_web(tmp_path, strategy="stop-first")
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(first)
    backend.push(WEB_IMAGE, "latest", V2)
    interrupted = new_deployment(first)
    kill_when_step_starts(first, interrupted, "healthy")  # the new container runs
    running_when_started_again: list[list[str]] = []
    start_again = backend.start_again

    def watched_start_again(container_id: str) -> None:
        running = [c.name for c in backend.running("web") if c.status == "running"]
        running_when_started_again.append(running)
        start_again(container_id)

    backend.start_again = watched_start_again  # type: ignore[method-assign]

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    assert running_when_started_again == [[]]  # never the old and the new at once
    assert [(c.name, c.status) for c in backend.running("web")] == [(good.container, "running")]
    closed = second.store.get(interrupted.id)
    assert closed is not None
    assert f"web-{interrupted.id} removed" in (closed.error or "")


def test_stop_first_leaves_the_old_release_stopped_while_the_new_one_cannot_be_removed(
    stop_first: Runtime, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("deployer.rollout.bluegreen.REMOVE_RETRY", 0)
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(stop_first)
    backend.push(WEB_IMAGE, "latest", V2)
    failing = new_deployment(stop_first)
    backend.never_healthy.add(f"web-{failing.id}")
    remove = backend.remove

    def remove_fails_for_the_new(container_id: str) -> None:
        if container_id == f"web-{failing.id}":
            raise DockerError(f"cannot remove container {container_id}: device busy")
        remove(container_id)

    backend.remove = remove_fails_for_the_new  # type: ignore[method-assign]

    stop_first.deployer.run(failing)
    result = stop_first.store.get(failing.id)

    assert result is not None
    assert result.state is DeploymentState.FAILED
    assert {(c.name, c.status) for c in backend.running("web")} == {
        (first.container, "exited"),
        (f"web-{failing.id}", "running"),
    }
    assert f"{first.container} left stopped" in (result.error or "")
    assert "started again" not in (result.error or "")


def test_a_replica_lost_across_a_restart_is_replaced_by_a_push_of_the_same_digest(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    config = with_web(tmp_path, replicas=2)
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    deploy(first)
    first.stop(1)
    backend.crash(backend.running("web")[0].id)  # exited while deployer was down
    second: Runtime = make_app(config).extensions["deployer"]
    second.start()
    assert len(second.fleet.serving("web").containers) == 1  # type: ignore[union-attr]

    again = deploy(second)

    assert again.state is DeploymentState.SUCCEEDED
    assert "only 1 of 2 replicas serve" in again.steps[0].detail
    assert sorted(c.name for c in backend.running("web")) == [
        f"web-{again.id}-1",
        f"web-{again.id}-2",
    ]
    assert len(web_servers(second)) == 2


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1)])
def test_changing_replicas_in_the_config_deploys_the_same_digest_again(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend, before: int, after: int
) -> None:
    first: Runtime = make_app(with_web(tmp_path, replicas=before)).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    deploy(first)
    first.stop(1)
    second: Runtime = make_app(with_web(tmp_path, replicas=after)).extensions["deployer"]
    second.start()

    again = deploy(second)

    assert again.state is DeploymentState.SUCCEEDED
    assert len(backend.running("web")) == after
    assert len(web_servers(second)) == after


def test_stop_first_stopped_in_its_gap_says_the_old_release_was_started_again(
    stop_first: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(stop_first)
    backend.push(WEB_IMAGE, "latest", V2)
    backend.never_healthy.add(first.container or "")  # its probe does not pass at once
    halt = backend.halt

    def halt_then_sigterm(container_id: str, timeout: float) -> None:
        halt(container_id, timeout)
        stop_first.stopping.set()

    backend.halt = halt_then_sigterm  # type: ignore[method-assign]

    cancelled = deploy(stop_first)

    assert cancelled.state is DeploymentState.FAILED
    assert [(c.name, c.status) for c in backend.running("web")] == [(first.container, "running")]
    error = cancelled.error or ""
    assert f"{first.container} started again" in error
    assert "health not confirmed: deployer is stopping" in error
    assert "could not be started again" not in error
    assert "nothing serves" not in error
