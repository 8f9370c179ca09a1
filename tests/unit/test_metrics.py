"""GET /metrics: counters and histograms move with webhooks and deployments."""

from __future__ import annotations

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, TOKEN, WEB_IMAGE
from tests.fakes import FakeBackend
from tests.helpers import PAYLOAD, finished

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.get_data(as_text=True))
        for sample in family.samples
    }


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_webhook_outcomes_are_counted_and_the_token_never_appears(client: FlaskClient) -> None:
    before = samples(client)
    client.post(
        f"/webhooks/dockerhub/{TOKEN}", json={**PAYLOAD, "repository": {"repo_name": "x/y"}}
    )
    client.post("/webhooks/dockerhub/wrong-token", json=PAYLOAD)
    client.post(f"/webhooks/dockerhub/{TOKEN}", data=b"{not json")
    client.post(f"/webhooks/dockerhub/{TOKEN}", data=b"x" * (1024 * 1024 + 1))

    after = samples(client)

    for outcome in ("ignored", "bad_token", "bad_request", "too_large"):
        key = dict(source="dockerhub", outcome=outcome)
        assert value(before, "deployer_webhooks_total", **key) == 0
        assert value(after, "deployer_webhooks_total", **key) == 1, outcome
    assert TOKEN not in client.get("/metrics").get_data(as_text=True)


def test_deployments_move_counters_histograms_and_the_digest_gauge(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    runtime.start()
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    backend.push(WEB_IMAGE, "latest", V1)
    finished(runtime, client.post("/services/web/deploy", headers=auth).json["id"])  # type: ignore[index]
    backend.push(WEB_IMAGE, "latest", V2, behaviour="exit")
    answer = client.post(f"/webhooks/dockerhub/{TOKEN}", json=PAYLOAD)
    finished(runtime, answer.json["deployments"][0]["id"])  # type: ignore[index]

    found = samples(client)

    assert value(found, "deployer_webhooks_total", source="dockerhub", outcome="accepted") == 1
    assert value(found, "deployer_deployments_total", service="web", state="succeeded") == 1
    assert value(found, "deployer_deployments_total", service="web", state="failed") == 1
    assert value(found, "deployer_deployments_total", service="api", state="failed") == 0
    assert value(found, "deployer_deployment_duration_seconds_count", service="web") == 2
    assert value(found, "deployer_step_duration_seconds_count", step="nginx") == 1
    assert value(found, "deployer_step_duration_seconds_count", step="healthy") == 2
    container = runtime.fleet.serving("web").names  # type: ignore[union-attr]
    assert (
        value(found, "deployer_service_digest_info", service="web", digest=V1, container=container)
        == 1
    )
    assert value(found, "deployer_deployment_running", service="web") == 0
