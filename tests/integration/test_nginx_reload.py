"""The real nginx: render the upstream template, test it, reload, and reach the container."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.backends.docker import DockerBackend
from deployer.config import DEFAULT_TEMPLATE, NginxConfig, parse_config
from deployer.errors import NginxError
from deployer.models import Server, Upstream
from deployer.nginx import NginxConfigurator
from deployer.nginx_workers import holds_listener, snapshot
from deployer.rollout.containers import make_container_spec
from deployer.sandbox import ImageFactory, SandboxNginx
from deployer.sandbox.net import LOOPBACK, http_get, wait_for_http

pytestmark = pytest.mark.integration


def configurator(
    nginx: SandboxNginx, template: Path = DEFAULT_TEMPLATE, reload_timeout: float = 10
) -> NginxConfigurator:
    return NginxConfigurator(
        NginxConfig(
            template=template,
            output=nginx.upstreams,
            test=nginx.test_argv,
            reload=nginx.reload_argv,
            pid_file=nginx.pid_file,
            reload_timeout=reload_timeout,
        )
    )


def start_app(images: ImageFactory, instance: str, port: int, version: str) -> Upstream:
    pushed = images.build("hello", version)
    backend = DockerBackend()
    backend.pull(pushed.repository, pushed.digest)
    service = parse_config(
        {"services": {"web": {"image": pushed.repository, "ports": f"{port}-{port + 1}"}}},
        environ={"DEPLOYER_TOKEN": "t" * 32},
    ).services["web"]
    container = backend.start(
        make_container_spec("web", service, pushed.digest, version, port, instance)
    )
    wait_for_http(f"http://{container.address}/healthz", timeout=10)
    return Upstream("web", (Server(container.address, container.name, pushed.digest),))


def serving_v1(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
) -> tuple[SandboxNginx, int, Upstream]:
    """An nginx that serves app v1 (on its port) through the default template."""
    nginx = make_nginx(["web"])
    port = int(port_pool(2).split("-")[0])
    upstream = start_app(images, instance, port, "v1")
    configurator(nginx).apply([upstream])
    return nginx, port, upstream


def test_rendered_upstreams_pass_nginx_test_and_reload_routes_to_the_container(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
) -> None:
    nginx = make_nginx(["web"])
    port = int(port_pool(2).split("-")[0])
    upstream = start_app(images, instance, port, "v1")

    changed = configurator(nginx).apply([upstream])

    assert changed
    assert f"server 127.0.0.1:{port};" in nginx.upstreams.read_text()
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")  # reload already applied


def test_a_template_that_renders_invalid_config_leaves_the_previous_file_serving(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
    tmp_path: Path,
) -> None:
    nginx, _port, upstream = serving_v1(images, instance, port_pool, make_nginx)
    before = nginx.upstreams.read_text()
    broken = tmp_path / "broken.conf.j2"
    broken.write_text("{% for u in upstreams %}upstream {{ u.service }} { server ; }{% endfor %}\n")

    with pytest.raises(NginxError, match="nginx test failed") as caught:
        configurator(nginx, broken).apply([upstream])

    assert "invalid number of arguments" in str(caught.value)
    assert nginx.upstreams.read_text() == before
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")


def test_a_reload_nginx_rejects_after_a_passing_test_fails_the_step_and_restores(
    images: ImageFactory,
    instance: str,
    port_pool: Callable[[int], str],
    make_nginx: Callable[[list[str]], SandboxNginx],
    tmp_path: Path,
) -> None:
    nginx, port, upstream = serving_v1(images, instance, port_pool, make_nginx)
    before = nginx.upstreams.read_text()
    # `nginx -t` does not bind ports; the master does, at reload, and keeps its old workers
    # when it cannot. Here the app container holds the port the new config wants.
    binds_a_taken_port = tmp_path / "binds.conf.j2"
    binds_a_taken_port.write_text(
        DEFAULT_TEMPLATE.read_text() + f"server {{ listen {LOOPBACK}:{port}; return 204; }}\n"
    )

    with pytest.raises(NginxError, match=r"did not apply the reload within 1 s"):
        configurator(nginx, binds_a_taken_port, reload_timeout=1).apply([upstream])

    assert nginx.upstreams.read_text() == before
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
    assert "bind() to 127.0.0.1:" in nginx.error_log()


def test_with_many_listeners_the_step_returns_once_no_old_worker_holds_one(
    make_nginx: Callable[[list[str]], SandboxNginx],
) -> None:
    # Real nginx, 40 listening sockets: a worker holds the master's first listener at the
    # same fd number (the one-readlink probe), and once apply() returns every worker from
    # before has exited or holds none of them, read fd by fd.
    services = [f"svc{index:02d}" for index in range(40)]
    nginx = make_nginx(services)
    step = configurator(nginx)
    for shift in range(3):
        upstreams = [
            Upstream(name, (Server(f"{LOOPBACK}:{30000 + index + shift}", f"c{index}", ""),))
            for index, name in enumerate(services)
        ]
        before = snapshot(nginx.pid_file)  # the last step's old worker may be exiting now
        # its channel to the master is not taken for a listener
        assert len(before.listeners) == len(nginx.listen)
        serving = [pid for pid, title in before.titles.items() if title == "nginx: worker process"]
        assert serving
        assert before.probe is not None
        for worker in serving:  # the probe: the master's first listener, at the same fd number
            link = os.readlink(f"/proc/{worker}/fd/{before.probe}")
            assert link.startswith("socket:[")
            assert int(link[8:-1]) in before.listeners

        assert step.apply(upstreams) is not None

        for worker in before.titles:
            assert not holds_listener(worker, before.listeners), f"worker {worker} still listens"
