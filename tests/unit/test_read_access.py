"""Reads behind an optional token, and container log lines only for authenticated readers."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from deployer.models import DeploymentState
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, ENVIRON, TOKEN, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import deploy

READ_TOKEN = "read-token-0123456789abcdef"
READS = ["/status", "/deployments", "/metrics", "/"]
V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
LOG_LINE = "fatal: cannot read /etc/app.conf"


def basic(password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"operator:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def guarded(make_app: Callable[..., Flask], tmp_path: Path) -> tuple[FlaskClient, Runtime]:
    environ = {**ENVIRON, "DEPLOYER_READ_TOKEN": READ_TOKEN}
    app = make_app(make_config(tmp_path, environ=environ), environ=environ)
    return app.test_client(), app.extensions["deployer"]


@pytest.fixture
def failed_release(runtime: Runtime, backend: FakeBackend) -> str:
    backend.push(WEB_IMAGE, "latest", V1)
    deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2, behaviour="exit")
    failed = deploy(runtime)
    assert failed.state is DeploymentState.FAILED
    return failed.id


@pytest.mark.parametrize("path", READS)
def test_with_a_read_token_every_read_needs_it(
    guarded: tuple[FlaskClient, Runtime], path: str
) -> None:
    client, _ = guarded

    anonymous = client.get(path)
    wrong = client.get(path, headers=bearer("not-the-token-at-all"))

    assert anonymous.status_code == 401
    assert 'Basic realm="deployer"' in anonymous.headers["WWW-Authenticate"]
    assert 'Bearer realm="deployer"' in anonymous.headers["WWW-Authenticate"]
    assert anonymous.json == {
        "error": "send the read token (or the admin token) as `Authorization: Bearer <token>`, "
        "or as the password of HTTP Basic authentication"
    }
    assert wrong.status_code == 403
    assert wrong.json == {"error": "wrong token"}


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize(
    "headers", [bearer(READ_TOKEN), bearer(ADMIN_TOKEN), basic(READ_TOKEN), basic(ADMIN_TOKEN)]
)
def test_the_read_or_admin_token_opens_every_read(
    guarded: tuple[FlaskClient, Runtime], path: str, headers: dict[str, str]
) -> None:
    client, _ = guarded

    assert client.get(path, headers=headers).status_code == 200


def test_a_wrong_basic_password_asks_the_browser_again(
    guarded: tuple[FlaskClient, Runtime],
) -> None:
    client, _ = guarded

    answer = client.get("/", headers=basic("not-the-token-at-all"))

    assert answer.status_code == 401
    assert "Basic" in answer.headers["WWW-Authenticate"]


def test_healthz_and_webhooks_stay_open(guarded: tuple[FlaskClient, Runtime]) -> None:
    client, _ = guarded

    assert client.get("/healthz").status_code == 200
    assert client.post(f"/webhooks/dockerhub/{TOKEN}", json={}).status_code == 400


def test_a_failed_health_gate_keeps_the_log_lines_apart_from_the_error(
    runtime: Runtime, failed_release: str
) -> None:
    failed = runtime.store.get(failed_release)

    assert failed is not None
    assert failed.logs == LOG_LINE
    assert LOG_LINE not in (failed.error or "")


def test_without_a_read_token_anonymous_readers_see_the_error_but_not_the_log_lines(
    client: FlaskClient, failed_release: str
) -> None:
    detail = client.get(f"/deployments/{failed_release}").json
    listing = client.get("/deployments").json
    status = client.get("/status").json
    page = client.get(f"/deployments/{failed_release}", headers={"Accept": "text/html"})
    index = client.get("/")

    assert detail is not None
    assert listing is not None
    assert status is not None
    assert "exited (status 3) before it was healthy" in detail["error"]
    assert (detail["logs"], detail["logs_withheld"]) == (None, True)
    assert listing["deployments"][0]["logs"] is None
    assert status["services"]["web"]["last_deployment"]["logs"] is None
    for html in (page.text, index.text):
        assert LOG_LINE not in html
    assert "log lines are shown to authenticated readers" in page.text


def test_an_authenticated_reader_sees_the_log_lines(
    client: FlaskClient, failed_release: str
) -> None:
    detail = client.get(f"/deployments/{failed_release}", headers=bearer(ADMIN_TOKEN)).json
    page = client.get(
        f"/deployments/{failed_release}", headers={**basic(ADMIN_TOKEN), "Accept": "text/html"}
    )

    assert detail is not None
    assert (detail["logs"], detail["logs_withheld"]) == (LOG_LINE, False)
    assert LOG_LINE in page.text


def test_notifications_never_carry_log_lines(runtime: Runtime, failed_release: str) -> None:
    from deployer.notify import make_message

    failed = runtime.store.get(failed_release)
    assert failed is not None
    for format in ("json", "slack"):
        assert LOG_LINE not in str(make_message(failed, format))


def test_the_read_token_must_differ_from_the_webhook_token(tmp_path: Path) -> None:
    from deployer.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, environ={**ENVIRON, "DEPLOYER_READ_TOKEN": TOKEN})

    assert any(problem.startswith("read.token_env:") for problem in caught.value.problems)
