"""A restarted deployer adopts what runs, removes leftovers, and never duplicates a service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask

from deployer.config import Config
from deployer.models import DeploymentState
from deployer.rollout.containers import make_container_spec
from deployer.runtime import Runtime
from tests.conftest import SERVICES, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import deploy

V1 = "sha256:" + "1" * 64


def test_restart_adopts_the_running_container_and_rerenders_nginx(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    done = deploy(first)
    first.stop(1)
    first.nginx.output.unlink()

    second: Runtime = make_app(config).extensions["deployer"]
    report = second.start()

    assert report[0] == f"web: adopted {done.container} ({V1}) on 127.0.0.1:18000"
    assert second.fleet.serving("web").names == done.container  # type: ignore[union-attr]
    assert "server 127.0.0.1:18000;" in second.nginx.output.read_text()
    assert len(backend.running("web")) == 1
    assert deploy(second).state is DeploymentState.SKIPPED


def test_restart_removes_the_leftover_of_an_interrupted_deployment(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    done = deploy(first)
    leftover = backend.start(
        make_container_spec(
            "web", config.services["web"], V1, "crashed0001", 18005, config.instance
        )
    )
    first.stop(1)

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    assert [c.name for c in backend.running("web")] == [done.container]
    assert leftover.id not in backend.containers


def test_restart_keeps_a_container_docker_restarted_once(
    make_app: Callable[..., Flask], config: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    done = deploy(first)
    first.stop(1)
    [container] = backend.running("web")
    backend.restarted_by_docker(container.id)  # crashed at night, back by `unless-stopped`

    second: Runtime = make_app(config).extensions["deployer"]
    second.start()

    assert [c.name for c in backend.running("web")] == [done.container]
    assert second.fleet.serving("web").names == done.container  # type: ignore[union-attr]
    web_block = second.nginx.output.read_text().split("upstream web {")[1].split("}")[0]
    assert "server 127.0.0.1:18000;" in web_block
    assert "down" not in web_block


@pytest.mark.parametrize("status", ["restarting", "paused"])
def test_restart_keeps_a_replica_of_the_serving_release_that_is_restarting_or_paused(
    make_app: Callable[..., Flask], tmp_path: Path, backend: FakeBackend, status: str
) -> None:
    config = make_config(tmp_path, services={**SERVICES, "web": {**SERVICES["web"], "replicas": 2}})
    first: Runtime = make_app(config).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    done = deploy(first)
    first.stop(1)
    one, other = sorted(backend.running("web"), key=lambda container: container.name)
    backend.containers[one.id] = replace(one, status=status)  # between two restarts / paused
    backend.crash(other.id)  # exited: that one does not come back by itself

    second: Runtime = make_app(config).extensions["deployer"]
    report = second.start()

    assert one.id in backend.containers, report
    assert other.id not in backend.containers
    assert second.fleet.serving("web").names == f"web-{done.id}-1"  # type: ignore[union-attr]
    web_block = second.nginx.output.read_text().split("upstream web {")[1].split("}")[0]
    assert f"server {one.address};" in web_block
