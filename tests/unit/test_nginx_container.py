"""nginx.container: nginx's test and reload run inside nginx's container, through the backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker.errors
import pytest

from deployer import create_app
from deployer.backends.docker import DockerBackend
from deployer.config import NginxConfig
from deployer.errors import ConfigError, NginxError
from deployer.nginx import CommandResult, NginxConfigurator
from deployer.nginx_container import nginx_runner
from deployer.runtime import Runtime
from tests.conftest import ENVIRON, make_config
from tests.fakes import FakeBackend, FakeNginxCommands


class ExecBackend(FakeBackend):
    """A fake engine with one running container, `nginx`, where nginx's commands work."""

    def __init__(self, nginx: FakeNginxCommands) -> None:
        super().__init__()
        self.nginx = nginx
        self.ran_in: dict[str, list[list[str]]] = {}

    def run_in(self, container: str, argv: Sequence[str]) -> tuple[int, str]:
        if container != "nginx":
            return 125, f"cannot run {argv[0]} in container {container}: No such container"
        self.ran_in.setdefault(container, []).append(list(argv))
        result = self.nginx(argv)
        return result.returncode, result.output


def on_this_host(argv: Sequence[str]) -> CommandResult:
    raise AssertionError(f"{list(argv)} ran on this host, not in nginx's container")


def test_with_nginx_container_set_test_and_reload_run_in_that_container(tmp_path: Path) -> None:
    config = make_config(tmp_path, nginx=container_nginx(tmp_path, "nginx"))
    backend = ExecBackend(FakeNginxCommands(config.nginx.output))
    app = create_app(config, backend=backend, environ=ENVIRON, run=on_this_host)
    runtime: Runtime = app.extensions["deployer"]

    runtime.start()
    runtime.stop(5)
    runtime.store.close()

    assert backend.ran_in == {"nginx": [["nginx", "-t"], ["nginx", "-s", "reload"]]}
    assert "upstream web {" in config.nginx.output.read_text()


def test_a_missing_nginx_container_fails_the_switch_naming_it(tmp_path: Path) -> None:
    nginx = NginxConfig.model_validate(container_nginx(tmp_path, "edge"))
    backend = ExecBackend(FakeNginxCommands(nginx.output))
    configurator = NginxConfigurator(nginx, nginx_runner(nginx, backend, on_this_host))

    with pytest.raises(NginxError, match="cannot run nginx in container edge: No such container"):
        configurator.apply([])

    assert not nginx.output.exists()  # restored: there was no file before


def test_without_nginx_container_commands_run_on_this_host(tmp_path: Path) -> None:
    nginx = NginxConfig(output=tmp_path / "upstreams.conf")

    assert nginx_runner(nginx, FakeBackend(), on_this_host) is on_this_host


def test_a_backend_that_cannot_exec_is_a_config_error(tmp_path: Path) -> None:
    nginx = NginxConfig.model_validate(container_nginx(tmp_path, "nginx"))

    with pytest.raises(ConfigError, match=r"nginx\.container: the FakeBackend cannot run commands"):
        nginx_runner(nginx, FakeBackend(), on_this_host)


def test_nginx_container_must_be_a_container_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        make_config(tmp_path, nginx=container_nginx(tmp_path, "nginx; reboot"))

    assert [problem.split(":")[0] for problem in raised.value.problems] == ["nginx.container"]


def test_docker_backend_runs_in_the_container_and_reports_a_missing_one() -> None:
    containers = {"nginx": SimpleNamespace(exec_run=fake_exec_run)}
    backend = DockerBackend(lambda: SimpleNamespace(containers=FakeContainers(containers)))

    assert backend.run_in("nginx", ["nginx", "-t"]) == (1, "nginx: [emerg] ran ['nginx', '-t']")
    assert backend.run_in("edge", ["nginx", "-t"]) == (
        125,
        "cannot run nginx in container edge: No such container: edge",
    )


def container_nginx(tmp_path: Path, container: str) -> dict[str, Any]:
    return {
        "output": str(tmp_path / "nginx" / "upstreams.conf"),
        "test": ["nginx", "-t"],
        "container": container,
    }


def fake_exec_run(argv: list[str]) -> SimpleNamespace:
    return SimpleNamespace(exit_code=1, output=f"nginx: [emerg] ran {argv}\n".encode())


class FakeContainers:
    def __init__(self, containers: dict[str, Any]) -> None:
        self.containers = containers

    def get(self, name: str) -> Any:
        if name not in self.containers:
            raise docker.errors.NotFound(f"No such container: {name}")
        return self.containers[name]
