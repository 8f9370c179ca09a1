"""Faults in the middle of a deployment (fake engine and nginx): engine lost, nginx reload
killed, deployer stopping after the switch, a dead serving container, a slow nginx switch."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from deployer.config import Config
from deployer.models import Deployment, DeploymentState
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, WEB_IMAGE
from tests.fakes import FakeBackend, FakeNginxCommands
from tests.helpers import deploy, finished, new_deployment

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
V3 = "sha256:" + "3" * 64


def test_engine_lost_after_it_created_the_container_the_record_names_it_and_it_goes_later(
    runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2)
    backend.lose_connection_after_create = True

    failed = deploy(runtime)

    orphan = f"web-{failed.id}"
    assert failed.state is DeploymentState.FAILED
    assert failed.container == orphan
    assert (
        f"the new container {orphan} could not be removed (cannot reach the Docker engine: "
        "connection refused); deployer removes it at the next deployment of web or when it starts"
    ) in (failed.error or "")
    assert backend.find(orphan) is not None  # the engine is gone: it still runs for now

    backend.down = backend.lose_connection_after_create = False
    backend.push(WEB_IMAGE, "latest", V3)
    later = deploy(runtime)

    assert later.state is DeploymentState.SUCCEEDED
    assert f"removed leftover {orphan}" in later.steps[2].detail
    assert sorted(c.name for c in backend.running("web")) == [f"web-{later.id}"]
    assert good.container not in [c.name for c in backend.running("web")]


def test_engine_lost_after_create_the_orphan_goes_at_the_next_start(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(first)
    backend.push(WEB_IMAGE, "latest", V2)
    backend.lose_connection_after_create = True
    failed = deploy(first)
    first.stop(1)
    backend.down = backend.lose_connection_after_create = False

    second: Runtime = make_app(config).extensions["deployer"]
    report = second.start()

    assert [c.name for c in backend.running("web")] == [good.container]
    assert f"web-{failed.id} removed" in report[0]


def test_nginx_reload_killed_after_it_signalled_is_undone_before_the_new_container_goes(
    runtime: Runtime, backend: FakeBackend, nginx_commands: FakeNginxCommands
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    before = runtime.nginx.output.read_text()
    backend.push(WEB_IMAGE, "latest", V2)
    nginx_commands.reload_outcomes = ["killed"]

    failed = deploy(runtime)

    assert failed.state is DeploymentState.FAILED
    assert "previous file restored and nginx reloaded with it" in (failed.error or "")
    assert nginx_commands.running == before  # nginx runs the old file again
    assert [c.name for c in backend.running("web")] == [good.container]


def test_when_nginx_cannot_be_reloaded_back_the_new_container_is_kept_until_it_can(
    runtime: Runtime, backend: FakeBackend, nginx_commands: FakeNginxCommands
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2)
    nginx_commands.reload_outcomes = ["killed", "refused"]

    failed = deploy(runtime)

    kept = f"web-{failed.id}"
    assert "reloading nginx with it failed too" in (failed.error or "")
    assert f"{kept} is left running because nginx may still send traffic to it" in (
        failed.error or ""
    )
    assert kept in nginx_commands.running  # nginx really does still send traffic there
    assert sorted(c.name for c in backend.running("web")) == sorted([str(good.container), kept])

    backend.push(WEB_IMAGE, "latest", V3)
    later = deploy(runtime)

    assert later.state is DeploymentState.SUCCEEDED
    assert f"removed leftover {kept}" in later.steps[4].detail  # once nginx is in line again
    assert [c.name for c in backend.running("web")] == [later.container]


def test_a_stop_after_the_switch_leaves_the_deployment_running_for_the_next_start(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(first)
    backend.push(WEB_IMAGE, "latest", V2)
    paused = new_deployment(first)
    run_with_a_stop_request_right_after_the_switch(first, paused)

    stored = first.store.get(paused.id)
    assert stored is not None
    assert stored.state is DeploymentState.RUNNING
    assert [(s.name, s.state.value) for s in stored.steps][-2:] == [
        ("nginx", "succeeded"),
        ("drain", "interrupted"),
    ]
    assert sorted(c.digest for c in backend.running("web")) == [V1, V2]

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()
    done = finished(second, paused.id)

    assert done.state is DeploymentState.SUCCEEDED
    assert [c.digest for c in backend.running("web")] == [V2]
    assert done.steps[-1].detail == f"stopped and removed {good.container}"


def run_with_a_stop_request_right_after_the_switch(
    runtime: Runtime, deployment: Deployment
) -> None:
    """SIGTERM arrives once the deployment switched nginx (its drain would take longer than
    the stop budget allows)."""
    original = runtime.fleet.switch

    def switch_then_stop(*args: Any, **kwargs: Any) -> Any:
        applied = original(*args, **kwargs)
        runtime.stopping.set()
        return applied

    runtime.fleet.switch = switch_then_stop  # type: ignore[method-assign]
    runtime.deployer.run(deployment)


def test_a_dead_serving_container_is_deployed_again_for_the_same_digest(
    runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    dead = deploy(runtime)
    [container] = backend.running("web")
    backend.crash(container.id)

    again = deploy(runtime)

    assert again.state is DeploymentState.SUCCEEDED
    assert again.steps[0].detail.endswith(
        f"; {dead.container} runs it but is exited (exit code None): starting it again"
    )
    assert [(c.name, c.status) for c in backend.running("web")] == [(again.container, "running")]


def test_rollback_to_the_current_digest_is_allowed_when_its_container_is_down(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.start()
    deploy(runtime)
    [container] = backend.running("web")
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    refused = client.post("/services/web/rollback", json={"digest": V1}, headers=admin)
    backend.crash(container.id)
    runtime.watch.read_all()

    answer = client.post("/services/web/rollback", json={"digest": V1}, headers=admin)

    assert refused.status_code == 409
    assert answer.status_code == 202
    assert finished(runtime, answer.json["id"]).state is DeploymentState.SUCCEEDED  # type: ignore[index]
    assert [c.status for c in backend.running("web")] == ["running"]


def test_readers_never_wait_for_a_slow_nginx_switch(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend, nginx_commands: FakeNginxCommands
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.start()
    release = threading.Event()
    nginx_commands.hold = release
    switching = threading.Thread(target=deploy, args=(runtime,))
    switching.start()
    assert nginx_commands.testing.wait(5), "the deployment never reached `nginx -t`"

    answers = [client.get(path).status_code for path in ("/status", "/metrics", "/")]

    still_testing = not release.is_set() and switching.is_alive()
    release.set()
    switching.join(10)
    assert answers == [200, 200, 200]
    assert still_testing  # every reader answered while `nginx -t` was still running
