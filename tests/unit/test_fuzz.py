"""Property-based fuzzing of every input edge: never a 5xx, never a traceback, always the
documented status code (and a JSON error naming the problem)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deployer.config import load_config, parse_config
from deployer.errors import ConfigError
from tests.conftest import ADMIN_TOKEN, ENVIRON, TOKEN
from tests.helpers import PAYLOAD

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Payload fields replaced by anything: the parser sees real shapes with wrong contents.
payload_paths = st.sampled_from(
    [("push_data",), ("push_data", "tag"), ("repository",), ("repository", "repo_name"), ()]
)


def assert_json_answer(answer: Any, allowed: set[int]) -> None:
    assert answer.status_code in allowed, (answer.status_code, answer.get_data(as_text=True))
    body = answer.get_json()
    assert isinstance(body, dict)
    if answer.status_code >= 400:
        assert isinstance(body["error"], str)
        assert body["error"]
        assert "Traceback" not in body["error"]


def with_value(path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    payload: dict[str, Any] = json.loads(json.dumps(PAYLOAD))
    target = payload
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return payload


@FUZZ
@given(body=st.binary(max_size=300))
def test_webhook_bytes(client: FlaskClient, body: bytes) -> None:
    assert_json_answer(client.post(f"/webhooks/dockerhub/{TOKEN}", data=body), {202, 400})


@FUZZ
@given(path=payload_paths, value=json_values)
def test_webhook_payload_shapes(client: FlaskClient, path: tuple[str, ...], value: Any) -> None:
    body = json.dumps(with_value(path, value))
    assert_json_answer(client.post(f"/webhooks/dockerhub/{TOKEN}", data=body), {202, 400})


@FUZZ
@given(token=st.text(min_size=1, max_size=60).filter(lambda text: "/" not in text))
def test_webhook_tokens(client: FlaskClient, token: str) -> None:
    answer = client.post(f"/webhooks/dockerhub/{token}", json=PAYLOAD)
    assert_json_answer(answer, {202, 403, 404})


@FUZZ
@given(
    action=st.sampled_from(["deploy", "rollback"]),
    body=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
)
def test_admin_bodies(client: FlaskClient, action: str, body: bytes) -> None:
    answer = client.post(f"/services/web/{action}", data=body, headers=ADMIN)
    assert_json_answer(answer, {202, 400, 409})


@FUZZ
@given(
    service=st.one_of(st.none(), st.text(max_size=20)),
    limit=st.one_of(st.none(), st.text(max_size=8)),
)
def test_history_query(client: FlaskClient, service: str | None, limit: str | None) -> None:
    query = {
        key: value for key, value in (("service", service), ("limit", limit)) if value is not None
    }
    assert_json_answer(client.get("/deployments", query_string=query), {200, 400, 404})


@FUZZ
@given(deployment_id=st.text(min_size=1, max_size=40).filter(lambda text: "/" not in text))
def test_deployment_ids(client: FlaskClient, deployment_id: str) -> None:
    assert_json_answer(client.get(f"/deployments/{deployment_id}"), {200, 404})


def problems_of(load: Callable[[], object]) -> list[str] | None:
    """The problems a config load reports, or None when it loaded; anything else escapes."""
    try:
        load()
    except ConfigError as err:
        return err.problems
    return None


@FUZZ
@given(data=json_values)
def test_config_documents(data: Any) -> None:
    problems = problems_of(lambda: parse_config(data, environ=ENVIRON))
    assert problems is None or (problems and all(": " in problem for problem in problems))


@FUZZ
@given(
    service=st.dictionaries(
        st.sampled_from(
            ["image", "ports", "tag", "network", "port", "env", "health", "drain", "stop_timeout"]
        ),
        json_values,
        max_size=6,
    )
)
def test_config_service_entries(service: dict[str, Any]) -> None:
    problems = problems_of(lambda: parse_config({"services": {"web": service}}, environ=ENVIRON))
    assert problems is None or all(problem.startswith("services.web") for problem in problems)


@FUZZ
@given(text=st.one_of(st.binary(max_size=300), json_values.map(yaml.safe_dump).map(str.encode)))
def test_config_files(tmp_path_factory: pytest.TempPathFactory, text: bytes) -> None:
    path = tmp_path_factory.mktemp("config") / "deployer.yml"
    path.write_bytes(text)
    problems = problems_of(lambda: load_config(path, environ=ENVIRON))
    assert problems is None or problems


def test_the_fuzzed_app_never_logged_an_internal_error(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A hand-picked sample of the nastiest inputs, with the log watched for tracebacks."""
    for body in (b"\xff\xfe", b"[" * 50_000, b'{"push_data": {"tag": "\\ud800"}}', b"1e999999"):
        client.post(f"/webhooks/dockerhub/{TOKEN}", data=body)
        client.post("/services/web/deploy", data=body, headers=ADMIN)
    client.get("/deployments", query_string={"limit": "\u00b2"})

    assert not [record for record in caplog.records if record.exc_info]


def test_config_path_is_read_relative(tmp_path: Path) -> None:
    """Sanity for the file fuzzer: a valid file loads."""
    path = tmp_path / "deployer.yml"
    path.write_text("services: {}\n")
    assert load_config(path, environ=ENVIRON).services == {}
