"""The client commands: HTTP through `responses`, output tables, --wait, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from deployer.cli import main
from deployer.console import Progress, history_table, status_table

URL = "http://127.0.0.1:5999"
V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def deployment(state: str, steps: list[tuple[str, str]], **fields: Any) -> dict[str, Any]:
    return {
        "id": "d1",
        "service": "web",
        "state": state,
        "trigger": "admin deploy latest",
        "image": "acme/web:latest",
        "digest": V2,
        "previous_digest": V1,
        "created_at": "2026-11-24T02:00:00Z",
        "duration_seconds": 4.2 if state in ("succeeded", "failed") else None,
        "steps": [
            {"name": name, "state": step_state, "duration_seconds": 0.1, "detail": f"{name} ok"}
            for name, step_state in steps
        ],
        "error": fields.get("error"),
    }


def web_status() -> dict[str, Any]:
    return {
        "image": "acme/web:latest",
        "digest": V2,
        "container": "web-d1",
        "state": "running",
        "health": "healthy",
        "since": "2026-11-24T02:00:04Z",
        "replicas": [
            {"container": "web-d1-1", "address": "127.0.0.1:18000", "health": "healthy"},
            {"container": "web-d1-2", "address": "127.0.0.1:18001", "health": "healthy"},
        ],
        "last_deployment": deployment("succeeded", []),
    }


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOYER_URL", URL)
    monkeypatch.setenv("DEPLOYER_ADMIN_TOKEN", "admin-token-0123456789abcdef")
    monkeypatch.chdir(tmp_path)  # no config/deployer.yml here


@responses.activate(assert_all_requests_are_fired=True)
def test_deploy_wait_follows_the_steps_and_exits_0_on_success(
    capsys: pytest.CaptureFixture[str],
) -> None:
    responses.post(
        f"{URL}/services/web/deploy",
        json=deployment("queued", []),
        status=202,
        match=[
            responses.matchers.header_matcher(
                {"Authorization": "Bearer admin-token-0123456789abcdef"}
            ),
            responses.matchers.json_params_matcher({"tag": "v2"}),
        ],
    )
    for version in (
        deployment("running", [("resolve", "running")]),
        deployment("running", [("resolve", "succeeded"), ("pull", "running")]),
        deployment("succeeded", [("resolve", "succeeded"), ("pull", "succeeded")]),
    ):
        responses.get(f"{URL}/deployments/d1", json=version)

    code = main(["deploy", "web", "--tag", "v2", "--wait"])

    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines() == [
        "deployment d1 of web: running",
        "  resolve  ...",
        "  resolve  ok       0.10s  resolve ok",
        "  pull     ...",
        "  pull     ok       0.10s  pull ok",
        f"deployment d1 of web succeeded in 4.20s: {V1[:19]} -> {V2[:19]}",
    ]


@responses.activate(assert_all_requests_are_fired=True)
def test_rollback_wait_exits_1_on_failure_with_the_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    responses.post(
        f"{URL}/services/web/rollback",
        json=deployment("queued", []),
        status=202,
        match=[responses.matchers.json_params_matcher({"digest": V1})],
    )
    responses.get(
        f"{URL}/deployments/d1",
        json=deployment("failed", [("healthy", "failed")], error="web never got healthy"),
    )

    code = main(["rollback", "web", "--to", V1, "--wait"])

    assert code == 1
    assert "error: web never got healthy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "send the admin token"}, "set $DEPLOYER_ADMIN_TOKEN to deployer's admin"),
        (403, {"error": "wrong admin token"}, "does not match the token deployer serve has"),
        (503, {"error": "admin API is disabled: set ..."}, "admin API is disabled"),
        (404, {"error": "no service named 'nope'"}, "answered HTTP 404: no service named"),
    ],
)
@responses.activate(assert_all_requests_are_fired=True)
def test_refusals_name_the_url_and_the_fix(
    capsys: pytest.CaptureFixture[str], status: int, body: dict[str, str], expected: str
) -> None:
    responses.post(f"{URL}/services/web/deploy", json=body, status=status)

    assert main(["deploy", "web"]) == 1

    err = capsys.readouterr().err
    assert f"POST {URL}/services/web/deploy" in err
    assert expected in err


@responses.activate(assert_all_requests_are_fired=True)
def test_no_deployer_listening_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    responses.get(f"{URL}/status", body=requests.ConnectionError("refused"))

    assert main(["status"]) == 1

    err = capsys.readouterr().err
    assert f"cannot reach deployer at {URL}" in err
    assert "Is `deployer serve` running there?" in err


@responses.activate(assert_all_requests_are_fired=True)
def test_status_and_history_print_tables_or_json(capsys: pytest.CaptureFixture[str]) -> None:
    status = {"services": {"web": web_status()}}
    responses.get(f"{URL}/status", json=status)
    responses.get(
        f"{URL}/deployments?service=web&limit=5",
        json={"deployments": [deployment("failed", [], error="boom\nmore")]},
    )

    main(["status", "--json"])
    assert json.loads(capsys.readouterr().out) == status
    main(["history", "web", "--limit", "5"])
    assert capsys.readouterr().out == history_table([deployment("failed", [], error="boom\nmore")])


def test_tables() -> None:
    status = {
        "services": {
            "web": web_status(),
            "api": {"image": "acme/api:latest", "state": "absent", "last_deployment": None},
        }
    }

    assert status_table(status).splitlines() == [
        "SERVICE  STATE    HEALTH   IMAGE            DIGEST               CONTAINERS          "
        "SINCE                 LAST",
        f"web      running  healthy  acme/web:latest  {V2[:19]}  web-d1-1, web-d1-2  "
        "2026-11-24T02:00:04Z  d1 succeeded",
        "api      absent   -        acme/api:latest  -                    -                   -"
        "                     -",
    ]
    assert history_table([]) == "no deployments yet\n"
    assert history_table([deployment("failed", [], error="boom\nmore")]).splitlines()[1] == (
        f"d1  failed  {V2[:19]}  2026-11-24T02:00:00Z  4.20s  admin deploy latest  boom"
    )


def test_progress_prints_each_step_change_once() -> None:
    progress = Progress()
    running = deployment("running", [("resolve", "running")])

    assert progress.lines(running) == ["deployment d1 of web: running", "  resolve  ..."]
    assert progress.lines(running) == []


@responses.activate(assert_all_requests_are_fired=True)
def test_the_url_comes_from_the_config_without_needing_its_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEPLOYER_URL")
    monkeypatch.delenv("DEPLOYER_TOKEN", raising=False)
    config = tmp_path / "deployer.yml"
    config.write_text("server: {host: 0.0.0.0, port: 5998}\nadmin: {token_env: OPS_TOKEN}\n")
    monkeypatch.setenv("OPS_TOKEN", "ops-token-0123456789abcdef")
    responses.post(
        "http://127.0.0.1:5998/services/web/deploy",
        json=deployment("queued", []),
        status=202,
        match=[
            responses.matchers.header_matcher(
                {"Authorization": "Bearer ops-token-0123456789abcdef"}
            )
        ],
    )

    assert main(["deploy", "web", "--config", str(config)]) == 0
    assert "deployment d1 of web queued" in capsys.readouterr().out


def test_demo_refuses_an_instance_with_containers_it_did_not_create() -> None:
    from deployer.demo import DemoRefused, refuse_a_busy_instance

    refuse_a_busy_instance("demo", lambda instance: [])  # nothing there: fine

    with pytest.raises(DemoRefused) as caught:
        refuse_a_busy_instance("demo", lambda instance: ["web-1a2b3c", "web-4d5e6f"])

    assert "instance 'demo', which has containers the demo did not create" in str(caught.value)
    assert "(web-1a2b3c, web-4d5e6f)" in str(caught.value)
    assert "docker rm -f $(docker ps -aq --filter label=deployer.instance=demo)" in str(
        caught.value
    )
