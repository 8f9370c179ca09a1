"""What GET /status and the status page show per service (read from the runtime)."""

from __future__ import annotations

from typing import Any

from deployer.documents import service_status
from deployer.runtime import Runtime


def status_document(runtime: Runtime, show_logs: bool = False) -> dict[str, Any]:
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
            runtime.watch.state(serving.container.id) if serving is not None else None,
            show_logs,
        )
    return {"services": services}
