"""What GET /status and the status page show per service (read from the runtime)."""

from __future__ import annotations

from typing import Any

from deployer.documents import service_status
from deployer.errors import DeployerError
from deployer.fleet import Serving
from deployer.runtime import Runtime


def status_document(runtime: Runtime) -> dict[str, Any]:
    """GET /status: per service, what serves and the state of its deployments."""
    services = {}
    for name in runtime.config.services:
        history = runtime.store.history(name, limit=1)
        serving = runtime.fleet.serving(name)
        services[name] = service_status(
            runtime.config,
            name,
            serving,
            runtime.queue.running(name),
            history[0] if history else None,
            health(runtime, serving),
        )
    return {"services": services}


def health(runtime: Runtime, serving: Serving | None) -> str | None:
    """The serving container's state now: healthy / unhealthy / starting / running / ..."""
    if serving is None:
        return None
    try:
        info = runtime.backend.inspect(serving.container.id)
    except DeployerError as err:
        return f"unknown ({err})"
    if info.stopped:
        return f"{info.status} (exit code {info.exit_code})"
    return info.health or info.status
