"""The deployment state machine on a fake engine: outcomes, rollbacks, recorded steps."""

from __future__ import annotations

import pytest

from deployer.models import Deployment, DeploymentState
from deployer.runtime import Runtime
from tests.conftest import WEB_IMAGE
from tests.fakes import FakeBackend, FakeNginxCommands
from tests.helpers import deploy

V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


def step_names(deployment: Deployment) -> list[tuple[str, str]]:
    return [(step.name, step.state.value) for step in deployment.steps]


def test_first_deployment_starts_the_container_and_points_nginx_at_it(
    runtime: Runtime, backend: FakeBackend, nginx_commands: FakeNginxCommands
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)

    result = deploy(runtime)

    assert result.state is DeploymentState.SUCCEEDED
    assert step_names(result) == [
        ("resolve", "succeeded"),
        ("pull", "succeeded"),
        ("start", "succeeded"),
        ("healthy", "succeeded"),
        ("nginx", "succeeded"),
    ]
    [container] = backend.running("web")
    assert (container.digest, container.address) == (V1, "127.0.0.1:18000")
    assert f"server {container.address};" in runtime.nginx.output.read_text()
    assert nginx_commands.reloads == 1
    assert all(step.finished_at and step.finished_at >= step.started_at for step in result.steps)
    assert result.digest == V1
    assert result.previous_digest is None


def test_new_release_replaces_the_old_container_after_the_switch(
    runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2)

    result = deploy(runtime)

    assert result.state is DeploymentState.SUCCEEDED
    assert [name for name, _ in step_names(result)][-3:] == ["nginx", "drain", "retire"]
    [container] = backend.running("web")
    assert (container.digest, container.address) == (V2, "127.0.0.1:18001")
    assert "127.0.0.1:18001" in runtime.nginx.output.read_text()
    assert result.previous_digest == V1


def test_digest_already_running_is_skipped(runtime: Runtime, backend: FakeBackend) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    first = deploy(runtime)

    again = deploy(runtime)

    assert again.state is DeploymentState.SKIPPED
    assert step_names(again) == [("resolve", "succeeded")]
    assert "already runs it" in again.steps[0].detail
    assert [c.name for c in backend.running("web")] == [first.container]


@pytest.mark.parametrize(
    ("behaviour", "message", "logs"),
    [
        ("exit", "exited (status 3) before it was healthy", "fatal: cannot read /etc/app.conf"),
        (
            "silent",
            "did not answer GET /healthz with 2xx within 0.3 s (last: ConnectionError)",
            "(no output)",
        ),
    ],
)
def test_release_that_never_gets_healthy_is_rolled_back(
    runtime: Runtime, backend: FakeBackend, behaviour: str, message: str, logs: str
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    nginx_before = runtime.nginx.output.read_text()
    backend.push(WEB_IMAGE, "latest", V2, behaviour=behaviour)

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert result.error is not None
    assert message in result.error
    assert result.logs == logs  # kept apart from the error: shown to authenticated readers
    assert result.error.startswith(f"web (container web-{result.id}")
    assert result.error.endswith(f"; {good.container} keeps serving")
    assert step_names(result)[-1] == ("healthy", "failed")
    assert [c.name for c in backend.running("web")] == [good.container]
    assert runtime.nginx.output.read_text() == nginx_before


def test_nginx_test_failure_restores_the_file_and_removes_the_new_container(
    runtime: Runtime, backend: FakeBackend, nginx_commands: FakeNginxCommands
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    nginx_before = runtime.nginx.output.read_text()
    backend.push(WEB_IMAGE, "latest", V2)
    nginx_commands.fail_test = True

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert "nginx test failed" in (result.error or "")
    assert "invalid parameter" in (result.error or "")
    assert runtime.nginx.output.read_text() == nginx_before
    assert [c.name for c in backend.running("web")] == [good.container]
    assert runtime.fleet.serving("web").names == good.container  # type: ignore[union-attr]


def test_unknown_tag_fails_at_resolve_naming_the_reference(runtime: Runtime) -> None:
    result = deploy(runtime, tag="nope")

    assert result.state is DeploymentState.FAILED
    assert result.error == f"cannot resolve {WEB_IMAGE}:nope: not found"
    assert step_names(result) == [("resolve", "failed")]


def test_full_port_pool_fails_clearly(runtime: Runtime, backend: FakeBackend) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.bluegreen.is_port_free = lambda port: False

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert result.error == (
        "no free port for web in 18000-18009: all are used by containers or other programs; "
        "widen `ports`"
    )


def test_stop_before_the_switch_rolls_back(runtime: Runtime, backend: FakeBackend) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    runtime.stopping.set()

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert "deployer is stopping" in (result.error or "")
    assert backend.running("web") == []
    assert not runtime.nginx.output.exists()


def test_new_container_restarted_by_its_policy_fails_the_health_gate(
    runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2, behaviour="crashloop")

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert "was restarted 2 times by its restart policy (it crashed) before it was healthy" in (
        result.error or ""
    )
    assert [c.name for c in backend.running("web")] == [good.container]


def test_a_new_container_its_healthcheck_calls_unhealthy_is_rolled_back(
    runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    good = deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2, behaviour="unhealthy")

    result = deploy(runtime)

    assert result.state is DeploymentState.FAILED
    assert "reported unhealthy by its image HEALTHCHECK" in (result.error or "")
    assert [c.name for c in backend.running("web")] == [good.container]


def test_a_failed_retire_is_recorded_failed_while_the_new_release_serves(
    runtime: Runtime, backend: FakeBackend
) -> None:
    backend.push(WEB_IMAGE, "latest", V1)
    old = deploy(runtime)
    backend.push(WEB_IMAGE, "latest", V2)
    backend.stop_fails = True

    result = deploy(runtime)

    assert result.state is DeploymentState.SUCCEEDED
    assert step_names(result)[-1] == ("retire", "failed")
    assert "cannot stop container" in result.steps[-1].detail
    assert "deployer removes the old one at the next deployment or start" in result.steps[-1].detail
    assert runtime.fleet.serving("web").names == result.container  # type: ignore[union-attr]
    assert sorted(c.name for c in backend.running("web")) == sorted(
        [str(old.container), str(result.container)]
    )
