"""The recovery rule: deployer killed at each step, then started again (fake engine and nginx).

After a restart: exactly one container serves each service and nginx points at it; nothing is
orphaned; the interrupted deployment is finished (after its switch) or recorded failed with
what was done (before it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from flask import Flask

from deployer.cli import STOP_BUDGET
from deployer.config import Config
from deployer.models import Deployment, DeploymentState, StepState
from deployer.rollout.retire import RETIRE_GRACE
from deployer.runtime import Runtime
from tests.conftest import WEB_IMAGE
from tests.fakes import FakeBackend, FakeNginxCommands
from tests.helpers import deploy, finished, kill_when_step_starts, new_deployment

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def web_block(runtime: Runtime) -> str:
    return runtime.nginx.output.read_text().split("upstream web {")[1].split("}")[0]


def steps_of(deployment: Deployment) -> list[tuple[str, str]]:
    return [(step.name, step.state.value) for step in deployment.steps]


@pytest.fixture
def killed_at(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> Callable[[str], tuple[Runtime, Deployment, Deployment]]:
    """v1 serves; a deployment of v2 is killed when `step` starts; a new deployer starts."""

    def kill(step: str) -> tuple[Runtime, Deployment, Deployment]:
        first: Runtime = make_app(config).extensions["deployer"]
        backend.push(WEB_IMAGE, "latest", V1)
        good = deploy(first)
        backend.push(WEB_IMAGE, "latest", V2)
        interrupted = new_deployment(first)
        kill_when_step_starts(first, interrupted, step)
        second: Runtime = make_app(config).extensions["deployer"]
        second.start()
        found = finished(second, interrupted.id)
        return second, good, found

    return kill


@pytest.mark.parametrize("step", ["resolve", "pull", "start", "healthy", "nginx"])
def test_killed_before_the_switch_the_old_release_serves_and_nothing_is_left(
    killed_at: Callable[[str], tuple[Runtime, Deployment, Deployment]],
    backend: FakeBackend,
    step: str,
) -> None:
    second, good, interrupted = killed_at(step)

    assert [c.name for c in backend.running("web")] == [good.container]
    assert second.fleet.serving("web").names == good.container  # type: ignore[union-attr]
    assert "server 127.0.0.1:18000;" in web_block(second)
    assert interrupted.state is DeploymentState.FAILED
    assert interrupted.error is not None
    assert interrupted.error.startswith(f"interrupted at {step}: deployer stopped")
    assert f"{good.container} keeps serving" in interrupted.error
    assert interrupted.error.endswith("deploy again with `deployer deploy web`")
    assert interrupted.steps[-1].name == step
    assert interrupted.steps[-1].state is StepState.INTERRUPTED


@pytest.mark.parametrize("step", ["healthy", "nginx"])
def test_killed_with_the_new_container_up_it_is_removed_and_named_in_the_record(
    killed_at: Callable[[str], tuple[Runtime, Deployment, Deployment]], step: str
) -> None:
    _, _, interrupted = killed_at(step)

    assert f"web-{interrupted.id} removed" in (interrupted.error or "")


def test_killed_in_the_nginx_step_nginx_is_reloaded_before_the_new_container_goes(
    killed_at: Callable[[str], tuple[Runtime, Deployment, Deployment]],
    nginx_commands: FakeNginxCommands,
) -> None:
    expected_reloads = 2  # v1's switch, then the forced one at start

    second, good, _ = killed_at("nginx")

    # At start nginx may run a file other than the one on disk: it is reloaded either way.
    assert nginx_commands.reloads == expected_reloads
    assert good.container is not None
    assert good.container in web_block(second)


@pytest.mark.parametrize("step", ["drain", "retire"])
def test_killed_after_the_switch_the_new_release_keeps_serving_and_the_restart_finishes_it(
    killed_at: Callable[[str], tuple[Runtime, Deployment, Deployment]],
    backend: FakeBackend,
    step: str,
) -> None:
    second, good, resumed = killed_at(step)

    assert resumed.state is DeploymentState.SUCCEEDED
    assert [c.name for c in backend.running("web")] == [f"web-{resumed.id}"]
    assert second.fleet.serving("web").digest == V2  # type: ignore[union-attr]
    assert "server 127.0.0.1:18001;" in web_block(second)
    assert (step, "interrupted") in steps_of(resumed)
    assert steps_of(resumed)[-2:] == [("drain", "succeeded"), ("retire", "succeeded")]
    assert resumed.steps[-2].detail.startswith("resumed after deployer restarted")
    assert resumed.steps[-1].detail == f"stopped and removed {good.container}"


def test_first_deployment_killed_before_its_switch_leaves_nothing_running(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    interrupted = new_deployment(first)
    kill_when_step_starts(first, interrupted, "nginx")

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    assert backend.running("web") == []
    assert second.fleet.serving("web") is None
    closed = second.store.get(interrupted.id)
    assert closed is not None
    assert closed.state is DeploymentState.FAILED
    assert "nothing serves web" in (closed.error or "")


def test_a_queued_deployment_of_a_service_removed_from_the_config_fails_with_the_reason(
    make_app: Callable[..., Flask], config: Config, tmp_path: object
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    queued = new_deployment(first, service="gone")

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    closed = second.store.get(queued.id)
    assert closed is not None
    assert closed.state is DeploymentState.FAILED
    assert closed.error == "service gone is no longer in the config; not deployed"


def test_a_deployment_left_queued_is_run_after_the_restart(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    queued = new_deployment(first)

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    assert finished(second, queued.id).state is DeploymentState.SUCCEEDED
    assert [c.digest for c in backend.running("web")] == [V1]


def test_a_stop_during_the_retire_records_it_interrupted_and_the_next_start_finishes_it(
    make_app: Callable[..., Flask],
    config: Config,
    backend: FakeBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("deployer.rollout.retire.RETIRE_GRACE", 0.05)
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(first)
    backend.push(WEB_IMAGE, "latest", V2)
    stop, stopped_by_engine = backend.stop, threading.Event()

    def slow_stop(container_id: str, timeout: float) -> None:
        first.stopping.set()  # SIGTERM arrives while the old container takes its stop_timeout
        stopped_by_engine.wait(5)
        stop(container_id, timeout)

    backend.stop = slow_stop  # type: ignore[method-assign]
    pushed = new_deployment(first)

    began = time.monotonic()
    first.deployer.run(pushed)
    took = time.monotonic() - began

    paused = first.store.get(pushed.id)
    assert paused is not None
    assert took < 0.8  # within the stop budget, not the container's stop_timeout
    assert paused.state is DeploymentState.RUNNING
    assert steps_of(paused)[-1] == ("retire", "interrupted")
    assert f"{good.container} still stopping" in paused.steps[-1].detail
    stopped_by_engine.set()  # the engine finishes that stop after deployer exited
    deadline = time.monotonic() + 5
    while backend.find(good.container or "") is not None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    backend.stop = stop  # type: ignore[method-assign]

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()
    resumed = finished(second, pushed.id)

    assert resumed.state is DeploymentState.SUCCEEDED
    assert [c.name for c in backend.running("web")] == [f"web-{pushed.id}"]


def test_the_retire_grace_fits_in_the_stop_budget() -> None:
    assert RETIRE_GRACE + 2 <= STOP_BUDGET  # room left to record the retire `interrupted`
