"""Read endpoints: GET /healthz, /status, /metrics, /deployments and /deployments/<id>."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST

from deployer.documents import deployment_json
from deployer.errors import BadRequest, NotFound
from deployer.http import pages
from deployer.http.auth import authenticated, guard_reads
from deployer.http.context import current_runtime
from deployer.http.listing import listing_response
from deployer.http.overview import status_document

blueprint = Blueprint("status", __name__)
blueprint.before_request(guard_reads)
MAX_LIMIT = 500
DIGITS = re.compile(r"[0-9]{1,4}")  # ASCII only: '²'.isdigit() is true, int('²') fails


@blueprint.after_request
def vary_on_accept(response: Response) -> Response:
    """A deployment is JSON or a page depending on Accept: caches must know."""
    if request.endpoint == "status.deployment":
        response.vary.add("Accept")
    return response


def parse_limit(raw: str) -> int:
    """The `limit` query parameter: a whole number from 1 to MAX_LIMIT."""
    if not DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
    return int(raw)


@blueprint.get("/healthz")
def healthz() -> tuple[Any, int]:
    return jsonify({"status": "stopping" if current_runtime().stopping.is_set() else "ok"}), 200


@blueprint.get("/status")
def service_status() -> Any:
    return jsonify(status_document(current_runtime(), authenticated()))


@blueprint.get("/metrics")
def metrics() -> Response:
    return Response(current_runtime().metrics.render(), content_type=CONTENT_TYPE_LATEST)


@blueprint.get("/deployments")
def deployments() -> Any:
    current = current_runtime()
    service = request.args.get("service")
    if service is not None and service not in current.config.services:
        raise NotFound(f"no service named {service!r} is configured")
    limit, before = parse_limit(request.args.get("limit", "20")), request.args.get("before")
    if before is not None and not current.store.has(before):
        raise BadRequest(f"before: no deployment with id {before!r}; page with an id listed")
    return listing_response(current.store, service, limit, before, authenticated())


@blueprint.get("/deployments/<deployment_id>")
def deployment(deployment_id: str) -> Any:
    """JSON, or the deployment's page when the client prefers HTML (a browser)."""
    found = current_runtime().store.get(deployment_id)
    html = wants_html()
    if found is None:
        if html:
            return pages.not_found(f"No deployment with id {deployment_id!r}."), 404
        raise NotFound(f"no deployment with id {deployment_id!r}")
    if html:
        return pages.deployment_page(found, authenticated())
    return jsonify(deployment_json(found, authenticated()))


def wants_html() -> bool:
    if request.args.get("format") == "json":
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"
