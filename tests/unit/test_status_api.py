"""GET /status, /deployments, /deployments/<id>, /healthz."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from deployer.runtime import Runtime
from tests.conftest import TOKEN, WEB_IMAGE
from tests.fakes import FakeBackend
from tests.helpers import PAYLOAD

V1 = "sha256:" + "1" * 64


def push_and_wait(client: FlaskClient, runtime: Runtime) -> str:
    answer = client.post(f"/webhooks/dockerhub/{TOKEN}", json=PAYLOAD)
    deployment_id: str = answer.json["deployments"][0]["id"]  # type: ignore[index]
    deadline = time.monotonic() + 5
    while not runtime.queue.idle() or runtime.store.get(deployment_id).state == "queued":  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return deployment_id


def test_status_before_any_deployment_says_absent(client: FlaskClient, runtime: Runtime) -> None:
    runtime.start()

    assert client.get("/status").json == {
        "services": {
            name: {
                "image": f"{image}:latest",
                "engine": "docker",
                "digest": None,
                "container": None,
                "address": None,
                "state": "absent",
                "health": None,
                "since": None,
                "replicas": [],
                "last_deployment": None,
            }
            for name, image in (("web", WEB_IMAGE), ("api", "registry.example.com/acme/api"))
        }
    }


def test_status_and_history_after_a_deployment(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.start()

    deployment_id = push_and_wait(client, runtime)

    web = client.get("/status").json["services"]["web"]  # type: ignore[index]
    assert (web["state"], web["digest"], web["container"]) == (
        "running",
        V1,
        f"web-{deployment_id}",
    )
    assert web["since"].endswith("Z")
    assert web["health"] == "running"  # the image has no HEALTHCHECK
    assert web["last_deployment"]["id"] == deployment_id
    detail = client.get(f"/deployments/{deployment_id}").json
    assert detail["state"] == "succeeded"  # type: ignore[index]
    assert [step["name"] for step in detail["steps"]] == [  # type: ignore[index]
        "resolve",
        "pull",
        "start",
        "healthy",
        "nginx",
    ]
    listing = client.get("/deployments?service=web&limit=5").json
    assert [item["id"] for item in listing["deployments"]] == [deployment_id]  # type: ignore[index]


def test_failed_last_deployment_shows_failed_with_the_old_container(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.start()
    good = push_and_wait(client, runtime)
    backend.push(WEB_IMAGE, "latest", "sha256:" + "2" * 64, behaviour="exit")

    push_and_wait(client, runtime)

    web = client.get("/status").json["services"]["web"]  # type: ignore[index]
    assert (web["state"], web["container"]) == ("failed", f"web-{good}")
    assert "exited (status 3)" in web["last_deployment"]["error"]


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("/deployments/nope", 404, "no deployment with id 'nope'"),
        ("/deployments?service=nope", 404, "no service named 'nope' is configured"),
        ("/deployments?limit=0", 400, "limit: expected a whole number from 1 to 500, got '0'"),
        ("/deployments?limit=x", 400, "limit: expected a whole number from 1 to 500, got 'x'"),
        ("/deployments?before=nope", 400, "before: no deployment with id 'nope'"),
        ("/nowhere", 404, "The requested URL was not found"),
    ],
)
def test_bad_queries_get_json_errors(
    client: FlaskClient, url: str, status: int, message: str
) -> None:
    answer = client.get(url)

    assert answer.status_code == status
    assert message in answer.json["error"]  # type: ignore[index]


def test_healthz(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}


def test_a_finished_deployments_document_is_built_once_and_a_changed_one_anew() -> None:
    from deployer.documents import deployment_json
    from deployer.models import Deployment, DeploymentState, utc_now

    running = Deployment(id="m1", service="web", trigger="t", image="i", tag="latest")
    running.state = DeploymentState.RUNNING
    assert deployment_json(running) is not deployment_json(running)  # unfinished: fresh

    running.state, running.finished_at = DeploymentState.FAILED, utc_now()
    running.error = "interrupted at healthy"
    first = deployment_json(running)
    assert deployment_json(running) is first
    assert first["state"] == "failed"
    assert deployment_json(running, show_logs=True) is not first  # another reader, another key
    running.error = "interrupted at healthy; web-1 removed"
    assert deployment_json(running)["error"] == "interrupted at healthy; web-1 removed"
