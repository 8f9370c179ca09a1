"""Test helpers shared by several test modules (house style: never import one test module
from another)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deployer.backends.base import ContainerInfo
from deployer.models import Deployment, StepState
from deployer.queue import new_deployment_id
from deployer.rollout.containers import make_container_spec
from deployer.runtime import Runtime
from tests.conftest import WEB_IMAGE, make_config
from tests.fakes import FakeBackend

PAYLOAD: dict[str, Any] = json.loads(
    (Path(__file__).parent / "payloads" / "dockerhub_push.json").read_text()
)


def deploy(runtime: Runtime, service: str = "web", tag: str = "latest") -> Deployment:
    """Run one deployment of service:tag to its end, in this thread; return it as stored."""
    deployment = new_deployment(runtime, service, tag)
    runtime.deployer.run(deployment)
    found = runtime.store.get(deployment.id)
    assert found is not None
    return found


def finished(runtime: Runtime, deployment_id: str, timeout: float = 5) -> Deployment:
    """Wait until the queued deployment finished and the queue is idle."""
    deadline = time.monotonic() + timeout
    while True:
        found = runtime.store.get(deployment_id)
        if found is not None and found.state.finished and runtime.queue.idle():
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.01)


def wait_for_step(runtime: Runtime, deployment_id: str, step: str, timeout: float = 30) -> None:
    """Wait until the deployment's step `step` is running."""
    deadline = time.monotonic() + timeout
    while True:
        found = runtime.store.get(deployment_id)
        last = found.steps[-1] if found is not None and found.steps else None
        if last is not None and (last.name, last.state) == (step, StepState.RUNNING):
            return
        assert time.monotonic() < deadline, found
        time.sleep(0.01)


class Killed(BaseException):
    """deployer was SIGKILLed here: nothing after this point is recorded or undone."""


def kill_when_step_starts(runtime: Runtime, deployment: Deployment, step: str) -> None:
    """Run deployment until `step` starts, then die there as a SIGKILL would: the store keeps
    what was written up to then (the step recorded `running`), the engine and nginx keep their
    state, nothing is undone."""
    original = runtime.store.save
    dead = False

    def save(item: Deployment) -> None:
        nonlocal dead
        if dead:
            return  # a dead process writes nothing more
        original(item)
        last = item.steps[-1] if item.steps else None
        if last is not None and last.name == step and last.state is StepState.RUNNING:
            dead = True
            raise Killed

    runtime.store.save = save  # type: ignore[method-assign, assignment]
    try:
        runtime.deployer.run(deployment)
    except Killed:
        return
    finally:
        runtime.store.save = original  # type: ignore[method-assign]
    raise AssertionError(f"deployment {deployment.id} never reached step {step}")


def new_deployment(runtime: Runtime, service: str = "web", tag: str = "latest") -> Deployment:
    """A deployment recorded as queued (not run)."""
    deployment = Deployment(
        id=new_deployment_id(), service=service, trigger="test", image=WEB_IMAGE, tag=tag
    )
    runtime.store.save(deployment)
    return deployment


def start_container(backend: FakeBackend, digest: str, behaviour: str = "serve") -> ContainerInfo:
    """A container of `web` at digest, started on the fake engine as a deployment would."""
    backend.push(WEB_IMAGE, "latest", digest, behaviour)
    backend.pull(WEB_IMAGE, digest)
    service = make_config(Path("/nonexistent")).services["web"]
    return backend.start(make_container_spec("web", service, digest, "d1", 18000, "unit"))
