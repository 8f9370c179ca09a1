"""POST /webhooks/dockerhub/<token>: every answer of the contract."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from deployer.backends.base import ContainerInfo, ContainerSpec
from deployer.runtime import Runtime
from tests.conftest import TOKEN, WEB_IMAGE
from tests.fakes import FakeBackend
from tests.helpers import PAYLOAD, finished

URL = f"/webhooks/dockerhub/{TOKEN}"


def with_changes(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(json.dumps(PAYLOAD))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = payload
        for parent in parents:
            target = target[parent]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return payload


def test_push_for_a_followed_repository_queues_a_deployment(
    client: FlaskClient, runtime: Runtime
) -> None:
    answer = client.post(URL, json=PAYLOAD)

    assert answer.status_code == 202
    [queued] = answer.json["deployments"]  # type: ignore[index]
    assert queued["service"] == "web"
    stored = runtime.store.get(queued["id"])
    assert stored is not None
    assert (stored.state, stored.tag, stored.trigger) == (
        "queued",
        "latest",
        "dockerhub push acme/web:latest",
    )


def test_push_nobody_follows_is_accepted_with_a_reason(
    client: FlaskClient, runtime: Runtime
) -> None:
    answer = client.post(URL, json=with_changes(push_data__tag="dev"))

    assert answer.status_code == 202
    assert answer.json == {
        "deployments": [],
        "reason": "no configured service follows acme/web:dev",
    }
    assert runtime.store.history() == []


def test_wrong_token_is_forbidden_without_detail(client: FlaskClient, runtime: Runtime) -> None:
    answer = client.post("/webhooks/dockerhub/wrong-token-0123456789", json=PAYLOAD)

    assert answer.status_code == 403
    assert answer.json == {"error": "forbidden"}
    assert runtime.store.history() == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[]", "(body): input should be a valid dictionary"),
        (json.dumps(with_changes(push_data=None)).encode(), "push_data: field required"),
        (json.dumps(with_changes(push_data__tag=None)).encode(), "push_data.tag: field required"),
        (
            json.dumps(with_changes(push_data__tag=7)).encode(),
            "push_data.tag: input should be a valid string",
        ),
        (
            json.dumps(with_changes(repository__repo_name=None)).encode(),
            "repository.repo_name: field required",
        ),
        (
            json.dumps(with_changes(repository__repo_name="Acme/../x y")).encode(),
            "repository.repo_name: string should match pattern",
        ),
        (  # only the first letter is lowercased: the pattern is quoted as it is
            json.dumps(with_changes(push_data__tag="bad tag")).encode(),
            "push_data.tag: string should match pattern '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$'",
        ),
        (b"\xff\xfe", "body is not valid JSON"),
    ],
)
def test_malformed_payloads_get_400_naming_the_problem(
    client: FlaskClient, runtime: Runtime, body: bytes, reason: str
) -> None:
    answer = client.post(URL, data=body, content_type="application/json")

    assert answer.status_code == 400
    assert reason in answer.json["error"]  # type: ignore[index]
    assert runtime.store.history() == []


def test_extra_fields_and_null_images_are_ignored(client: FlaskClient) -> None:
    payload = with_changes(push_data__images=None, push_data__extra={"x": 1}, surprise=True)

    assert client.post(URL, json=payload).status_code == 202


def test_body_over_one_mebibyte_is_413(client: FlaskClient) -> None:
    answer = client.post(URL, data=b"x" * (1024 * 1024 + 1), content_type="application/json")

    assert answer.status_code == 413
    assert "larger than 1048576 bytes" in answer.json["error"]  # type: ignore[index]


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_are_405(client: FlaskClient, method: str) -> None:
    answer = getattr(client, method)(URL)

    assert answer.status_code == 405
    assert "error" in answer.json


def test_token_never_reaches_the_log(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    client.post(URL, json=PAYLOAD)
    client.post(URL, data=b"{", content_type="application/json")
    client.get(URL)

    assert caplog.records
    assert TOKEN not in caplog.text


def test_stopping_deployer_answers_503(client: FlaskClient, runtime: Runtime) -> None:
    runtime.stopping.set()

    answer = client.post(URL, json=PAYLOAD)

    assert answer.status_code == 503
    assert "stopping" in answer.json["error"]  # type: ignore[index]


def test_a_burst_of_identical_pushes_runs_the_rollout_once_without_waiting(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", "sha256:" + "1" * 64)
    burst_over = threading.Event()  # the first rollout's start waits for the whole burst, so
    start = backend.start  # that "while it runs" does not depend on this machine's load

    def start_after_the_burst(spec: ContainerSpec) -> ContainerInfo:
        assert burst_over.wait(10)
        return start(spec)

    backend.start = start_after_the_burst  # type: ignore[method-assign]
    runtime.start()  # queue.coalesce is 0: the first push starts at once
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.post(URL, json=PAYLOAD)))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    burst_over.set()

    ids = {answer.json["deployments"][0]["id"] for answer in answers}  # type: ignore[index]
    for deployment_id in ids:
        finished(runtime, deployment_id)
    states = sorted(runtime.store.get(i).state.value for i in ids)  # type: ignore[union-attr]
    assert [answer.status_code for answer in answers] == [202] * 20
    # One ran the rollout; pushes that came while it ran joined one follow-up, which
    # resolved again and found nothing new.
    assert states in (["succeeded"], ["skipped", "succeeded"])
    assert len(backend.running("web")) == 1


def resolved(runtime: Runtime, deployment_id: str) -> bool:
    found = runtime.store.get(deployment_id)
    return found is not None and found.digest is not None


def test_a_push_during_a_deployment_for_a_moved_tag_deploys_the_new_digest_next(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", "sha256:" + "1" * 64, behaviour="silent")
    runtime.start()
    first = client.post(URL, json=PAYLOAD).json["deployments"][0]["id"]  # type: ignore[index]
    while not resolved(runtime, first):  # it runs, with digest 1
        time.sleep(0.005)
    backend.push(WEB_IMAGE, "latest", "sha256:" + "2" * 64)  # the tag moved meanwhile
    follow_up = client.post(URL, json=PAYLOAD).json["deployments"][0]["id"]  # type: ignore[index]

    assert follow_up != first
    assert finished(runtime, first).state.value == "failed"
    done = finished(runtime, follow_up)
    assert (done.state.value, done.digest) == ("succeeded", "sha256:" + "2" * 64)
