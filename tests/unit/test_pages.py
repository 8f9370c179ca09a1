"""The HTML status page and deployment page: what they show, and escaping of hostile text."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask.testing import FlaskClient

from deployer.http.pages import timeline
from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, WEB_IMAGE
from tests.fakes import FakeBackend
from tests.helpers import finished

V1 = "sha256:" + "1" * 64
HOSTILE = '<script>alert("x")</script>'
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def recorded(runtime: Runtime, **fields: object) -> Deployment:
    """A deployment written straight to the store (what a page must cope with)."""
    now = utc_now()
    deployment = Deployment(
        id=str(fields.pop("id", "d1")),
        service=str(fields.pop("service", "web")),
        trigger=str(fields.pop("trigger", "dockerhub push acme/web:latest")),
        image=WEB_IMAGE,
        tag=str(fields.pop("tag", "latest")),
        created_at=now - timedelta(seconds=5),
        started_at=now - timedelta(seconds=4),
        **fields,  # type: ignore[arg-type]
    )
    runtime.store.save(deployment)
    return deployment


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_status_page_shows_each_service_and_its_last_deployments(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    runtime.start()
    backend.push(WEB_IMAGE, "latest", V1)
    answer = client.post("/services/web/deploy", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    done = finished(runtime, answer.json["id"])  # type: ignore[index]

    page = client.get("/")

    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    text = text_of(html)
    assert 'name="viewport"' in html
    assert "http://" not in html.replace("http-equiv", "")  # nothing from outside
    assert 'content="30"' in html  # idle: refreshes slowly
    assert 'id="service-web"' in html
    assert 'id="service-api"' in html
    assert f"web running image {WEB_IMAGE}:latest digest {V1[:19]}" in text
    assert f"container {done.container} on 127.0.0.1:18000" in text
    assert "health running" in text
    assert f'href="/deployments/{done.id}"' in html
    assert "resolve " in text
    assert "nginx " in text
    assert "No deployments yet." in text  # api


def test_failed_deployment_shows_its_error_with_the_log_lines(
    client: FlaskClient, runtime: Runtime, backend: FakeBackend
) -> None:
    runtime.start()
    backend.push(WEB_IMAGE, "latest", V1, behaviour="exit")
    answer = client.post("/services/web/deploy", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    finished(runtime, answer.json["id"])  # type: ignore[index]

    text = text_of(
        client.get("/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).get_data(as_text=True)
    )

    assert "web failed" in text
    assert "exited (status 3) before it was healthy fatal: cannot read /etc/app.conf" in text


def test_running_deployment_shows_its_running_step_and_refreshes_fast(
    client: FlaskClient, runtime: Runtime
) -> None:
    now = utc_now()
    recorded(
        runtime,
        state=DeploymentState.RUNNING,
        steps=[
            Step("resolve", StepState.SUCCEEDED, now, now + timedelta(milliseconds=20), "ok"),
            Step("pull", StepState.RUNNING, now),
        ],
    )

    html = client.get("/").get_data(as_text=True)
    detail = client.get("/deployments/d1", headers=HTML).get_data(as_text=True)

    assert 'content="2"' in html
    assert "pull running…" in text_of(html)
    assert "resolve 0.02 s" in text_of(html)
    assert 'content="2"' in detail
    assert 'class="state step-running"' in detail


def test_hostile_text_is_escaped_everywhere(client: FlaskClient, runtime: Runtime) -> None:
    recorded(
        runtime,
        tag=HOSTILE,
        trigger=f"push by {HOSTILE}",
        state=DeploymentState.FAILED,
        finished_at=utc_now(),
        error=f"container said {HOSTILE}\nand <b>more</b>",
        steps=[Step("healthy", StepState.FAILED, utc_now(), utc_now(), HOSTILE)],
    )

    for html in (
        client.get("/").get_data(as_text=True),
        client.get("/deployments/d1", headers=HTML).get_data(as_text=True),
    ):
        assert "<script>" not in html
        assert "<b>more</b>" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html


def test_deployment_page_or_json_by_accept_header(client: FlaskClient, runtime: Runtime) -> None:
    recorded(runtime, state=DeploymentState.SUCCEEDED, finished_at=utc_now(), digest=V1)

    page = client.get("/deployments/d1", headers=HTML)
    as_json = client.get("/deployments/d1")
    forced = client.get("/deployments/d1?format=json", headers=HTML)
    missing = client.get("/deployments/nope", headers=HTML)

    assert page.content_type.startswith("text/html")
    assert "deployment d1 of web" in text_of(page.get_data(as_text=True))
    assert as_json.json["id"] == "d1"  # type: ignore[index]
    assert forced.json["id"] == "d1"  # type: ignore[index]
    assert missing.status_code == 404
    assert "No deployment with id &#39;nope&#39;" in missing.get_data(as_text=True)


def test_timeline_shares_follow_the_step_times_and_a_tiny_step_stays_visible() -> None:
    item = {
        "steps": [
            {"name": "resolve", "state": "succeeded", "duration_seconds": 0.001},
            {"name": "healthy", "state": "succeeded", "duration_seconds": 3.0},
            {"name": "nginx", "state": "succeeded", "duration_seconds": 1.0},
        ]
    }

    spans = timeline(item)

    percents = [span["percent"] for span in spans]
    assert abs(sum(percents) - 100) < 0.05
    assert percents[0] > 3  # 0.001 s would be invisible at its true share
    assert percents[1] / percents[2] == pytest.approx(3, rel=0.05)
    assert [span["label"] for span in spans] == ["resolve 0.00 s", "healthy 3.00 s", "nginx 1.00 s"]


def test_timeline_counts_a_running_step_up_to_now() -> None:
    started = utc_now() - timedelta(seconds=2)
    item = {
        "steps": [
            {"name": "pull", "state": "succeeded", "duration_seconds": 2.0},
            {
                "name": "start",
                "state": "running",
                "duration_seconds": None,
                "started_at": started.isoformat().replace("+00:00", "Z"),
            },
        ]
    }

    spans = timeline(item, now=started + timedelta(seconds=2))

    assert [span["percent"] for span in spans] == [50.0, 50.0]
    assert spans[1]["label"] == "start running…"


def test_each_card_shows_the_timeline_and_links_to_a_paged_history(
    client: FlaskClient, runtime: Runtime
) -> None:
    now = utc_now()
    for number in range(55):
        created = now - timedelta(seconds=100 - number)
        runtime.store.save(
            Deployment(
                id=f"h{number:03d}",
                service="web",
                trigger="test",
                image=WEB_IMAGE,
                tag="latest",
                state=DeploymentState.SUCCEEDED,
                created_at=created,
                steps=[Step("resolve", StepState.SUCCEEDED, created, created, "ok")],
            )
        )

    page = client.get("/").get_data(as_text=True)
    first = client.get("/services/web/history").get_data(as_text=True)
    older = client.get("/services/web/history?before=h005").get_data(as_text=True)

    assert 'class="timeline"' in page
    assert "4 earlier" in page
    assert 'href="/services/web/history"' in page
    assert first.count('href="/deployments/h') == 50
    assert "h054" in first
    assert "/services/web/history?before=h005" in first
    assert [f"h00{n}" in older for n in range(5)] == [True] * 5
    assert "h005" not in text_of(older)
    assert client.get("/services/nope/history").status_code == 404
    unknown = client.get("/services/web/history?before=nope")
    assert unknown.status_code == 400
    assert "No deployment with id &#39;nope&#39;" in unknown.get_data(as_text=True)
