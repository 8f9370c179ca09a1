"""`deployer serve` SIGKILLed in each step of a deployment, then started again, while GETs flow
through nginx the whole time (real engine, registry and nginx).

Each step's window is held open with the sandbox's fault tools: resolve and pull by holding the
registry's answer, start by holding the engine's container start, healthy by an app slow to
listen, nginx by a slow `nginx -t`, drain by a long request in flight on the old container,
retire by an old app that ignores SIGTERM. After the restart: not one failed request, exactly
one container, nginx pointing at it, and the deployment's record saying what happened
(`failed: interrupted at <step>` before the switch, `succeeded` after it, resumed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deployer.backends.docker import DockerBackend
from deployer.sandbox import (
    AppBehaviour,
    EngineProxy,
    ImageFactory,
    Load,
    LocalRegistry,
    SandboxNginx,
    SlowCommand,
    TcpProxy,
)
from deployer.sandbox.faults import Rule
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import http_get, wait_for_http
from deployer.sandbox.serve import ServeProcess
from tests.testbed import SESSION

pytestmark = pytest.mark.integration
BEFORE_SWITCH = ["resolve", "pull", "start", "healthy", "nginx"]
AFTER_SWITCH = ["drain", "retire"]
SLOW_REQUEST = 6  # seconds the request in flight during the drain takes


@dataclass
class Window:
    """What holds a step open, and how to let go of it once deployer is dead."""

    rule: Rule | None = None
    slow_test: SlowCommand | None = None
    slow_answer: list[tuple[int, str]] | None = None
    thread: threading.Thread | None = None

    def entered(self) -> None:
        if self.rule is not None:
            self.rule.wait(30)
        if self.slow_test is not None:
            self.slow_test.wait_started(count=2)  # the first start was v1's switch

    def release(self) -> None:
        if self.rule is not None:
            self.rule.release()
        if self.slow_test is not None:
            self.slow_test.disarm()


def only_in(newer: list[str], older: list[str]) -> str:
    [layer] = [digest for digest in newer if digest not in older]
    return layer


def hold_open(
    step: str,
    nginx: SandboxNginx,
    engine_proxy: EngineProxy,
    registry_proxy: TcpProxy,
    registry: LocalRegistry,
    versions: tuple[PushedImage, PushedImage],
    slow_test: SlowCommand,
) -> Window:
    """Arm the fault that keeps `step` of the next deployment running."""
    v1, v2 = versions
    repository = v2.repository.split("/", 1)[1]
    if step == "resolve":
        return Window(rule=registry_proxy.hold("HEAD", "/v2/.*/manifests/latest"))
    if step == "pull":  # the layer only v2 has: resolve reads manifests and the config only
        layer = only_in(
            registry.layers(repository, v2.digest), registry.layers(repository, v1.digest)
        )
        return Window(rule=registry_proxy.hold("GET", f"/v2/.*/blobs/{layer}"))
    if step == "start":
        return Window(rule=engine_proxy.hold("POST", "/containers/[^/]+/start"))
    if step == "nginx":
        slow_test.arm()
        return Window(slow_test=slow_test)
    if step == "drain":  # a long request on the old container keeps the drain waiting
        answers: list[tuple[int, str]] = []
        url = nginx.url("web", f"/cgi-bin/slow?{SLOW_REQUEST}")
        thread = threading.Thread(target=lambda: answers.append(http_get(url, timeout=30)))
        thread.start()
        return Window(slow_answer=answers, thread=thread)
    return Window()  # healthy: v2 is slow to listen; retire: v1 ignores SIGTERM


# How the drain sees the end of traffic to the old container: nginx's workers (pid file), or
# the old container's connections (no pid file: deployer/rollout/drain.py).
KILL_POINTS = [(step, "workers") for step in BEFORE_SWITCH + AFTER_SWITCH] + [
    ("drain", "connections")
]


@pytest.mark.parametrize(("step", "drain_watches"), KILL_POINTS)
def test_sigkill_in_each_step_then_restart_keeps_serving_and_leaves_nothing(
    step: str,
    drain_watches: str,
    make_serve: Callable[..., ServeProcess],
    make_nginx: Callable[[list[str]], SandboxNginx],
    engine_proxy: EngineProxy,
    registry_proxy: TcpProxy,
    registry: LocalRegistry,
    images: ImageFactory,
    instance: str,
    tmp_path: Path,
) -> None:
    nginx = make_nginx(["web"])
    slow_test = SlowCommand(nginx.test_argv, 60, tmp_path / "slow", "nginx-test", armed=False)
    name = f"kill-{step}"
    old = AppBehaviour.IGNORE_TERM if step == "retire" else AppBehaviour.SERVE
    # Versions unique to this test: layers are content-addressed and the engine keeps them.
    versions = [f"{step}-{number}-{SESSION}" for number in (1, 2)]
    v1 = images.build(name, versions[0], old, tag="latest")
    image = registry_proxy.rehost(v1.repository)
    nginx_config: dict[str, Any] = {**nginx.deployer_config(), "test": slow_test.argv}
    if drain_watches == "connections":
        del nginx_config["pid_file"]
    serve = make_serve(
        image,
        nginx,
        environ=engine_proxy.environ(),
        nginx_config=nginx_config,
        drain=30 if step == "drain" else 1,
        stop_timeout=8,
    ).start()
    first = serve.push(image)
    assert serve.wait_for_state(first)["state"] == "succeeded"
    new = AppBehaviour.SLOW if step == "healthy" else AppBehaviour.SERVE
    v2 = images.build(name, versions[1], new, delay=60, tag="latest")
    images.remove_local(v2, image)  # so that the pull is a real pull, through the proxy

    with Load(nginx.url("web", "/version")) as load:
        window = hold_open(step, nginx, engine_proxy, registry_proxy, registry, (v1, v2), slow_test)
        second = serve.push(image)
        serve.wait_for_step(second, step)
        window.entered()
        serve.kill()
        window.release()
        serve.restart()
        record = serve.wait_for_state(second, timeout=60)
        if window.thread is not None:
            window.thread.join(30)

    managed = DockerBackend().list_managed(instance)
    expected = versions[1] if step in AFTER_SWITCH else versions[0]
    assert load.failures() == [], serve.output()
    assert len(load.answers) > 20
    assert [(c.digest, c.status) for c in managed] == [
        (v2.digest if step in AFTER_SWITCH else v1.digest, "running")
    ], serve.output()
    assert f"server {managed[0].address};" in nginx.upstreams.read_text()
    assert http_get(nginx.url("web", "/version")) == (200, f"{expected}\n")
    assert_record(record, step, serve.deployment(first))
    if drain_watches == "connections":  # the resumed drain waited for the request's connection
        drain = next(item for item in record["steps"][::-1] if item["name"] == "drain")
        assert drain["detail"].startswith("resumed after deployer restarted: no connection to ")
        assert "(1 seen" in drain["detail"], drain["detail"]
    if window.slow_answer is not None:
        # in flight on the old container when it was switched away from: it finished
        assert window.slow_answer == [(200, f"{versions[0]}\n")]


def assert_record(record: dict[str, Any], step: str, first: dict[str, Any]) -> None:
    """What the history says of the deployment deployer was killed in."""
    states = [(item["name"], item["state"]) for item in record["steps"]]
    if step in BEFORE_SWITCH:
        assert record["state"] == "failed", record
        assert record["error"].startswith(f"interrupted at {step}: deployer stopped"), record
        assert f"{first['container']} keeps serving" in record["error"]
        assert states[-1] == (step, "interrupted")
        return
    assert record["state"] == "succeeded", record
    assert (step, "interrupted") in states
    assert states[-2:] == [("drain", "succeeded"), ("retire", "succeeded")], states
    assert record["steps"][-2]["detail"].startswith("resumed after deployer restarted")


def test_sigkill_while_stop_first_stops_an_old_app_that_ignores_sigterm_serves_it_again(
    make_serve: Callable[..., ServeProcess],
    make_nginx: Callable[[list[str]], SandboxNginx],
    images: ImageFactory,
    instance: str,
) -> None:
    """Killed in stop-first's `stop` while the engine still waits out the old app's
    stop_timeout: at the restart the old container still runs, and the engine stops it a few
    seconds later. The restart must leave the old release serving once that stop is over."""
    nginx = make_nginx(["web"])
    stop_timeout = 4
    versions = [f"stop-first-{number}-{SESSION}" for number in (1, 2)]
    v1 = images.build("kill-stop", versions[0], AppBehaviour.IGNORE_TERM, tag="latest")
    serve = make_serve(
        v1.repository, nginx, strategy="stop-first", stop_timeout=stop_timeout
    ).start()
    first = serve.push(v1.repository)
    assert serve.wait_for_state(first)["state"] == "succeeded"
    images.build("kill-stop", versions[1], tag="latest")

    second = serve.push(v1.repository)
    serve.wait_for_step(second, "stop")
    serve.kill()
    serve.restart()
    record = serve.wait_for_state(second, timeout=60)
    wait_for_http(nginx.url("web", "/version"), timeout=stop_timeout + 15)  # the gap closes
    time.sleep(stop_timeout + 1)  # past the moment the engine's stop would have ended v1

    managed = DockerBackend().list_managed(instance)
    assert record["state"] == "failed", record
    assert record["error"].startswith("interrupted at stop: deployer stopped"), record
    assert [(c.digest, c.status) for c in managed] == [(v1.digest, "running")], serve.output()
    assert f"server {managed[0].address};" in nginx.upstreams.read_text()
    assert http_get(nginx.url("web", "/version")) == (200, f"{versions[0]}\n"), serve.output()
