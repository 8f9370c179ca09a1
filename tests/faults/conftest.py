"""Fixtures for fault-injection tests: the integration test bed plus the sandbox's fault tools.

The test bed fixtures (engine, registry, images, instance, port_pool, make_nginx) come from
tests/testbed.py, shared with tests/integration in one session. Added here:

- `engine_proxy`: an EngineProxy in front of the real engine (stopped afterwards);
- `proxied_backend`: deployer's DockerBackend whose docker-py client goes through it;
- `registry_proxy`: a TcpProxy in front of the session registry (pull through it with
  `registry_proxy.rehost(pushed.repository)`);
- `make_runtime`: a started Runtime (deployer in this process) with one service `web`;
- `make_serve`: a `deployer serve` process (ServeProcess, not started) with one service `web`,
  SIGKILLed afterwards if still running.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest

from deployer import create_app
from deployer.backends.docker import DockerBackend
from deployer.config import parse_config
from deployer.runtime import Runtime
from deployer.sandbox import EngineProxy, LocalRegistry, SandboxNginx, TcpProxy
from deployer.sandbox.engine import remove_instance_containers
from deployer.sandbox.serve import ServeProcess
from tests.conftest import TOKEN

ENGINE_API = "1.41"  # the engine of this test bed (Debian's docker.io 20.10)
# docker-py 7.x does not close its socket when connecting to a unix socket fails
# (docker/transport/unixconn.py; docker/docker-py PR #3356, open): each connection refused by a
# cut EngineProxy leaves one socket to the garbage collector, whose ResourceWarning pytest
# (filterwarnings = error) turns into a failure. Mark in-process tests that cut the proxy.
IGNORE_DOCKER_PY_SOCKET_LEAK = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
)


@pytest.fixture
def engine_proxy(engine: str) -> Iterator[EngineProxy]:
    """A proxy on a unix socket in front of the engine; `.url` for docker-py, `.environ()`."""
    with EngineProxy() as proxy:
        yield proxy


@pytest.fixture
def proxied_backend(engine_proxy: EngineProxy) -> Iterator[DockerBackend]:
    """deployer's DockerBackend reaching the engine through engine_proxy."""
    clients: list[Any] = []

    def make_client() -> Any:
        clients.append(docker.DockerClient(base_url=engine_proxy.url, version=ENGINE_API))
        return clients[-1]

    yield DockerBackend(make_client=make_client)
    for client in clients:
        client.close()
    gc.collect()  # sockets docker-py leaked on refused connections: warn in this test, not later


@pytest.fixture
def registry_proxy(registry: LocalRegistry, instance: str) -> Iterator[TcpProxy]:
    """A TCP proxy in front of the session registry. The test's containers go before it does,
    so the images pulled through it (named by its address) can go with it."""
    with TcpProxy(registry.address) as proxy:
        yield proxy
        remove_instance_containers(instance)


@pytest.fixture
def make_serve(
    instance: str, port_pool: Callable[[int], str], tmp_path: Path
) -> Iterator[Callable[..., ServeProcess]]:
    """make(image, nginx, environ=..., nginx_config=..., **web) -> ServeProcess (not started).

    One service `web` following `image:latest`; `web` settings override the defaults (drain
    1 s, health timeout 60 s every 0.2 s); `nginx_config` replaces nginx.deployer_config().
    """
    made: list[ServeProcess] = []

    def make(
        image: str,
        nginx: SandboxNginx,
        environ: Mapping[str, str] | None = None,
        nginx_config: Mapping[str, Any] | None = None,
        **web: Any,
    ) -> ServeProcess:
        config = {
            "state_dir": str(tmp_path / "state"),
            "instance": instance,
            "queue": {"coalesce": 0.2},
            "nginx": dict(nginx_config or nginx.deployer_config()),
            "services": {
                "web": {
                    "image": image,
                    "ports": port_pool(10),
                    "drain": 1,
                    "health": {"timeout": 60, "interval": 0.2},
                    **web,
                }
            },
        }
        serve = ServeProcess(
            config, tmp_path / f"serve{len(made)}", {"DEPLOYER_TOKEN": TOKEN, **(environ or {})}
        )
        made.append(serve)
        return serve

    yield make
    for serve in made:
        serve.stop()


@pytest.fixture
def make_runtime(
    instance: str, port_pool: Callable[[int], str], tmp_path: Path
) -> Iterator[Callable[..., Runtime]]:
    """make(backend, nginx, image, **web) -> a started Runtime with one service `web` (as
    `deployer serve` wires it, in this process); stopped afterwards. Call it again with the
    same arguments to "restart" deployer on the same state."""
    made: list[Runtime] = []
    pools: dict[str, str] = {}

    def make(backend: DockerBackend, nginx: SandboxNginx, image: str, **web: Any) -> Runtime:
        data = {
            "state_dir": str(tmp_path / "state"),
            "instance": instance,
            "nginx": nginx.deployer_config(),
            "services": {
                "web": {
                    "image": image,
                    "ports": pools.setdefault("web", port_pool(10)),
                    "drain": 0.5,
                    "health": {"timeout": 60, "interval": 0.2},
                    **web,
                }
            },
        }
        config = parse_config(data, environ={"DEPLOYER_TOKEN": TOKEN})
        runtime: Runtime = create_app(
            config, backend=backend, environ={"DEPLOYER_TOKEN": TOKEN}
        ).extensions["deployer"]
        runtime.start()
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.stop(5)
        runtime.store.close()
