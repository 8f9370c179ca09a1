"""nginx faults on a real nginx: a reload that reached nginx but was reported failed (the
command killed after it signalled the master) is undone by reloading the restored file, and
only then is the new container removed (real engine, registry and nginx, under load)."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from deployer.backends.docker import DockerBackend
from deployer.demo import instance_containers
from deployer.models import DeploymentState
from deployer.runtime import Runtime
from deployer.sandbox import ImageFactory, Load, SandboxNginx
from deployer.sandbox.net import http_get
from tests.helpers import finished

pytestmark = pytest.mark.integration

RELOAD_THEN_FAIL = """#!/bin/sh
# The real reload, then (once, while armed) a failure as if the command had been killed.
{reload} || exit $?
if [ -e {armed} ]; then rm -f {armed}; echo "killed after signalling" >&2; exit 124; fi
"""


def test_a_reload_reported_failed_after_it_reached_nginx_is_undone_before_the_container_goes(
    make_runtime: Callable[..., Runtime],
    make_nginx: Callable[[list[str]], SandboxNginx],
    images: ImageFactory,
    instance: str,
    tmp_path: Path,
) -> None:
    nginx = make_nginx(["web"])
    armed = tmp_path / "armed"
    script = tmp_path / "reload.sh"
    script.write_text(
        RELOAD_THEN_FAIL.format(reload=shlex.join(nginx.reload_argv), armed=shlex.quote(str(armed)))
    )
    script.chmod(0o755)
    nginx.reload_argv = [str(script)]  # what deployer_config() hands to deployer
    v1 = images.build("reload-killed", "v1", tag="latest")
    runtime = make_runtime(DockerBackend(), nginx, v1.repository)
    good = finished(runtime, runtime.deploy_now("web", "latest", "test").id, timeout=60)
    before = nginx.upstreams.read_text()
    images.build("reload-killed", "v2", tag="latest")
    armed.touch()

    with Load(nginx.url("web", "/version")) as load:
        failed = finished(runtime, runtime.deploy_now("web", "latest", "test").id, timeout=60)

    assert failed.state is DeploymentState.FAILED
    assert "nginx reload failed" in (failed.error or "")
    assert "previous file restored and nginx reloaded with it" in (failed.error or "")
    assert nginx.upstreams.read_text() == before
    assert load.failures() == []
    assert "v2" in load.bodies()  # nginx did take the new file for a moment...
    assert load.bodies()[-1] == "v1"  # ...and runs the old one again
    assert http_get(nginx.url("web", "/version")) == (200, "v1\n")
    assert instance_containers(instance) == [good.container]
