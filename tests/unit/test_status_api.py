"""GET /status, /deployments, /deployments/<id>, /healthz."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from deployer.documents import deployment_json
from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, TOKEN, WEB_IMAGE
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


def seed_history(runtime: Runtime, count: int) -> list[Deployment]:
    """count finished deployments of web and api, then one still running, newest last."""
    made = []
    for number in range(count + 1):
        created = utc_now() + timedelta(seconds=number)
        deployment = Deployment(
            id=f"h{number:03d}",
            service=("web", "api")[number % 2],
            trigger="push",
            image="img",
            tag="latest",
            state=DeploymentState.SUCCEEDED if number < count else DeploymentState.RUNNING,
            digest=V1,
            created_at=created,
            started_at=created,
            finished_at=created + timedelta(seconds=1) if number < count else None,
            logs="secret=1" if number == 3 else None,
            steps=[Step(f"s{i}", StepState.SUCCEEDED, created, created) for i in range(3)],
        )
        runtime.store.save(deployment)
        made.append(deployment)
    return made


def expected_listing(app: Flask, found: list[Deployment], show_logs: bool) -> bytes:
    with app.app_context():
        body = jsonify({"deployments": [deployment_json(item, show_logs) for item in found]})
        return bytes(body.data)


@pytest.mark.parametrize(
    ("query", "service", "before"),
    [
        ("", None, None),
        ("?service=web&limit=4", "web", None),
        ("?before=h005&limit=3", None, "h005"),
    ],
)
@pytest.mark.parametrize("compact", [None, False])
def test_the_deployments_list_is_the_documents_of_the_history_page(
    app: Flask,
    client: FlaskClient,
    runtime: Runtime,
    query: str,
    service: str | None,
    before: str | None,
    compact: bool | None,
) -> None:
    seed_history(runtime, 8)
    app.json.compact = compact  # type: ignore[attr-defined]  # False: indented, as in debug
    limit = int(query.rsplit("=", 1)[1]) if "limit" in query else 20
    found = runtime.store.history(service, limit, before)

    for headers, show_logs in (({}, False), ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, True)):
        for _ in range(2):  # built, then kept
            answer = client.get(f"/deployments{query}", headers=headers)
            assert answer.status_code == 200
            assert answer.content_type == "application/json"
            assert answer.data == expected_listing(app, found, show_logs)


def test_a_listed_finished_deployment_is_not_loaded_again_but_a_running_or_changed_one_is(
    client: FlaskClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = seed_history(runtime, 5)
    loaded: list[str] = []
    for method in ("history", "many", "get"):
        original = getattr(runtime.store, method)

        def spy(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            found = _original(*args, **kwargs)
            items = found.values() if isinstance(found, dict) else found
            loaded.extend(item.id for item in ([items] if isinstance(items, Deployment) else items))
            return found

        monkeypatch.setattr(runtime.store, method, spy)
    client.get("/deployments")
    loaded.clear()

    listed = client.get("/deployments").json["deployments"]  # type: ignore[index]

    assert [item["id"] for item in listed] == [d.id for d in reversed(made)]
    assert loaded == ["h005"]  # only the running one: its steps may have changed
    changed = made[2]
    changed.error = "noted afterwards"
    runtime.store.save(changed)
    loaded.clear()
    listed = client.get("/deployments").json["deployments"]  # type: ignore[index]
    assert sorted(loaded) == ["h002", "h005"]
    assert listed[3]["error"] == "noted afterwards"
