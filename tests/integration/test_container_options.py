"""Every container option of a service reaches a real container: read back with `docker inspect`.

One deployment through deployer (a Runtime in this process, on the real engine, registry and
nginx) with every option set; then the container as the engine reports it, and the proof that
the env_file and secret_env values are in the container but nowhere in deployer's record,
its pages or its logs.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deployer import create_app
from deployer.backends.base import ContainerSpec
from deployer.backends.docker import DockerBackend
from deployer.config import parse_config
from deployer.errors import ContainerError
from deployer.models import Deployment, DeploymentState
from deployer.rollout.containers import make_container_spec
from deployer.runtime import Runtime
from deployer.sandbox import ImageFactory, SandboxNginx
from deployer.sandbox.engine import remove_instance_containers
from deployer.sandbox.images import HTTPD
from deployer.sandbox.net import http_get
from tests.helpers import finished

pytestmark = pytest.mark.integration
TOKEN = "integration-token-0123456789"
FILE_SECRET = "file-secret-3f9a0c7e"
PASSED_SECRET = "passed-through-5b1d2e"
DB_PASSWORD = "db-password-8c4f6a2b"
SECRETS = (FILE_SECRET, PASSED_SECRET, DB_PASSWORD)
ENVIRON = {"DEPLOYER_TOKEN": TOKEN, "DB_PASSWORD": DB_PASSWORD, "UPSTREAM_KEY": PASSED_SECRET}
# The test app's server, started by `command` instead of the image's ENTRYPOINT; it also ends
# on SIGQUIT, the stop_signal set below.
SERVE = f"trap 'exit 0' TERM INT QUIT; {HTTPD} & wait"
PROBE = "/bin/busybox wget -q -O /dev/null http://127.0.0.1:$PORT/healthz"


@pytest.fixture
def volume_name(instance: str) -> Iterator[str]:
    """A named volume for this test (the engine creates it at first use); removed afterwards."""
    name = f"{instance}-data"
    yield name
    remove_instance_containers(instance)  # first: a volume in use cannot be removed
    subprocess.run(["docker", "volume", "rm", "-f", name], capture_output=True, check=False)


def inspect(container: str) -> dict[str, Any]:
    output = subprocess.run(
        ["docker", "inspect", container], capture_output=True, text=True, check=True
    ).stdout
    found: dict[str, Any] = json.loads(output)[0]
    return found


def run_in(container: str, *argv: str) -> str:
    return subprocess.run(
        ["docker", "exec", container, *argv], capture_output=True, text=True, check=True
    ).stdout


def options(config_dir: Path, env_file: Path, volume: str) -> dict[str, Any]:
    return {
        "entrypoint": ["/bin/busybox", "sh", "-c"],
        "command": [SERVE],
        "user": "1000:1000",
        "working_dir": "/srv/app",
        "volumes": [f"{config_dir}:/config:ro", f"{volume}:/data"],
        "tmpfs": ["/scratch:size=1m,mode=1777"],
        "env_file": str(env_file),
        "secret_env": ["DB_PASSWORD"],
        "env": {"APP_MODE": "from-env"},
        "labels": {"com.example.team": "payments", "com.example.tier": 2},
        "extra_hosts": ["db.internal:127.0.0.2"],
        "memory": "64m",
        "cpus": 0.5,
        "pids_limit": 64,
        "ulimits": {"nofile": {"soft": 1024, "hard": 2048}},
        "log": {"driver": "json-file", "options": {"max-size": "1m", "max-file": 2}},
        "stop_signal": "QUIT",
        "restart": "on-failure:3",
        "healthcheck": {
            "test": ["CMD", "/bin/busybox", "sh", "-c", PROBE],
            "interval": "200ms",
            "timeout": "2s",
            "retries": 2,
            "start_period": "1m",
        },
    }


def deploy(runtime: Runtime) -> Deployment:
    deployment = runtime.deploy_now("web", "v1", "test")
    return finished(runtime, deployment.id, timeout=60)


def test_every_option_reaches_the_container_and_no_secret_reaches_deployer(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
    volume_name: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pushed = images.build("options", "v1")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "app.conf").write_text("from the bind mount\n")
    env_file = tmp_path / "app.env"
    env_file.write_text(
        f"# Docker's env-file format\n\nAPP_MODE=from-file\n  FILE_SECRET={FILE_SECRET}\n"
        "UPSTREAM_KEY\nQUOTED='kept as is'\n"
    )
    nginx = make_nginx(["web"])
    data = {
        "state_dir": str(tmp_path / "state"),
        "instance": instance,
        "nginx": nginx.deployer_config(),
        "services": {
            "web": {
                "image": pushed.repository,
                "ports": port_pool(10),
                "drain": 0.5,
                "health": {"timeout": 30, "interval": 0.1},
                **options(config_dir, env_file, volume_name),
            }
        },
    }
    config = parse_config(data, environ=ENVIRON)
    app = create_app(config, backend=DockerBackend(), environ=ENVIRON)
    runtime: Runtime = app.extensions["deployer"]
    runtime.start()
    try:
        with caplog.at_level(logging.DEBUG):
            record = deploy(runtime)
        assert record.state is DeploymentState.SUCCEEDED, record.error
        assert record.container is not None
        container = inspect(record.container)
        assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
        check_run_options(container, config_dir, volume_name)
        check_environment(container)
        assert run_in(record.container, "/bin/busybox", "cat", "/config/app.conf") == (
            "from the bind mount\n"
        )
        assert run_in(record.container, "/bin/busybox", "id", "-u") == "1000\n"
        check_no_secret_in_deployer(app, runtime, record, caplog, tmp_path)
    finally:
        runtime.stop(10)
        runtime.store.close()


def check_run_options(container: dict[str, Any], config_dir: Path, volume: str) -> None:
    settings, host = container["Config"], container["HostConfig"]
    assert settings["Entrypoint"] == ["/bin/busybox", "sh", "-c"]
    assert settings["Cmd"] == [SERVE]
    assert settings["User"] == "1000:1000"
    assert settings["WorkingDir"] == "/srv/app"
    mounts = {mount["Destination"]: mount for mount in container["Mounts"]}
    assert (mounts["/config"]["Type"], mounts["/config"]["Source"]) == ("bind", str(config_dir))
    assert mounts["/config"]["RW"] is False
    assert (mounts["/data"]["Type"], mounts["/data"]["Name"]) == ("volume", volume)
    assert mounts["/data"]["RW"] is True
    assert host["Tmpfs"] == {"/scratch": "size=1m,mode=1777"}
    assert settings["Labels"]["com.example.team"] == "payments"
    assert settings["Labels"]["com.example.tier"] == "2"
    assert host["ExtraHosts"] == ["db.internal:127.0.0.2"]
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "1m", "max-file": "2"},
    }
    assert settings["StopSignal"] == "SIGQUIT"
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert settings["Healthcheck"] == {
        "Test": ["CMD", "/bin/busybox", "sh", "-c", PROBE],
        "Interval": 200_000_000,
        "Timeout": 2_000_000_000,
        "StartPeriod": 60_000_000_000,
        "Retries": 2,
    }
    assert container["State"]["Health"]["Status"] == "healthy"


def check_environment(container: dict[str, Any]) -> None:
    environment = dict(entry.split("=", 1) for entry in container["Config"]["Env"])
    port = container["Config"]["Labels"]["deployer.port"]
    assert {
        name: environment.get(name)
        for name in ("APP_MODE", "FILE_SECRET", "UPSTREAM_KEY", "QUOTED", "DB_PASSWORD", "PORT")
    } == {
        "APP_MODE": "from-env",  # env wins over env_file, as in Compose
        "FILE_SECRET": FILE_SECRET,
        "UPSTREAM_KEY": PASSED_SECRET,  # `KEY` alone: from deployer's environment
        "QUOTED": "'kept as is'",  # Docker's format: the value as written
        "DB_PASSWORD": DB_PASSWORD,
        "PORT": port,
    }


def check_no_secret_in_deployer(
    app: Any, runtime: Runtime, record: Deployment, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    start = next(step for step in record.steps if step.name == "start")
    assert f"env_file {tmp_path / 'app.env'}" in start.detail
    assert "secret_env (DB_PASSWORD)" in start.detail
    client = app.test_client()
    shown = [
        client.get(f"/deployments/{record.id}?format=json").get_data(as_text=True),
        client.get(f"/deployments/{record.id}", headers={"Accept": "text/html"}).get_data(
            as_text=True
        ),
        client.get("/status").get_data(as_text=True),
        client.get("/").get_data(as_text=True),
        client.get("/metrics").get_data(as_text=True),
        caplog.text,
    ]
    stored = b"".join(
        path.read_bytes() for path in (tmp_path / "state").rglob("*") if path.is_file()
    )
    for secret in SECRETS:
        assert all(secret not in text for text in shown), secret
        assert secret.encode() not in stored, secret


def test_an_engine_error_that_echoes_the_environment_reaches_deployer_redacted(
    images: ImageFactory, instance: str
) -> None:
    # deployer's env-file parser refuses a line without a name; here the spec has one anyway,
    # to see what the engine answers: it quotes the entry, value included.
    pushed = images.build("options", "v1")
    spec = ContainerSpec(
        name=f"{instance}-refused",
        image=f"{pushed.repository}@{pushed.digest}",
        labels={"deployer.instance": instance},
        environment={"PORT": "18000"},
        network="host",
        host_port=18000,
        container_port=18000,
        secret_environment={"": FILE_SECRET},
    )

    with pytest.raises(ContainerError) as caught:
        DockerBackend().start(spec)

    assert "invalid environment variable: =[redacted]" in str(caught.value)
    assert FILE_SECRET not in str(caught.value)
    assert caught.value.__cause__ is None


def test_left_out_settings_stay_the_images_or_the_engines(
    images: ImageFactory, instance: str, port_pool: Callable[[int], str]
) -> None:
    # The image has a HEALTHCHECK (interval 1s, timeout 1s, retries 2); only retries is
    # overridden. `log` has options but no driver: the engine's default driver (json-file here).
    pushed = images.build("options", "v1", healthcheck=True)
    data = {
        "image": pushed.repository,
        "ports": port_pool(2),
        "healthcheck": {"retries": 5},
        "log": {"options": {"max-size": "2m"}},
        "restart": "no",
    }
    service = parse_config({"services": {"web": data}}, environ=ENVIRON).services["web"]
    assert service.ports is not None
    port = service.ports.first
    spec = make_container_spec("web", service, pushed.digest, "left-out", port, instance)

    started = DockerBackend().start(spec)

    container = inspect(started.id)
    healthcheck = container["Config"]["Healthcheck"]
    assert healthcheck["Test"][:3] == ["CMD", "/bin/busybox", "sh"]  # the image's test
    assert (healthcheck["Interval"], healthcheck["Retries"]) == (1_000_000_000, 5)
    assert container["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "2m"},
    }
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "no"
