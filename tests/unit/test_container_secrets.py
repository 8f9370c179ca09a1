"""env_file and secret_env through a deployment on the fake engine: the values reach the
container's spec and nothing else (record, step details, pages, logs); a bad file fails the
start step naming it; the container's own output is kept redacted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from deployer.models import DeploymentState
from deployer.runtime import Runtime
from tests.conftest import ADMIN_TOKEN, ENVIRON, SERVICES, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import deploy

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64
API_KEY = "api-key-7d3e9b1c"
DB_PASSWORD = "db-password-2a8f4c6e"
SECRET_ENVIRON = {**ENVIRON, "DB_PASSWORD": DB_PASSWORD}


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.env"
    path.write_text(f"# the app's settings\nAPI_KEY={API_KEY}\nMODE=on\n")
    return path


@pytest.fixture
def secret_runtime(
    make_app: Callable[..., Flask], tmp_path: Path, env_file: Path
) -> tuple[Runtime, Flask]:
    web = {**SERVICES["web"], "env_file": str(env_file), "secret_env": ["DB_PASSWORD"]}
    config = make_config(tmp_path, SECRET_ENVIRON, services={"web": web})
    app = make_app(config, SECRET_ENVIRON)
    runtime: Runtime = app.extensions["deployer"]
    return runtime, app


def everything_deployer_keeps_and_shows(app: Flask, runtime: Runtime, tmp_path: Path) -> str:
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    shown = [
        client.get(f"/deployments/{deployment.id}", headers=admin).get_data(as_text=True)
        for deployment in runtime.store.history("web", 10)
    ]
    shown += [client.get(path, headers=admin).get_data(as_text=True) for path in ("/status", "/")]
    stored = b"".join(
        path.read_bytes() for path in (tmp_path / "state").rglob("*") if path.is_file()
    )
    assert runtime.store.history("web", 1)[0].id.encode() in stored  # the store is in these files
    return "\n".join(shown) + stored.decode(errors="replace")


def test_values_reach_the_container_and_only_names_reach_the_record(
    secret_runtime: tuple[Runtime, Flask],
    backend: FakeBackend,
    env_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, app = secret_runtime
    backend.push(WEB_IMAGE, "latest", V1)

    with caplog.at_level(logging.DEBUG):
        result = deploy(runtime)

    assert result.state is DeploymentState.SUCCEEDED
    assert result.container is not None
    spec = backend.specs[result.container]
    assert spec.secret_environment == {"API_KEY": API_KEY, "MODE": "on", "DB_PASSWORD": DB_PASSWORD}
    start = next(step for step in result.steps if step.name == "start")
    assert start.detail.endswith(
        f"on 127.0.0.1:18000; env_file {env_file} (API_KEY, MODE); secret_env (DB_PASSWORD)"
    )
    kept = everything_deployer_keeps_and_shows(app, runtime, tmp_path) + caplog.text
    assert API_KEY not in kept
    assert DB_PASSWORD not in kept


def test_the_env_file_is_read_again_at_each_deployment(
    secret_runtime: tuple[Runtime, Flask], backend: FakeBackend, env_file: Path
) -> None:
    runtime, _ = secret_runtime
    backend.push(WEB_IMAGE, "latest", V1)
    deploy(runtime)
    env_file.write_text("API_KEY=rotated-key-0001\n")
    backend.push(WEB_IMAGE, "latest", V2)

    result = deploy(runtime)

    assert result.container is not None
    assert backend.specs[result.container].secret_environment == {
        "API_KEY": "rotated-key-0001",
        "DB_PASSWORD": DB_PASSWORD,
    }


def test_a_missing_env_file_fails_the_start_step_naming_it(
    secret_runtime: tuple[Runtime, Flask], backend: FakeBackend, env_file: Path
) -> None:
    runtime, _ = secret_runtime
    backend.push(WEB_IMAGE, "latest", V1)
    env_file.unlink()

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert result.error == (
        f"cannot read env_file {env_file}: No such file or directory; create it or fix `env_file`"
    )
    assert [(step.name, step.state.value) for step in result.steps][-1] == ("start", "failed")
    assert backend.containers == {}


def test_the_containers_output_is_kept_with_its_secrets_redacted(
    secret_runtime: tuple[Runtime, Flask],
    backend: FakeBackend,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, app = secret_runtime
    backend.push(WEB_IMAGE, "latest", V1, behaviour="print-env")

    with caplog.at_level(logging.DEBUG):
        result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert result.logs is not None
    lines = result.logs.splitlines()
    assert "API_KEY=[redacted]" in lines
    assert "DB_PASSWORD=[redacted]" in lines
    assert "MODE=on" in lines  # under 4 characters: left (it would match everywhere)
    kept = everything_deployer_keeps_and_shows(app, runtime, tmp_path) + caplog.text
    assert API_KEY not in kept
    assert DB_PASSWORD not in kept


def test_a_multi_line_key_in_the_env_file_fails_the_start_without_showing_it(
    secret_runtime: tuple[Runtime, Flask],
    backend: FakeBackend,
    env_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime, app = secret_runtime
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    env_file.write_text(f"TLS_KEY=-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    backend.push(WEB_IMAGE, "latest", V1)

    with caplog.at_level(logging.DEBUG):
        result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert result.error is not None
    assert result.error.startswith(f"env_file {env_file} line 2 is a name without a value")
    kept = everything_deployer_keeps_and_shows(app, runtime, tmp_path) + caplog.text
    assert body[:16] not in kept
