"""deployer's own image, built from the Dockerfile and run the way the README says.

The image is built on a Debian 12 base made here with debootstrap (cached per machine). It
runs as uid 10001 beside nginx in its own container: host network, `--pid=host` (both, so that
deployer sees nginx's workers and confirms each reload), the Docker socket through
`--group-add`, config and state mounted. nginx's test and reload run in nginx's container
(`nginx.container`). Skipped, with the reason, only when the Debian mirror cannot be reached.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from deployer.demo import dockerhub_payload
from deployer.models import DeploymentState
from deployer.runtime import DATABASE
from deployer.sandbox import ImageFactory, SandboxNginx
from deployer.sandbox.base_image import BASE_IMAGE, MirrorUnreachable, ensure_base_image
from deployer.sandbox.deployer_image import build_deployer_image, build_nginx_image
from deployer.sandbox.load import Load
from deployer.sandbox.net import free_port, http_get, wait_for_http
from deployer.sandbox.pypi import LocalIndex, build_requires, wheelhouse
from deployer.store import Store
from tests.conftest import TOKEN

pytestmark = pytest.mark.integration
REPOSITORY = Path(__file__).resolve().parents[2]
TEST_LABEL = "deployer.test"  # on the containers this test starts (not deployer.instance)
UID = 10001
SOCKET = Path("/var/run/docker.sock")
EXIT_BUDGET = 10.0


@dataclass(frozen=True)
class Images:
    deployer: str  # image ids
    nginx: str


@dataclass
class Stack:
    deployer: str  # container name
    base: str  # deployer's URL
    nginx: SandboxNginx
    state: Path
    repository: str


@pytest.fixture(scope="module")
def built(engine: str) -> Images:
    """deployer's image from the Dockerfile and an nginx image, both on the local base."""
    try:
        ensure_base_image()
    except MirrorUnreachable as err:
        pytest.skip(str(err))
    wheels = wheelhouse(
        REPOSITORY / "requirements.txt", build_requires(REPOSITORY / "pyproject.toml")
    )
    with LocalIndex(wheels) as index:
        deployer = build_deployer_image(REPOSITORY, BASE_IMAGE, index.build_args)
    return Images(deployer, build_nginx_image(BASE_IMAGE))


@pytest.fixture
def stack(
    built: Images,
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    tmp_path: Path,
) -> Iterator[Stack]:
    """nginx in a container, then deployer in a container driving it; both removed after."""
    labels = ["--label", f"{TEST_LABEL}={instance}"]
    nginx_name, deployer_name = f"{instance}-nginx", f"{instance}-deployer"
    prefix = tmp_path / "nginx"
    launcher = ["docker", "run", "--rm", "--name", nginx_name, *labels, "--network", "host"]
    launcher += ["--pid", "host", "--volume", f"{prefix}:{prefix}", built.nginx]
    nginx = SandboxNginx(prefix, ["web"], launcher=launcher)
    try:
        nginx.start()
        os.chown(nginx.upstreams.parent, UID, UID)  # the folder deployer writes its file in
        port = free_port()
        etc, state = write_config(tmp_path, nginx, nginx_name, instance, port, images, port_pool)
        run_deployer(deployer_name, labels, built.deployer, etc, state, prefix, port)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(f"{base}/healthz", timeout=30)
        except TimeoutError as err:
            raise AssertionError(f"{err}; deployer's output:\n{logs(deployer_name)}") from err
        yield Stack(deployer_name, base, nginx, state, images.repository("web"))
    finally:
        nginx.stop()
        remove_labelled(instance)


def write_config(
    tmp_path: Path,
    nginx: SandboxNginx,
    nginx_container: str,
    instance: str,
    port: int,
    app_images: ImageFactory,
    port_pool: Callable[[int], str],
) -> tuple[Path, Path]:
    """deployer.yml in etc/ (mounted read-only) and an empty state/ owned by deployer's uid."""
    config: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": port},
        "state_dir": "/var/lib/deployer",
        "instance": instance,
        "queue": {"coalesce": 0.2},
        "nginx": {**nginx.deployer_config(), "container": nginx_container},
        "services": {
            "web": {
                "image": app_images.repository("web"),
                "ports": port_pool(10),
                "drain": 1,
                "health": {"timeout": 30, "interval": 0.2},
            }
        },
    }
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    (etc / "deployer.yml").write_text(yaml.safe_dump(config))
    state.mkdir()
    os.chown(state, UID, UID)
    return etc, state


def run_deployer(
    name: str, labels: list[str], image: str, etc: Path, state: Path, prefix: Path, port: int
) -> None:
    """docker run -d, as the README says; the token comes from the environment."""
    argv = ["docker", "run", "--detach", "--name", name, *labels]
    argv += ["--network", "host", "--pid", "host", "--group-add", str(SOCKET.stat().st_gid)]
    argv += ["--volume", f"{SOCKET}:{SOCKET}", "--volume", f"{etc}:/etc/deployer:ro"]
    argv += ["--volume", f"{state}:/var/lib/deployer"]
    argv += ["--volume", f"{prefix}:{prefix}:ro"]  # nginx's pid file
    argv += ["--volume", f"{prefix}/conf.d:{prefix}/conf.d"]  # the upstream file's folder
    argv += ["--env", "DEPLOYER_TOKEN", "--env", f"HTTP_PORT={port}", image]
    docker(*argv[1:], env={**os.environ, "DEPLOYER_TOKEN": TOKEN})


def docker(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, f"docker {args[0]} failed: {result.stderr}"
    return result.stdout.strip()


def remove_labelled(instance: str) -> None:
    listing = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={TEST_LABEL}={instance}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.stdout.split():
        subprocess.run(
            ["docker", "rm", "-f", *listing.stdout.split()], capture_output=True, check=False
        )


def test_the_image_deploys_v1_then_v2_with_no_failed_request_and_stops_on_sigint(
    stack: Stack, images: ImageFactory
) -> None:
    first = push(stack, images, "v1")
    assert finished(stack, first)["state"] == "succeeded", logs(stack.deployer)
    # nginx.pid_file is set: the nginx step waited until nginx applied the reload.
    assert http_get(stack.nginx.url("web", "/version")) == (200, "v1\n")

    with Load(stack.nginx.url("web", "/version")) as load:
        time.sleep(0.3)
        second = finished(stack, push(stack, images, "v2"))
        time.sleep(0.5)
    assert second["state"] == "succeeded", logs(stack.deployer)
    assert load.failures() == []
    assert sum(answer.ok for answer in load.answers) > 50
    # v1 and v2 mix while nginx's old and new workers both accept; once the nginx step is done
    # (deployer saw the old workers stop accepting, through --pid=host), only v2.
    assert (load.bodies()[0], load.bodies()[-1]) == ("v1", "v2")
    switched = finished_at(second, "nginx")
    after = {a.body.strip() for a in load.answers if a.ok and a.began > switched}
    assert after == {"v2"}

    assert docker("exec", stack.deployer, "id", "-u") == str(UID)
    rendered = docker("exec", stack.deployer, "deployer", "render-nginx")
    serving = requests.get(f"{stack.base}/status", timeout=5).json()["services"]["web"]
    assert f"container {serving['container']}" in rendered  # the packaged template, in the image
    assert health(stack.deployer, timeout=40) == "healthy"

    began = time.monotonic()
    docker("stop", "--time", "30", stack.deployer)  # STOPSIGNAL SIGINT; SIGKILL only after 30 s
    took = time.monotonic() - began
    output = logs(stack.deployer)
    assert took < EXIT_BUDGET, output
    assert docker("inspect", "--format", "{{.State.ExitCode}}", stack.deployer) == "0", output
    assert "SIGINT received: stopping" in output
    assert TOKEN not in output
    assert http_get(stack.nginx.url("web", "/version")) == (200, "v2\n")
    store = Store(stack.state / DATABASE)  # the mounted state folder holds the history
    history = [deployment.state for deployment in store.history("web", 10)]
    store.close()
    assert history == [DeploymentState.SUCCEEDED, DeploymentState.SUCCEEDED]


def push(stack: Stack, images: ImageFactory, version: str) -> str:
    """Build and push web:version as `latest`, then send the registry's webhook."""
    images.build("web", version, tag="latest")
    repository = stack.repository.split("/", 1)[1]
    answer = requests.post(
        f"{stack.base}/webhooks/dockerhub/{TOKEN}",
        json=dockerhub_payload(repository, "latest"),
        timeout=5,
    )
    assert answer.status_code == 202, answer.text
    deployment_id: str = answer.json()["deployments"][0]["id"]
    return deployment_id


def finished(stack: Stack, deployment_id: str, timeout: float = 60) -> dict[str, Any]:
    """Poll the deployment until it finished; its JSON."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = requests.get(
            f"{stack.base}/deployments/{deployment_id}", timeout=5
        ).json()
        if found["state"] not in ("queued", "running"):
            return found
        time.sleep(0.1)
    raise AssertionError(f"{deployment_id} did not finish in {timeout:g} s: {found}")


def finished_at(deployment: dict[str, Any], step: str) -> float:
    """When a step of the deployment finished (a Unix time)."""
    found = next(item for item in deployment["steps"] if item["name"] == step)
    return datetime.fromisoformat(found["finished_at"]).timestamp()


def health(container: str, timeout: float) -> str:
    """The image HEALTHCHECK's status once it left `starting` (or after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", container)
        if status != "starting" or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def logs(container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    )
    return result.stdout + result.stderr
