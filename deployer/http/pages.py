"""The HTML status page (GET /) and one deployment's page, from templates/ (autoescaped).

The page refreshes itself every BUSY_REFRESH seconds while a deployment waits or runs, and
every IDLE_REFRESH seconds otherwise. No script, no outside CSS: it works on an offline host.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from deployer.documents import deployment_json, iso
from deployer.http.auth import authenticated, guard_reads
from deployer.http.context import current_runtime
from deployer.http.overview import status_document
from deployer.models import Deployment, utc_now
from deployer.runtime import Runtime

blueprint = Blueprint("pages", __name__)
blueprint.before_request(guard_reads)
HISTORY = 5
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
    """One card per service: its status entry plus its last deployments."""
    services = status_document(current, show_logs)["services"]
    return [
        {
            "name": name,
            **entry,
            "history": [
                deployment_json(item, show_logs) for item in current.store.history(name, HISTORY)
            ],
        }
        for name, entry in services.items()
    ]


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


def not_found(message: str) -> str:
    return render_template("not_found.html", message=message, refresh=None)
