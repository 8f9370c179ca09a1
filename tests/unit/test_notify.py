"""Notifications through `responses`: payload shapes, retries, a stuck receiver never blocks."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import responses
from flask import Flask

from deployer.config import NotifyTarget
from deployer.models import Deployment, DeploymentState, utc_now
from deployer.notify import Notifier, make_message
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, ENVIRON, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import finished

HOOK = "http://127.0.0.1:9/hooks/deployer"
V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def a_deployment(state: DeploymentState = DeploymentState.FAILED) -> Deployment:
    now = utc_now()
    return Deployment(
        id="d1",
        service="web",
        trigger="dockerhub push acme/web:latest",
        image=WEB_IMAGE,
        tag="latest",
        state=state,
        digest=V2,
        previous_digest=V1,
        error="web (container web-d1) exited (status 3) before it was healthy\nlog line",
        started_at=now,
        finished_at=now,
    )


def notifier(**target: Any) -> tuple[Notifier, list[float]]:
    slept: list[float] = []
    found = Notifier([NotifyTarget(url=HOOK, **target)], {}, sleep=slept.append)
    return found, slept


def test_json_and_slack_messages() -> None:
    body = make_message(a_deployment(), "json")
    slack = make_message(a_deployment(), "slack")

    assert {
        key: body[key] for key in ("event", "service", "state", "old_digest", "new_digest")
    } == {
        "event": "deployment.finished",
        "service": "web",
        "state": "failed",
        "old_digest": V1,
        "new_digest": V2,
    }
    assert body["duration_seconds"] == 0
    assert body["error"].startswith("web (container web-d1) exited")
    assert body["deployment"]["id"] == "d1"
    assert slack == {
        "text": f":x: *web* failed: {V1[:19]} -> {V2[:19]} in 0.0 s "
        "(dockerhub push acme/web:latest, deployment d1)\n"
        "> web (container web-d1) exited (status 3) before it was healthy"
    }


@responses.activate(assert_all_requests_are_fired=True)
def test_a_failing_receiver_is_retried_with_backoff_then_succeeds() -> None:
    responses.post(HOOK, status=502)
    responses.post(HOOK, body=requests.ConnectionError("refused"))
    responses.post(HOOK, status=204)
    sender, slept = notifier(attempts=3)

    sender.deployment_finished(a_deployment())
    sender.wait_idle()

    assert (sender.sent, sender.failed) == (1, 0)
    assert slept == [1.0, 2.0]
    assert json.loads(responses.calls[2].request.body)["state"] == "failed"  # type: ignore[arg-type]


@responses.activate(assert_all_requests_are_fired=True)
def test_a_timeout_on_every_attempt_gives_up_after_the_bound() -> None:
    responses.post(HOOK, body=requests.Timeout("read timed out"))
    sender, slept = notifier(attempts=2, timeout=0.5)

    sender.deployment_finished(a_deployment())
    sender.wait_idle()

    assert (sender.sent, sender.failed) == (0, 1)
    assert len(responses.calls) == 2
    assert slept == [1.0]


@responses.activate(assert_all_requests_are_fired=True)
def test_a_refusing_receiver_is_not_retried_and_unwanted_states_are_not_sent() -> None:
    responses.post(HOOK, status=400)
    sender, _ = notifier(on=["failed"])

    sender.deployment_finished(a_deployment(DeploymentState.SUCCEEDED))
    sender.deployment_finished(a_deployment(DeploymentState.FAILED))
    sender.wait_idle()

    assert len(responses.calls) == 1
    assert sender.failed == 1


@responses.activate(assert_all_requests_are_fired=True)
def test_a_stuck_receiver_never_blocks_a_deployment(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    release = threading.Event()

    def stuck(request: Any) -> tuple[int, dict[str, str], str]:
        release.wait(10)
        return 200, {}, "ok"

    responses.add_callback(responses.POST, "http://127.0.0.1:9/hooks/ci", callback=stuck)
    environ = {**ENVIRON, "HOOK_PATH": "ci"}
    config = make_config(
        tmp_path, environ=environ, notify=[{"url": "http://127.0.0.1:9/hooks/${HOOK_PATH}"}]
    )
    app = make_app(config, environ=environ)
    runtime: Runtime = app.extensions["deployer"]
    runtime.start()
    backend.push(WEB_IMAGE, "latest", V1)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    first = app.test_client().post("/services/web/deploy", headers=auth).json["id"]  # type: ignore[index]
    assert finished(runtime, first).state is DeploymentState.SUCCEEDED
    backend.push(WEB_IMAGE, "latest", V2)

    second = app.test_client().post("/services/web/deploy", headers=auth).json["id"]  # type: ignore[index]
    assert finished(runtime, second).state is DeploymentState.SUCCEEDED

    # Both deployments finished while the receiver still held the first message.
    assert not release.is_set()
    release.set()
    runtime.notifier.wait_idle()
    assert runtime.notifier.sent == 2
    assert [json.loads(call.request.body)["deployment"]["id"] for call in responses.calls] == [  # type: ignore[arg-type]
        first,
        second,
    ]
