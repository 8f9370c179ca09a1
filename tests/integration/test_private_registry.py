"""A registry that asks for credentials (Debian's docker-registry with htpasswd auth, loopback).

`deployer serve` runs as a process whose whole output is read; between runs only its config
(deployer's `registries:`) and environment (the variables, $DOCKER_CONFIG) change. The test's
own docker CLI logs in with a Docker client config directory of its own, which the deployer
runs see only when a case says so: "without credentials" is real.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import requests

from deployer.backends.docker import DockerBackend
from deployer.config import RegistryConfig
from deployer.errors import RegistryError
from deployer.registries import RegistryLogins
from deployer.runtime import DATABASE
from deployer.sandbox import ImageFactory, LocalRegistry, SandboxNginx
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import http_get
from deployer.sandbox.serve import ServeProcess
from tests.conftest import TOKEN

pytestmark = pytest.mark.integration
USER = "deployer-ci"
PASSWORD = f"pw-{secrets.token_hex(12)}"  # unique: any occurrence anywhere is a leak
WRONG_PASSWORD = f"wrong-{secrets.token_hex(12)}"
NAMESPACE = f"p{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def private_registry(
    engine: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalRegistry]:
    """A registry on a 127.0.0.1 port that takes USER / PASSWORD (HTTP basic auth)."""
    directory = tmp_path_factory.mktemp("private-registry")
    with LocalRegistry(directory, users={USER: PASSWORD}) as running:
        yield running


@pytest.fixture(scope="module")
def private_images(
    private_registry: LocalRegistry, tmp_path_factory: pytest.TempPathFactory
) -> ImageFactory:
    """Pushes to the private registry; its docker CLI is logged in, in a config of its own."""
    directory = tmp_path_factory.mktemp("private-images")
    factory = ImageFactory(
        private_registry.address, NAMESPACE, directory / "work", docker_config=directory / "docker"
    )
    factory.login(USER, PASSWORD)
    return factory


def pushed_not_pulled(images: ImageFactory, version: str) -> PushedImage:
    """web:latest serving `version`, pushed, and its local copy removed: deploying it pulls."""
    pushed = images.build("web", version, tag="latest")
    images.remove_local(pushed)
    return pushed


@pytest.fixture
def serve_with(
    private_registry: LocalRegistry,
    private_images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    tmp_path: Path,
) -> Iterator[Callable[..., ServeProcess]]:
    """serve_with(nginx, registries, environ) -> a started `deployer serve`, the previous one
    stopped first (SIGTERM); one service `web`; state, instance and ports the same each run."""
    runs: list[ServeProcess] = []
    ports = port_pool(10)

    def make(
        nginx: SandboxNginx, registries: dict[str, Any], environ: dict[str, str]
    ) -> ServeProcess:
        if runs and runs[-1].running:
            runs[-1].terminate()
        config = {
            "state_dir": str(tmp_path / "state"),
            "instance": instance,
            "nginx": nginx.deployer_config(),
            "registries": registries,
            "services": {
                "web": {
                    "image": private_images.repository("web"),
                    "ports": ports,
                    "drain": 0.5,
                    "health": {"timeout": 30, "interval": 0.1},
                }
            },
        }
        serve = ServeProcess(config, tmp_path / f"serve{len(runs)}", environ)
        runs.append(serve.start())
        return serve

    yield make
    for serve in runs:
        serve.stop()


def deploy(serve: ServeProcess, images: ImageFactory) -> dict[str, Any]:
    """A Docker Hub webhook for web:latest; the finished deployment."""
    return serve.wait_for_state(serve.push(images.repository("web")))


def everything_said(runs: list[ServeProcess], tmp_path: Path) -> str:
    """Every log line of every run, every answer a reader can get now, the stored history."""
    serve = runs[-1]
    answers = [run.output() for run in runs]
    for path in ("/status", "/deployments?service=web&limit=500", "/metrics", "/"):
        answers.append(requests.get(f"{serve.base_url}{path}", timeout=5).text)
    for found in serve.get("/deployments?service=web&limit=500")["deployments"]:
        answers.append(requests.get(f"{serve.base_url}/deployments/{found['id']}", timeout=5).text)
    databases = list((tmp_path / "state").glob(f"{DATABASE}*"))  # the file, its WAL, if any
    assert databases
    answers += [database.read_bytes().decode(errors="replace") for database in databases]
    return "\n".join(answers)


def test_deployments_from_a_registry_that_asks_for_credentials(
    private_registry: LocalRegistry,
    private_images: ImageFactory,
    serve_with: Callable[..., ServeProcess],
    make_nginx: Callable[[list[str]], SandboxNginx],
    tmp_path: Path,
) -> None:
    nginx = make_nginx(["web"])
    registry = private_registry.address
    no_docker_config = tmp_path / "no-docker-config"  # $DOCKER_CONFIG without a config.json
    no_docker_config.mkdir()
    own_entry = {registry: {"username_env": "REG_USER", "password_env": "REG_PASSWORD"}}
    variables = {"DEPLOYER_TOKEN": TOKEN, "REG_USER": USER, "REG_PASSWORD": PASSWORD}
    runs: list[ServeProcess] = []

    # 1. deployer's registries: entry, its values from the environment
    pushed_not_pulled(private_images, "v1")
    runs.append(serve_with(nginx, own_entry, {**variables, "DOCKER_CONFIG": str(no_docker_config)}))
    first = deploy(runs[-1], private_images)
    assert first["state"] == "succeeded", first["error"]
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")

    # 2. no credentials anywhere: refused, named, and v1 keeps serving
    pushed_not_pulled(private_images, "v2")
    anonymous = {"DEPLOYER_TOKEN": TOKEN, "DOCKER_CONFIG": str(no_docker_config)}
    runs.append(serve_with(nginx, {}, anonymous))
    refused = deploy(runs[-1], private_images)
    assert refused["state"] == "failed"
    assert refused["error"] == (
        f"registry {registry} refused {registry}/{NAMESPACE}/web:latest: no basic auth "
        "credentials; tried: no credentials (none in deployer's registries: nor in the Docker "
        f"client config {no_docker_config}/config.json (no such file)); fix the credentials or "
        f"docker login; {first['container']} keeps serving"
    )
    assert [step["name"] for step in refused["steps"]] == ["resolve"]
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
    assert f"{refused['id']} of web failed: registry {registry} refused" in runs[-1].output()

    # 3. the entry again: v2 goes out
    runs.append(serve_with(nginx, own_entry, {**variables, "DOCKER_CONFIG": str(no_docker_config)}))
    second = deploy(runs[-1], private_images)
    assert second["state"] == "succeeded", second["error"]
    assert http_get(nginx.url("web", "/version")) == (200, "v2\n")
    assert "pulled" in second["steps"][1]["detail"]  # a real pull, with the credentials

    # 4. no registries: entry, the Docker client config the CLI logged in with: v3 goes out
    pushed_not_pulled(private_images, "v3")
    logged_in = {"DEPLOYER_TOKEN": TOKEN, "DOCKER_CONFIG": str(private_images.docker_config)}
    runs.append(serve_with(nginx, {}, logged_in))
    third = deploy(runs[-1], private_images)
    assert third["state"] == "succeeded", third["error"]
    assert http_get(nginx.url("web", "/version")) == (200, "v3\n")
    assert "pulled" in third["steps"][1]["detail"]

    said = everything_said(runs, tmp_path)
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, basic):
        assert secret not in said
    assert "[redacted]" not in said  # nothing even tried to write it


@pytest.fixture
def backend_with(engine: str) -> Iterator[Callable[..., DockerBackend]]:
    """backend_with(registries, environ) -> deployer's DockerBackend on the engine (one docker
    client for all, closed afterwards)."""
    client = docker.from_env()

    def make(registries: dict[str, RegistryConfig], environ: dict[str, str]) -> DockerBackend:
        return DockerBackend(lambda: client, RegistryLogins(registries, environ))

    yield make
    client.close()


def test_the_adapter_names_the_credentials_it_tried_when_resolve_or_pull_is_refused(
    private_registry: LocalRegistry,
    private_images: ImageFactory,
    backend_with: Callable[..., DockerBackend],
    tmp_path: Path,
) -> None:
    registry = private_registry.address
    pushed = pushed_not_pulled(private_images, f"v-{uuid.uuid4().hex[:8]}")
    entry = {registry: RegistryConfig(username_env="REG_USER", password_env="REG_PASSWORD")}
    wrong = backend_with(entry, {"REG_USER": USER, "REG_PASSWORD": WRONG_PASSWORD})
    nobody = backend_with({}, {"DOCKER_CONFIG": str(tmp_path)})
    tried_entry = (
        f'tried: registries."{registry}" (username from $REG_USER, password from $REG_PASSWORD)'
    )

    with pytest.raises(RegistryError) as resolve_wrong:
        wrong.resolve(pushed.repository, "latest")
    with pytest.raises(RegistryError) as pull_wrong:
        wrong.pull(pushed.repository, pushed.digest)
    with pytest.raises(RegistryError) as pull_anonymous:
        nobody.pull(pushed.repository, pushed.digest)

    assert str(resolve_wrong.value) == (
        f"registry {registry} refused {pushed.reference}: unauthorized: authentication "
        f"required; {tried_entry}; fix the credentials or docker login"
    )
    assert str(pull_wrong.value) == (
        f"registry {registry} refused {pushed.repository}@{pushed.digest}: unauthorized: "
        f"authentication required; {tried_entry}; fix the credentials or docker login"
    )
    assert str(pull_anonymous.value) == (
        f"registry {registry} refused {pushed.repository}@{pushed.digest}: no basic auth "
        "credentials; tried: no credentials (none in deployer's registries: nor in the Docker "
        f"client config {tmp_path}/config.json (no such file)); fix the credentials or docker "
        "login"
    )
    assert WRONG_PASSWORD not in str(resolve_wrong.value) + str(pull_wrong.value)
    right = backend_with(entry, {"REG_USER": USER, "REG_PASSWORD": PASSWORD})
    assert right.resolve(pushed.repository, "latest") == pushed.digest
    right.pull(pushed.repository, pushed.digest)
    assert right.has_image(pushed.repository, pushed.digest)
