"""Test helpers shared by several test modules (house style: never import one test module
from another)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deployer.models import Deployment
from deployer.queue import new_deployment_id
from deployer.runtime import Runtime
from tests.conftest import WEB_IMAGE

PAYLOAD: dict[str, Any] = json.loads(
    (Path(__file__).parent / "payloads" / "dockerhub_push.json").read_text()
)


def deploy(runtime: Runtime, service: str = "web", tag: str = "latest") -> Deployment:
    """Run one deployment of service:tag to its end, in this thread; return it as stored."""
    deployment = Deployment(
        id=new_deployment_id(), service=service, trigger="test", image=WEB_IMAGE, tag=tag
    )
    runtime.store.save(deployment)
    runtime.deployer.run(deployment)
    found = runtime.store.get(deployment.id)
    assert found is not None
    return found


def finished(runtime: Runtime, deployment_id: str) -> Deployment:
    """Wait (up to 5 s) until the queued deployment finished and the queue is idle."""
    deadline = time.monotonic() + 5
    while True:
        found = runtime.store.get(deployment_id)
        if found is not None and found.state.finished and runtime.queue.idle():
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.01)
