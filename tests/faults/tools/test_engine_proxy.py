"""The engine proxy on the real engine: docker-py and the docker CLI through it, and each fault."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest
import requests

from deployer.backends.base import LABEL_INSTANCE, ContainerSpec
from deployer.backends.docker import DockerBackend
from deployer.errors import ContainerError, DockerError
from deployer.sandbox import EngineProxy, ImageFactory
from deployer.sandbox.faults import Action
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import free_port
from tests.faults.conftest import ENGINE_API, IGNORE_DOCKER_PY_SOCKET_LEAK

pytestmark = [pytest.mark.integration, IGNORE_DOCKER_PY_SOCKET_LEAK]


@pytest.fixture
def client(engine_proxy: EngineProxy) -> Iterator[Any]:
    client = docker.DockerClient(base_url=engine_proxy.url, version=ENGINE_API)
    yield client
    client.close()
    gc.collect()  # sockets docker-py leaked on refused connections: warn in this test, not later


@pytest.fixture
def app(images: ImageFactory) -> PushedImage:
    return images.build("proxied", "v1")


def spec(app: PushedImage, instance: str) -> ContainerSpec:
    port = free_port()
    return ContainerSpec(
        name=f"{instance}-{uuid.uuid4().hex[:6]}",
        image=f"{app.repository}@{app.digest}",
        labels={LABEL_INSTANCE: instance},
        environment={"PORT": str(port)},
        network="host",
        host_port=port,
        container_port=port,
    )


def engine_names(instance: str) -> list[str]:
    """What the engine itself (the docker CLI, not through the proxy) has for the instance."""
    listing = subprocess.run(
        [
            *("docker", "ps", "-a", "--filter", f"label={LABEL_INSTANCE}={instance}"),
            *("--format", "{{.Names}} {{.State}}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(listing.stdout.splitlines())


def test_docker_py_and_the_docker_cli_work_through_the_proxy(
    engine_proxy: EngineProxy, client: Any
) -> None:
    direct = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc"], capture_output=True, text=True, check=True
    )

    listed = [container.id for container in client.containers.list()]
    from_env = docker.from_env(environment=engine_proxy.environ())
    pinged = from_env.ping()
    from_env.close()
    through_cli = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **engine_proxy.environ()},
    )

    assert set(listed) == set(direct.stdout.split())
    assert pinged is True
    assert set(through_cli.stdout.split()) == set(direct.stdout.split())
    seen = engine_proxy.requests("GET", "/containers/json")
    assert len(seen) == 2  # docker-py and the CLI; paths are matched without /v1.41
    assert all(request.status == 200 for request in seen)
    assert seen[0].target.startswith(f"/v{ENGINE_API}/containers/json?")


def test_cut_fails_calls_fast_and_restore_brings_them_back(
    engine_proxy: EngineProxy, client: Any
) -> None:
    client.containers.list()  # a pooled keep-alive connection is open now

    engine_proxy.cut()
    began = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.containers.list()
    with pytest.raises(requests.exceptions.ConnectionError):
        client.containers.list()
    failed_in = time.monotonic() - began
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe,
        pytest.raises(ConnectionRefusedError),
    ):
        probe.connect(str(engine_proxy.socket_path))
    engine_proxy.restore()

    assert failed_in < 1.0
    assert isinstance(client.containers.list(), list)
    assert engine_proxy.open_connections >= 1


def test_drop_after_create_leaves_a_container_deployer_never_learned_about(
    engine_proxy: EngineProxy,
    proxied_backend: DockerBackend,
    app: PushedImage,
    instance: str,
) -> None:
    container = spec(app, instance)
    created = engine_proxy.drop_after("POST", "/containers/create", times=1, then_cut=True)

    with pytest.raises(ContainerError) as failed:
        proxied_backend.start(container)
    request = created.wait(timeout=5)
    # then_cut: the failure path cannot reach the engine either, until restore()
    with pytest.raises(DockerError) as cleanup:
        proxied_backend.list_managed(instance)
    engine_proxy.restore()

    assert str(failed.value) == (
        f"cannot start {container.name} from {container.image}: ('Connection aborted.', "
        "RemoteDisconnected('Remote end closed connection without response'))"
    )
    assert request.status == 201  # the engine created it; deployer got EOF instead of the id
    assert request.target.endswith(f"/containers/create?name={container.name}")
    assert "Connection refused" in str(cleanup.value)
    assert engine_names(instance) == [f"{container.name} created"]
    assert [found.name for found in proxied_backend.list_managed(instance)] == [container.name]
    assert engine_proxy.requests("POST", "/containers/[^/]+/start") == []


def test_drop_once_fails_one_remove_and_the_next_one_goes_through(
    engine_proxy: EngineProxy,
    proxied_backend: DockerBackend,
    app: PushedImage,
    instance: str,
) -> None:
    started = proxied_backend.start(spec(app, instance))
    removal = engine_proxy.drop("DELETE", "/containers/[0-9a-f]+", times=1)

    with pytest.raises(ContainerError) as failed:
        proxied_backend.remove(started.id)
    still_there = engine_names(instance)
    proxied_backend.remove(started.id)

    assert "Connection aborted." in str(failed.value)
    assert removal.fired.is_set()
    assert removal.remaining == 0
    assert still_there == [f"{started.name} running"]  # the engine never saw the first DELETE
    assert engine_names(instance) == []
    assert [request.action for request in engine_proxy.requests("DELETE", ".*")] == [
        Action.DROP,
        None,
    ]


def test_delay_and_hold_slow_only_matching_requests(engine_proxy: EngineProxy, client: Any) -> None:
    engine_proxy.delay(0.8, "GET", "/containers/json", times=1)
    began = time.monotonic()
    client.containers.list()
    delayed = time.monotonic() - began
    began = time.monotonic()
    client.version()
    client.containers.list()
    undelayed = time.monotonic() - began

    held = engine_proxy.hold("GET", "/info")
    answered: list[Any] = []
    caller = threading.Thread(target=lambda: answered.append(client.info()))
    caller.start()
    held.wait(timeout=5)
    time.sleep(0.3)
    still_waiting = caller.is_alive()
    held.release()
    caller.join(5)

    assert 0.8 <= delayed < 1.5
    assert undelayed < 0.5
    assert still_waiting
    assert answered
    assert answered[0]["ID"]


def test_streams_and_hijacked_connections_pass_through(
    engine_proxy: EngineProxy, client: Any, images: ImageFactory, instance: str
) -> None:
    pushed = images.build("proxied", "stream-" + uuid.uuid4().hex[:6])
    images.remove_local(pushed)

    pulled = list(client.api.pull(pushed.repository, tag=pushed.digest, stream=True, decode=True))
    container = client.containers.run(
        f"{pushed.repository}@{pushed.digest}",
        entrypoint=["/bin/busybox", "sh", "-c", "echo started; sleep 30"],
        labels={LABEL_INSTANCE: instance},
        network_mode="host",
        detach=True,
    )
    echoed = container.exec_run(["/bin/busybox", "echo", "through the proxy"])
    time.sleep(0.2)
    logs = container.logs()

    assert pulled[-1]["status"].startswith("Status: Downloaded newer image")
    assert echoed.exit_code == 0
    assert echoed.output == b"through the proxy\n"
    assert logs == b"started\n"
    assert [request.status for request in engine_proxy.requests("POST", "/exec/[^/]+/start")] == [
        101
    ]
    assert engine_proxy.requests("POST", "/images/create")[0].status == 200
