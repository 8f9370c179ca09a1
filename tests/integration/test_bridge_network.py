"""network: bridge on an engine that has a bridge: the app's port is published on 127.0.0.1 from
the pool and nginx reaches it there. The test bed's engine runs --bridge=none (its traffic stays
on loopback), so here these tests skip with that reason; they run on engines with a bridge."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer import create_app
from deployer.backends.docker import DockerBackend
from deployer.config import parse_config
from deployer.demo import dockerhub_payload
from deployer.models import DeploymentState
from deployer.runtime import Runtime
from deployer.sandbox import ImageFactory, Load, SandboxNginx
from tests.conftest import ENVIRON, TOKEN
from tests.helpers import finished

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge(engine: str) -> None:
    listed = subprocess.run(
        ["docker", "network", "inspect", "bridge"], capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip(
            "the engine has no bridge network (this test bed starts dockerd with "
            "--bridge=none, so that all traffic stays on loopback); run on an engine with one"
        )


def test_a_bridge_service_is_published_on_loopback_and_switches_without_a_failed_request(
    bridge: None,
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
    tmp_path: Path,
) -> None:
    nginx = make_nginx(["web"])
    data = {
        "state_dir": str(tmp_path / "state"),
        "instance": instance,
        "nginx": nginx.deployer_config(),
        "services": {
            "web": {
                "image": images.repository("web"),
                "network": "bridge",
                "port": 8080,
                "env": {"LISTEN": "0.0.0.0"},  # inside its own network namespace
                "ports": port_pool(10),
                "drain": 1,
            }
        },
    }
    config = parse_config(data, environ=ENVIRON)
    app = create_app(config, backend=DockerBackend(), environ=ENVIRON)
    runtime: Runtime = app.extensions["deployer"]
    runtime.start()
    client = app.test_client()
    repository = config.services["web"].repository
    try:
        for version in ("v1", "v2"):
            images.build("web", version, tag="latest")
            with Load(nginx.url("web", "/version")) as load:
                answer = client.post(
                    f"/webhooks/dockerhub/{TOKEN}", json=dockerhub_payload(repository, "latest")
                )
                done = finished(runtime, answer.json["deployments"][0]["id"], timeout=60)  # type: ignore[index]
                time.sleep(0.3)
            assert done.state is DeploymentState.SUCCEEDED, done.error
            assert load.bodies()[-1] == version
            if version == "v2":
                assert load.failures() == []
        [container] = runtime.backend.list_managed(instance)
        assert container.address.startswith("127.0.0.1:")
    finally:
        runtime.stop(10)
        runtime.store.close()
