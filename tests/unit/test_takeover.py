"""`deployer adopt`: taking over a container an operator runs by hand (fake engine and nginx)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deployer.config import Config
from deployer.models import DeploymentState
from deployer.rollout.adoption import render_current
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, WEB_IMAGE
from tests.fakes import FakeBackend
from tests.helpers import deploy, finished, kill_when_step_starts, new_deployment

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def adopt(client: FlaskClient, **body: Any) -> Any:
    return client.post("/services/web/adopt", json=body, headers=ADMIN)


def test_a_container_run_by_hand_is_taken_over_and_nginx_points_at_it(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    hand = backend.run_by_hand("web-by-hand", V1, 18500)

    answer = adopt(client, container="web-by-hand")

    assert answer.status_code == 201, answer.json
    assert answer.headers["Location"] == f"/deployments/{answer.json['id']}"
    record = runtime.store.get(answer.json["id"])
    assert record is not None
    assert (record.state, record.digest, record.container) == (
        DeploymentState.SUCCEEDED,
        V1,
        "web-by-hand",
    )
    assert [(s.name, s.state.value) for s in record.steps] == [
        ("adopt", "succeeded"),
        ("nginx", "succeeded"),
    ]
    assert runtime.fleet.serving("web").names == "web-by-hand"  # type: ignore[union-attr]
    assert "server 127.0.0.1:18500;" in runtime.nginx.output.read_text()
    assert hand.id in backend.containers


def test_the_next_push_replaces_it_as_any_release(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    hand = backend.run_by_hand("web-by-hand", V1, 18500)
    adopt(client, container="web-by-hand")
    backend.push(WEB_IMAGE, "latest", V2)

    replaced = deploy(runtime)

    assert replaced.state is DeploymentState.SUCCEEDED
    assert replaced.previous_digest == V1
    assert hand.id not in backend.containers  # retired like an old release
    assert [c.name for c in backend.running("web")] == [replaced.container]
    assert runtime.store.adopted() == []


def test_a_restart_finds_the_taken_over_container_again(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first = make_app(config)
    backend.run_by_hand("web-by-hand", V1, 18500)
    adopt(first.test_client(), container="web-by-hand")
    first.extensions["deployer"].stop(1)

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    assert second.fleet.serving("web").names == "web-by-hand"  # type: ignore[union-attr]
    assert "server 127.0.0.1:18500;" in second.nginx.output.read_text()
    backend.push(WEB_IMAGE, "latest", V1)
    assert deploy(second).state is DeploymentState.SKIPPED  # it runs that digest already


@pytest.mark.parametrize(
    ("setup", "body", "status", "message"),
    [
        ({}, {"container": "nobody"}, 404, "no container 'nobody' on the engine"),
        ({"network": "bridge"}, {}, 409, "runs on network bridge but services.web.network is host"),
        ({"image": "other.example.com/x"}, {}, 409, "not services.web.image"),
        ({"stopped": True}, {}, 409, "container web-by-hand is exited, not running"),
        (
            {},
            {"port": 18999},
            409,
            "is not reachable at 127.0.0.1:18999: GET /healthz failed (ConnectionError)",
        ),
    ],
)
def test_refusals_say_why(
    client: FlaskClient,
    runtime: Runtime,
    backend: FakeBackend,
    setup: dict[str, Any],
    body: dict[str, Any],
    status: int,
    message: str,
) -> None:
    hand = backend.run_by_hand(
        "web-by-hand", V1, 18500, setup.get("network", "host"), setup.get("image", "")
    )
    if setup.get("stopped"):
        backend.crash(hand.id)

    answer = adopt(client, **{"container": "web-by-hand", **body})

    assert answer.status_code == status
    assert message in answer.json["error"]
    assert runtime.fleet.serving("web") is None
    assert not runtime.nginx.output.exists()


def test_a_service_deployer_already_runs_is_not_taken_over(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    deploy(runtime)
    backend.run_by_hand("web-by-hand", V1, 18500)

    answer = adopt(client, container="web-by-hand")

    assert answer.status_code == 409
    assert "adopt takes over a service deployer does not run yet" in answer.json["error"]


@pytest.mark.parametrize("step", ["drain", "retire"])
def test_a_taken_over_container_is_retired_when_the_next_push_was_killed_after_its_switch(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend, step: str
) -> None:
    first = make_app(config)
    hand = backend.run_by_hand("web-by-hand", V1, 18500)
    adopt(first.test_client(), container="web-by-hand")
    backend.push(WEB_IMAGE, "latest", V2)
    replacing = new_deployment(first.extensions["deployer"])
    kill_when_step_starts(first.extensions["deployer"], replacing, step)

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()
    resumed = finished(second, replacing.id)

    assert resumed.state is DeploymentState.SUCCEEDED
    assert hand.id not in backend.containers
    assert [c.name for c in backend.running("web")] == [f"web-{replacing.id}"]
    assert resumed.steps[-1].detail == "stopped and removed web-by-hand"
    assert second.store.adopted() == []


def test_render_nginx_changes_nothing_in_the_store(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend, config: Config
) -> None:
    hand = backend.run_by_hand("web-by-hand", V1, 18500)
    adopt(client, container="web-by-hand")
    backend.remove(hand.id)  # gone from the engine: the next start forgets it, not a render

    text = render_current(config, backend, runtime.store, runtime.nginx)

    assert "upstream web {" in text
    assert [row.id for row in runtime.store.adopted()] == [hand.id]


def test_a_push_during_the_takeover_waits_for_it_then_replaces_the_taken_over_container(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The takeover checks the queue, then probes the container (up to 2 s), then switches: a
    push in that window must wait behind it, never run beside it."""
    runtime.start()
    hand = backend.run_by_hand("web-by-hand", V1, 18500)
    backend.push(WEB_IMAGE, "latest", V2)
    probe = runtime.bluegreen.probe
    pushed: list[str] = []

    def probe_while_a_push_arrives(url: str, timeout: float) -> int:
        pushed.append(runtime.queue.submit("web", WEB_IMAGE, "latest", "push").id)
        time.sleep(0.2)  # the probe's time: the push must not start in it
        return probe(url, timeout)

    monkeypatch.setattr(runtime.bluegreen, "probe", probe_while_a_push_arrives)

    answer = adopt(client, container="web-by-hand")
    push = finished(runtime, pushed[0])

    taken = runtime.store.get(answer.json["id"])
    assert answer.status_code == 201, answer.json
    assert taken is not None
    assert taken.finished_at is not None
    assert push.started_at is not None
    assert push.started_at >= taken.finished_at  # queued behind the takeover
    assert (push.state, push.previous_digest) == (DeploymentState.SUCCEEDED, V1)
    assert hand.id not in backend.containers  # the push replaced it as any release
    assert [c.name for c in backend.running("web")] == [push.container]


def test_a_takeover_is_refused_while_a_deployment_of_the_service_waits(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    hand = backend.run_by_hand("web-by-hand", V1, 18500)
    waiting = runtime.queue.submit("web", WEB_IMAGE, "latest", "push")  # no dispatcher: waits

    answer = adopt(client, container="web-by-hand")

    assert answer.status_code == 409
    assert answer.json["error"] == "a deployment of web is queued or running; try later"
    assert runtime.queue.busy("web")
    assert runtime.store.get(waiting.id) is not None
    assert hand.id in backend.containers
    assert runtime.fleet.serving("web") is None
