"""`deployer serve` as a real process: SIGTERM in the middle of a deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from deployer.backends.docker import DockerBackend
from deployer.demo import dockerhub_payload
from deployer.models import DeploymentState
from deployer.runtime import DATABASE
from deployer.sandbox import AppBehaviour, ImageFactory, SandboxNginx
from deployer.sandbox.net import free_port, http_get, wait_for_http
from deployer.store import Store
from tests.conftest import TOKEN

pytestmark = pytest.mark.integration
EXIT_BUDGET = 10.0  # the contract: serve exits within 10 s of SIGINT/SIGTERM


@pytest.fixture
def serve(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
    tmp_path: Path,
) -> Iterator[tuple[subprocess.Popen[str], str, SandboxNginx]]:
    """A `deployer serve` process with one service `web`; killed afterwards if still running."""
    nginx = make_nginx(["web"])
    port = free_port()
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "state_dir": str(tmp_path / "state"),
        "instance": instance,
        "queue": {"coalesce": 0.2},
        "nginx": nginx.deployer_config(),
        "services": {
            "web": {
                "image": images.repository("web"),
                "ports": port_pool(10),
                "drain": 1,
                "health": {"timeout": 60, "interval": 0.2},
            }
        },
    }
    path = tmp_path / "deployer.yml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer", "serve", "--config", str(path)],
        env={**os.environ, "DEPLOYER_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base}/healthz", timeout=20)
        yield process, base, nginx
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def push(base: str, repository: str) -> str:
    answer = requests.post(
        f"{base}/webhooks/dockerhub/{TOKEN}",
        json=dockerhub_payload(repository, "latest"),
        timeout=5,
    )
    assert answer.status_code == 202, answer.text
    deployment_id: str = answer.json()["deployments"][0]["id"]
    return deployment_id


def wait_for(base: str, deployment_id: str, done: Callable[[dict[str, Any]], bool]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = requests.get(f"{base}/deployments/{deployment_id}", timeout=5).json()
        if done(found):
            return
        time.sleep(0.1)
    raise AssertionError(f"deployment {deployment_id} never got there: {found}")


def test_sigterm_during_a_deployment_rolls_it_back_and_exits_in_time(
    serve: tuple[subprocess.Popen[str], str, SandboxNginx],
    images: ImageFactory,
    instance: str,
    tmp_path: Path,
) -> None:
    process, base, nginx = serve
    repository = images.build("web", "v1", tag="latest").repository.split("/", 1)[1]
    first = push(base, repository)
    wait_for(base, first, lambda found: found["state"] == "succeeded")
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
    upstreams_before = nginx.upstreams.read_text()
    images.build("web", "v2", tag="latest", behaviour=AppBehaviour.SLOW, delay=30)
    second = push(base, repository)
    wait_for(
        base,
        second,
        lambda found: any(s["name"] == "healthy" for s in found["steps"]),
    )

    process.send_signal(signal.SIGTERM)
    began = time.monotonic()
    output, _ = process.communicate(timeout=EXIT_BUDGET + 5)
    took = time.monotonic() - began

    assert took < EXIT_BUDGET, output
    assert process.returncode == 0, output
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
    assert nginx.upstreams.read_text() == upstreams_before
    assert f"{second} of web failed: deployer is stopping" in output
    assert TOKEN not in output
    store = Store(tmp_path / "state" / DATABASE)
    stopped, serving = store.get(second), store.get(first)
    store.close()
    assert stopped is not None
    assert serving is not None
    assert stopped.state is DeploymentState.FAILED
    assert [step.name for step in stopped.steps] == ["resolve", "pull", "start", "healthy"]
    managed = DockerBackend().list_managed(instance)
    assert [container.name for container in managed] == [serving.container]
    assert "SIGTERM received: stopping" in output
