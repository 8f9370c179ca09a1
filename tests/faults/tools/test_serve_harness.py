"""ServeProcess with every tool at once: `deployer serve` reaching the engine through the engine
proxy (DOCKER_HOST) and pulling through the registry proxy, its nginx test slowed down,
SIGKILLed and restarted while nginx keeps serving under load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.sandbox import EngineProxy, ImageFactory, Load, SandboxNginx, SlowCommand, TcpProxy
from deployer.sandbox.net import http_get
from deployer.sandbox.serve import ServeProcess

pytestmark = pytest.mark.integration


def test_serve_process_deploys_through_the_proxies_and_survives_sigkill_and_restart(
    make_serve: Callable[..., ServeProcess],
    make_nginx: Callable[[list[str]], SandboxNginx],
    engine_proxy: EngineProxy,
    registry_proxy: TcpProxy,
    images: ImageFactory,
    tmp_path: Path,
) -> None:
    nginx = make_nginx(["web"])
    slow_test = SlowCommand(nginx.test_argv, 0.5, tmp_path / "slow", name="nginx-test")
    pushed = images.build("served", "v1", tag="latest")
    image = registry_proxy.rehost(pushed.repository)
    serve = make_serve(
        image,
        nginx,
        environ=engine_proxy.environ(),
        nginx_config={**nginx.deployer_config(), "test": slow_test.argv},
    ).start()

    deployment = serve.push(image)
    serve.wait_for_step(deployment, "nginx")
    slow_test.wait_started()
    during_nginx_test = serve.deployment(deployment)
    finished = serve.wait_for_state(deployment)

    assert [(step["name"], step["state"]) for step in during_nginx_test["steps"]] == [
        ("resolve", "succeeded"),
        ("pull", "succeeded"),
        ("start", "succeeded"),
        ("healthy", "succeeded"),
        ("nginx", "running"),
    ]
    assert finished["state"] == "succeeded", finished["error"]
    assert finished["digest"] == pushed.digest
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
    # deployer's engine and registry traffic went through the proxies
    assert engine_proxy.requests("POST", "/containers/create")[0].status == 201
    assert registry_proxy.requests("HEAD", "/v2/.*/manifests/latest")[0].status == 200

    with Load(nginx.url("web", "/version")) as load:
        killed = serve.kill()
        serve.restart()

    assert killed == -9
    assert serve.running
    assert serve.runs == 2
    assert load.failures() == []
    assert load.bodies() == ["v1"]
    assert f"deployment {deployment} of web succeeded" in serve.output(run=1)
    assert "listening on" in serve.output(run=-1)
    assert f"deployment {deployment}" not in serve.output(run=2)
    assert serve.deployment(deployment)["state"] == "succeeded"  # the history survived
