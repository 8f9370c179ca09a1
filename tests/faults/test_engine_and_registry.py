"""The engine or the registry goes away mid-deployment (real engine, registry and nginx): the
old release keeps serving, the error says what happened, and a container the engine created
for the failed release is found by its name and removed once the engine is back."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from deployer.backends.docker import DockerBackend
from deployer.demo import instance_containers
from deployer.models import Deployment, DeploymentState
from deployer.runtime import Runtime
from deployer.sandbox import (
    AppBehaviour,
    EngineProxy,
    ImageFactory,
    Load,
    LocalRegistry,
    SandboxNginx,
    TcpProxy,
)
from deployer.sandbox.net import http_get
from tests.faults.conftest import IGNORE_DOCKER_PY_SOCKET_LEAK
from tests.helpers import finished, wait_for_step
from tests.testbed import SESSION

pytestmark = [pytest.mark.integration, IGNORE_DOCKER_PY_SOCKET_LEAK]


def engine_names(instance: str) -> list[str]:
    """What the engine itself has for the instance (the docker CLI, not through any proxy)."""
    return sorted(instance_containers(instance))


def deploy(runtime: Runtime, tag: str = "latest") -> Deployment:
    queued = runtime.deploy_now("web", tag, "test")
    return finished(runtime, queued.id, timeout=90)


def test_engine_lost_as_the_container_is_created_it_is_named_and_removed_next_time(
    make_runtime: Callable[..., Runtime],
    make_nginx: Callable[[list[str]], SandboxNginx],
    proxied_backend: DockerBackend,
    engine_proxy: EngineProxy,
    images: ImageFactory,
    instance: str,
) -> None:
    nginx = make_nginx(["web"])
    v1 = images.build("lost-create", "v1", tag="latest")
    runtime = make_runtime(proxied_backend, nginx, v1.repository)
    good = deploy(runtime)
    images.build("lost-create", "v2", tag="latest")
    # The engine creates the container, then the answer never comes back and it is gone.
    engine_proxy.drop_after("POST", "/containers/create", times=1, then_cut=True)

    with Load(nginx.url("web", "/version")) as load:
        failed = deploy(runtime)

    orphan = f"web-{failed.id}"
    assert failed.state is DeploymentState.FAILED
    assert failed.container == orphan
    assert f"the new container {orphan} could not be removed" in (failed.error or "")
    assert "deployer removes it at the next deployment of web or when it starts" in (
        failed.error or ""
    )
    assert f"{good.container} keeps serving" in (failed.error or "")
    assert engine_names(instance) == sorted([str(good.container), orphan])
    assert load.failures() == []

    engine_proxy.restore()
    images.build("lost-create", "v3", tag="latest")
    later = deploy(runtime)

    assert later.state is DeploymentState.SUCCEEDED, later.error
    assert f"removed leftover {orphan}" in later.steps[2].detail
    assert engine_names(instance) == [str(later.container)]
    assert http_get(nginx.url("web", "/version")) == (200, "v3\n")


def test_engine_lost_while_the_new_container_gets_healthy_it_goes_at_the_next_start(
    make_runtime: Callable[..., Runtime],
    make_nginx: Callable[[list[str]], SandboxNginx],
    proxied_backend: DockerBackend,
    engine_proxy: EngineProxy,
    images: ImageFactory,
    instance: str,
) -> None:
    nginx = make_nginx(["web"])
    v1 = images.build("lost-healthy", "v1", tag="latest")
    runtime = make_runtime(proxied_backend, nginx, v1.repository)
    good = deploy(runtime)
    images.build("lost-healthy", "v2", AppBehaviour.SLOW, delay=60, tag="latest")

    with Load(nginx.url("web", "/version")) as load:
        queued = runtime.deploy_now("web", "latest", "test")
        wait_for_step(runtime, queued.id, "healthy")
        engine_proxy.cut()
        failed = finished(runtime, queued.id, timeout=30)

    orphan = f"web-{failed.id}"
    assert failed.state is DeploymentState.FAILED
    assert "could not be removed" in (failed.error or "")
    assert engine_names(instance) == sorted([str(good.container), orphan])
    assert load.failures() == []
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")

    engine_proxy.restore()
    runtime.stop(5)
    restarted = make_runtime(proxied_backend, nginx, v1.repository)

    assert engine_names(instance) == [str(good.container)]
    assert restarted.fleet.serving("web").names == good.container  # type: ignore[union-attr]
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")


@pytest.mark.parametrize("fault", ["registry down", "manifest missing", "layer blob missing"])
def test_registry_faults_fail_the_deployment_and_the_old_release_serves(
    make_runtime: Callable[..., Runtime],
    make_nginx: Callable[[list[str]], SandboxNginx],
    registry_proxy: TcpProxy,
    registry: LocalRegistry,
    images: ImageFactory,
    instance: str,
    fault: str,
) -> None:
    nginx = make_nginx(["web"])
    name = f"registry-{fault.split()[0]}-{fault.split()[1]}"
    v1 = images.build(name, f"v1-{SESSION}", tag="latest")
    image = registry_proxy.rehost(v1.repository)
    runtime = make_runtime(DockerBackend(), nginx, image)
    good = deploy(runtime)
    v2 = images.build(name, f"v2-{SESSION}", tag="latest")
    images.remove_local(v2, image)
    repository = v2.repository.split("/", 1)[1]
    if fault == "registry down":
        registry_proxy.cut()
        expected = f"cannot resolve {image}:latest at the registry"
    elif fault == "manifest missing":
        registry.delete_tag(repository, "latest")
        expected = f"cannot resolve {image}:latest at the registry: manifest unknown"
    else:
        older = registry.layers(repository, v1.digest)
        [layer] = [
            digest for digest in registry.layers(repository, v2.digest) if digest not in older
        ]
        registry.delete_blob(layer)
        expected = f"pull of {image}@{v2.digest} failed"

    with Load(nginx.url("web", "/version")) as load:
        failed = deploy(runtime)

    assert failed.state is DeploymentState.FAILED
    assert (failed.error or "").startswith(expected), failed.error
    assert failed.error.endswith(f"; {good.container} keeps serving")  # type: ignore[union-attr]
    assert load.failures() == []
    assert engine_names(instance) == [str(good.container)]
    assert http_get(nginx.url("web", "/version")) == (200, f"v1-{SESSION}\n")
