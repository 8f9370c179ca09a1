"""Admin API: authentication, deploy now, rollback target choice, image retention."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deployer.models import Deployment, DeploymentState
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, TOKEN, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import finished

V1, V2, V3 = ("sha256:" + digit * 64 for digit in "123")
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def release(
    client: FlaskClient,
    runtime: Runtime,
    backend: FakeBackend,
    digest: str,
    behaviour: str = "serve",
) -> Deployment:
    """Push `digest` as web:latest and deploy it through the admin API."""
    backend.push(WEB_IMAGE, "latest", digest, behaviour)
    answer = client.post("/services/web/deploy", headers=AUTH)
    assert answer.status_code == 202, answer.json
    return finished(runtime, answer.json["id"])  # type: ignore[index]


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({}, 401, "send the admin token as `Authorization: Bearer <token>`"),
        ({"Authorization": f"Basic {ADMIN_TOKEN}"}, 401, "send the admin token"),
        ({"Authorization": "Bearer "}, 401, "send the admin token"),
        ({"Authorization": "Bearer wrong-token-0123456789"}, 403, "wrong admin token"),
        ({"Authorization": f"Bearer {TOKEN}"}, 403, "wrong admin token"),  # webhook secret
    ],
)
@pytest.mark.parametrize("action", ["deploy", "rollback"])
def test_admin_requests_without_the_right_token_are_refused(
    client: FlaskClient,
    runtime: Runtime,
    headers: dict[str, str],
    status: int,
    message: str,
    action: str,
) -> None:
    answer = client.post(f"/services/web/{action}", headers=headers)

    assert answer.status_code == status
    assert message in answer.json["error"]  # type: ignore[index]
    if status == 401:
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert runtime.store.history() == []


def test_admin_api_is_off_with_a_clear_message_without_its_token(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    client = make_app(make_config(tmp_path), environ={"DEPLOYER_TOKEN": TOKEN}).test_client()

    answer = client.post("/services/web/deploy", headers=AUTH)

    assert answer.status_code == 503
    assert "set the environment variable DEPLOYER_ADMIN_TOKEN" in answer.json["error"]  # type: ignore[index]


def test_deploy_with_a_tag_goes_through_the_queue(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "v2.1", V2)
    runtime.start()

    answer = client.post("/services/web/deploy", headers=AUTH, json={"tag": "v2.1"})

    assert answer.status_code == 202
    assert answer.json["state"] == "queued"  # type: ignore[index]
    done = finished(runtime, answer.json["id"])  # type: ignore[index]
    assert (done.state, done.tag, done.digest) == (DeploymentState.SUCCEEDED, "v2.1", V2)
    assert done.trigger.startswith("admin deploy v2.1 from ")


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/services/nope/deploy", b"", 404, "no service named 'nope'"),
        ("/services/web/deploy", b"{", 400, "body is not valid JSON"),
        ("/services/web/deploy", b'{"tag": "a b"}', 400, "tag: string should match pattern"),
        ("/services/web/deploy", b'{"tagg": "v1"}', 400, "tagg: extra inputs are not permitted"),
        ("/services/web/rollback", b'{"digest": "v1"}', 400, "digest: string should match"),
        ("/services/nope/rollback", b"", 404, "no service named 'nope'"),
    ],
)
def test_bad_admin_requests_name_the_problem(
    client: FlaskClient, runtime: Runtime, path: str, body: bytes, status: int, message: str
) -> None:
    answer = client.post(path, headers=AUTH, data=body, content_type="application/json")

    assert answer.status_code == status
    assert message in answer.json["error"]  # type: ignore[index]
    assert runtime.store.history() == []


def test_rollback_deploys_the_previous_succeeded_digest_from_the_kept_image(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    runtime.start()
    release(client, runtime, backend, V1)
    release(client, runtime, backend, V2)
    assert release(client, runtime, backend, V3, behaviour="exit").state is DeploymentState.FAILED
    del backend.tags[(WEB_IMAGE, "latest")]  # the registry is gone: no resolve possible

    answer = client.post("/services/web/rollback", headers=AUTH)

    done = finished(runtime, answer.json["id"])  # type: ignore[index]
    assert done.state is DeploymentState.SUCCEEDED, done.error
    assert (done.digest, done.previous_digest) == (V1, V2)
    assert done.trigger.startswith("admin rollback from ")
    resolve, pull = done.steps[:2]
    assert resolve.detail == f"asked for {WEB_IMAGE}@{V1} (no registry lookup)"
    assert pull.detail.endswith("is on the engine already")
    assert [container.digest for container in backend.running("web")] == [V1]
    assert backend.pulled == {V1, V2}  # the failed release's image was pruned


def test_rollback_to_an_explicit_digest_and_when_there_is_nothing_to_roll_back_to(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    runtime.start()
    nothing = client.post("/services/web/rollback", headers=AUTH)
    release(client, runtime, backend, V1)
    only_one = client.post("/services/web/rollback", headers=AUTH)
    already = client.post("/services/web/rollback", headers=AUTH, json={"digest": V1})
    release(client, runtime, backend, V2)

    explicit = client.post("/services/web/rollback", headers=AUTH, json={"digest": V1})

    assert nothing.status_code == 409
    assert "web has no earlier succeeded deployment" in nothing.json["error"]  # type: ignore[index]
    assert only_one.status_code == 409
    assert already.status_code == 409
    assert f"web runs {V1} already" in already.json["error"]  # type: ignore[index]
    assert finished(runtime, explicit.json["id"]).digest == V1  # type: ignore[index]


def test_only_the_newest_images_are_kept(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend
) -> None:
    services: dict[str, Any] = {
        "web": {"image": WEB_IMAGE, "ports": "18000-18009", "drain": 0, "keep_images": 2}
    }
    app = make_app(make_config(tmp_path, services=services))
    runtime: Runtime = app.extensions["deployer"]
    runtime.start()
    client = app.test_client()
    for digest in (V1, V2, V3):
        release(client, runtime, backend, digest)

    assert backend.pulled == {V2, V3}
