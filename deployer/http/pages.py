"""The HTML status page (GET /) and one deployment's page, from templates/ (autoescaped).

The page refreshes itself every BUSY_REFRESH seconds while a deployment waits or runs, and
every IDLE_REFRESH seconds otherwise. No script, no outside CSS: it works on an offline host.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, render_template, request

from deployer.documents import deployment_json, iso
from deployer.http.auth import authenticated, guard_reads
from deployer.http.context import current_runtime
from deployer.http.overview import status_document
from deployer.models import Deployment, utc_now
from deployer.runtime import Runtime

blueprint = Blueprint("pages", __name__)
blueprint.before_request(guard_reads)
HISTORY = 5  # deployments per service card: the newest in full, the others one line each
PAGE = 50  # deployments per history page
MIN_SHARE = 0.04  # the least share of a timeline bar a step gets, so it stays visible
BUSY_REFRESH = 2
IDLE_REFRESH = 30


@blueprint.app_template_filter("when")
def when(moment: str | None) -> str:
    """`2026-11-24T02:17:01.848741Z` -> `2026-11-24 02:17:01 UTC` (the ISO value in full is
    in the JSON API)."""
    if not moment:
        return "-"
    return moment.replace("T", " ", 1).split(".")[0].removesuffix("Z") + " UTC"


def status_cards(current: Runtime, show_logs: bool) -> list[dict[str, Any]]:
    """One card per service: its status entry plus its last deployments (one query)."""
    recent = current.store.recent(list(current.config.services), HISTORY)
    services = status_document(current, show_logs, recent)["services"]
    return [
        {
            "name": name,
            **entry,
            "history": [deployment_json(item, show_logs) for item in recent[name]],
        }
        for name, entry in services.items()
    ]


@blueprint.app_template_global()
def timeline(item: dict[str, Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """A deployment's steps as shares of a bar (pure): name, state, seconds, percent.

    A running step counts up to now; every step gets at least MIN_SHARE of the bar so a
    5 ms step stays visible beside a 2 s one.
    """
    now = now or utc_now()
    spans = []
    for step in item["steps"]:
        seconds = step["duration_seconds"]
        if seconds is None:
            started = datetime.fromisoformat(step["started_at"].replace("Z", "+00:00"))
            seconds = max(0.0, (now - started).total_seconds())
        spans.append({"name": step["name"], "state": step["state"], "seconds": seconds})
    total = sum(span["seconds"] for span in spans) or 1.0
    weights = [max(span["seconds"] / total, MIN_SHARE) for span in spans]
    for span, weight in zip(spans, weights, strict=True):
        span["percent"] = round(100 * weight / sum(weights), 2)
        took = "running…" if span["state"] == "running" else f"{span['seconds']:.2f} s"
        span["label"] = f"{span['name']} {took}"
        span["title"] = f"{span['name']} {span['state']} {span['seconds']:.3f} s"
    return spans


def busy(deployments: list[dict[str, Any]]) -> bool:
    return any(item["state"] in ("queued", "running") for item in deployments)


@blueprint.get("/")
def index() -> str:
    """The status page."""
    cards = status_cards(current_runtime(), authenticated())
    waiting = busy([item for card in cards for item in card["history"]])
    return render_template(
        "status.html",
        cards=cards,
        refresh=BUSY_REFRESH if waiting else IDLE_REFRESH,
        generated=iso(utc_now()),
    )


def deployment_page(deployment: Deployment, show_logs: bool) -> str:
    """One deployment in full; refreshes while it is not finished."""
    item = deployment_json(deployment, show_logs)
    return render_template(
        "deployment.html", item=item, refresh=BUSY_REFRESH if busy([item]) else None
    )


@blueprint.get("/services/<name>/history")
def history(name: str) -> tuple[str, int] | str:
    """A service's deployments, PAGE at a time, newest first; `?before=<id>` pages back."""
    current = current_runtime()
    if name not in current.config.services:
        return not_found(f"No service named {name!r} is configured."), 404
    before = request.args.get("before")
    if before is not None and current.store.get(before) is None:
        message = f"No deployment with id {before!r}: page back from one the history lists."
        return not_found(message), 400
    found = current.store.history(name, PAGE + 1, before)
    items = [deployment_json(item, authenticated()) for item in found[:PAGE]]
    return render_template(
        "history.html",
        service=name,
        items=items,
        older=items[-1]["id"] if len(found) > PAGE else None,
        first_page=before is None,
        refresh=None,
    )


def not_found(message: str) -> str:
    return render_template("not_found.html", message=message, refresh=None)
