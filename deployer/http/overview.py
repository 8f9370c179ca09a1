"""What GET /status and the status page show per service (read from memory and one query)."""

from __future__ import annotations

from typing import Any

from deployer.documents import service_status
from deployer.models import Deployment
from deployer.runtime import Runtime


def status_document(
    runtime: Runtime, show_logs: bool = False, recent: dict[str, list[Deployment]] | None = None
) -> dict[str, Any]:
    """GET /status: per service, what serves and the state of its deployments.

    Bounded work whatever the history's size: one indexed query for every service's newest
    deployment (or `recent`, read already), the rest from memory (fleet, queue, container
    watch); never a call to the engine or nginx.
    """
    names = list(runtime.config.services)
    newest = recent if recent is not None else runtime.store.recent(names, 1)
    services = {}
    for name in names:
        serving = runtime.fleet.serving(name)
        services[name] = service_status(
            runtime.config,
            name,
            serving,
            runtime.queue.running(name),
            newest[name][0] if newest.get(name) else None,
            {c.id: runtime.watch.state(c.id) for c in serving.containers} if serving else None,
            show_logs,
            runtime.view.get(name),
        )
    return {"services": services}
