"""Hostile and odd HTTP input: never a 500, always the documented status and headers."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, TOKEN
from tests.helpers import PAYLOAD

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_in_a_webhook_is_400(client: FlaskClient) -> None:
    answer = client.post(f"/webhooks/dockerhub/{TOKEN}", data=DEEP)

    assert answer.status_code == 400
    assert answer.json == {"error": "bad Docker Hub payload: body is nested too deeply"}


def test_deeply_nested_json_in_an_admin_body_is_400(client: FlaskClient) -> None:
    answer = client.post("/services/web/deploy", data=DEEP, headers=ADMIN)

    assert answer.status_code == 400
    assert answer.json == {"error": "body is nested too deeply"}


@pytest.mark.parametrize("limit", ["²", "٣", "1e3", " 5", "5 ", "+5", "0x10", ""])
def test_limit_must_be_plain_ascii_digits(client: FlaskClient, limit: str) -> None:
    answer = client.get("/deployments", query_string={"limit": limit})

    assert answer.status_code == 400
    assert answer.json == {"error": f"limit: expected a whole number from 1 to 500, got {limit!r}"}


def test_405_says_which_methods_are_allowed(client: FlaskClient) -> None:
    webhook = client.get(f"/webhooks/dockerhub/{TOKEN}")
    admin = client.get("/services/web/deploy", headers=ADMIN)

    assert (webhook.status_code, admin.status_code) == (405, 405)
    assert "POST" in webhook.headers["Allow"]
    assert "POST" in admin.headers["Allow"]
    assert webhook.json is not None


def test_answers_that_depend_on_accept_say_so(client: FlaskClient) -> None:
    found = client.get("/deployments/nope")
    page = client.get("/deployments/nope", headers={"Accept": "text/html"})

    assert "Accept" in found.headers.get("Vary", "")
    assert "Accept" in page.headers.get("Vary", "")


def test_202_answers_point_at_the_deployment(client: FlaskClient, runtime: Runtime) -> None:
    pushed = client.post(f"/webhooks/dockerhub/{TOKEN}", json=PAYLOAD)
    deployed = client.post("/services/api/deploy", headers=ADMIN)

    first = pushed.json["deployments"][0]  # type: ignore[index]
    assert pushed.headers["Location"] == f"/deployments/{first['id']}"
    assert first["url"] == f"/deployments/{first['id']}"
    assert deployed.headers["Location"] == f"/deployments/{deployed.json['id']}"  # type: ignore[index]
    assert client.get(pushed.headers["Location"]).status_code == 200
