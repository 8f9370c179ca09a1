"""Pure builders of the JSON documents the API returns and notifications carry.

A finished deployment never changes, so its document is built once and kept (a bounded memo,
keyed so that anything that could differ makes another key): /status and the page show 100
services' last deployments several times a second without rebuilding them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from deployer.config import Config
from deployer.fleet import Serving
from deployer.models import Deployment, DeploymentState
from deployer.swarm_view import SwarmSnapshot


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with a Z, or None."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def short_digest(digest: str | None) -> str | None:
    """`sha256:0123456789ab` (algorithm and 12 hex digits) for display, or None."""
    return digest[:19] if digest else None


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    """end - start in seconds (3 decimals), or None when either is missing."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


MEMO_SIZE = 4096
_memo: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
_memo_lock = threading.Lock()


def deployment_json(deployment: Deployment, show_logs: bool = False) -> dict[str, Any]:
    """GET /deployments/<id>. The container's log lines only with show_logs (an
    authenticated reader): apps print secrets at start-up. Callers must not change it."""
    if not deployment.state.finished:
        return _deployment_json(deployment, show_logs)
    state, finished = deployment.state, deployment.finished_at
    key = (deployment.id, state, finished, len(deployment.steps), deployment.error, show_logs)
    with _memo_lock:
        found = _memo.get(key)
        if found is not None:
            _memo.move_to_end(key)
            return found
    built = _deployment_json(deployment, show_logs)
    with _memo_lock:
        _memo[key] = built
        if len(_memo) > MEMO_SIZE:
            _memo.popitem(last=False)
    return built


def _deployment_json(deployment: Deployment, show_logs: bool) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "service": deployment.service,
        "state": deployment.state.value,
        "trigger": deployment.trigger,
        "image": f"{deployment.image}:{deployment.tag}",
        "digest": deployment.digest,
        "previous_digest": deployment.previous_digest,
        "container": deployment.container,
        "created_at": iso(deployment.created_at),
        "started_at": iso(deployment.started_at),
        "finished_at": iso(deployment.finished_at),
        "duration_seconds": seconds(deployment.started_at, deployment.finished_at),
        "steps": [
            {
                "name": step.name,
                "state": step.state.value,
                "started_at": iso(step.started_at),
                "finished_at": iso(step.finished_at),
                "duration_seconds": seconds(step.started_at, step.finished_at),
                "detail": step.detail,
            }
            for step in deployment.steps
        ],
        "error": deployment.error,
        "gap_seconds": deployment.gap_seconds,
        "logs": deployment.logs if show_logs else None,
        "logs_withheld": bool(deployment.logs) and not show_logs,
    }


def service_status(
    config: Config,
    name: str,
    serving: Serving | None,
    running: Deployment | None,
    last: Deployment | None,
    health: Mapping[str, str] | None = None,
    show_logs: bool = False,
    swarm: SwarmSnapshot | None = None,
) -> dict[str, Any]:
    """One entry of GET /status: what serves (each replica with its health, read from memory:
    container id -> state; a Swarm service's replicas and tasks as last read), and the state
    of the service's deployments."""
    health = health or {}
    service = config.services[name]
    last_finished_failed = (
        last is not None and last.state is DeploymentState.FAILED and running is None
    )
    if running is not None:
        state, since = "deploying", running.started_at
    elif last_finished_failed and last is not None:
        state, since = "failed", last.finished_at
    elif serving is not None:
        state, since = "running", serving.since
    else:
        state, since = "absent", None
    common = {
        "image": f"{service.image}:{service.tag}",
        "engine": service.engine,
        "digest": serving.digest if serving else None,
        "state": state,
        "since": iso(since),
    }
    last_json = deployment_json(last, show_logs) if last else None
    if service.engine == "swarm":
        return {**common, **swarm_status(swarm, serving), "last_deployment": last_json}
    replicas = [
        {"container": c.name, "address": c.address, "health": health.get(c.id)}
        for c in (serving.containers if serving else ())
    ]
    states = sorted({replica["health"] for replica in replicas if replica["health"]})
    first = replicas[0] if replicas else {}
    return {
        **common,
        "container": first.get("container"),
        "address": first.get("address"),
        "health": ", ".join(states) or None,
        "replicas": replicas,
        "last_deployment": last_json,
    }


def swarm_status(snapshot: SwarmSnapshot | None, serving: Serving | None) -> dict[str, Any]:
    """A Swarm service's part of GET /status: replicas desired and running, its tasks, Swarm's
    update state, the addresses nginx sends it to, and when the engine was last read."""
    status = snapshot.status if snapshot is not None else None
    return {
        "service": status.service if status else None,
        "addresses": [member.address for member in serving.members] if serving else [],
        "replicas": {
            "desired": status.replicas_desired if status else None,
            "running": status.replicas_running if status else 0,
        },
        "update_state": status.update_state if status else None,
        "update_message": status.update_message if status else "",
        "tasks": [
            {
                "id": task.id[:12],
                "slot": task.slot,
                "node": task.node,
                "desired_state": task.desired_state,
                "state": task.state,
                "digest": task.digest,
                "port": task.port,
                "error": task.error or None,
            }
            for task in (status.tasks if status else ())
        ],
        "read_at": iso(snapshot.read_at) if snapshot else None,
        "read_error": snapshot.error if snapshot else None,
    }
