"""The HTTP surface: webhook intake, status, deployment history, health.

Every error answers JSON. Request paths are never logged: the webhook token is in the path.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST
from werkzeug.exceptions import HTTPException

from deployer import pages
from deployer.admin import admin
from deployer.errors import BadWebhook, QueueClosed
from deployer.status import deployment_json
from deployer.web import current_runtime, json_error
from deployer.webhooks import dockerhub, token_matches

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
MAX_LIMIT = 500

webhooks = Blueprint("webhooks", __name__)
status = Blueprint("status", __name__)


@webhooks.post("/webhooks/dockerhub/<token>")
def dockerhub_push(token: str) -> tuple[Any, int]:
    """Docker Hub push: 202 with the queued deployments (or none, with the reason)."""
    current = current_runtime()
    count = current.metrics.webhook
    if not current.webhook_token or not token_matches(token, current.webhook_token):
        count(dockerhub.SOURCE, "bad_token")
        return json_error(403, "forbidden")
    try:
        event = dockerhub.parse(request.get_data(cache=False))
    except BadWebhook as err:
        count(dockerhub.SOURCE, "bad_request")
        return json_error(400, f"bad Docker Hub payload: {err}")
    try:
        queued = current.submit_push(event)
    except QueueClosed as err:
        count(dockerhub.SOURCE, "unavailable")
        return json_error(503, str(err))
    count(dockerhub.SOURCE, "accepted" if queued else "ignored")
    body: dict[str, Any] = {
        "deployments": [{"id": item.id, "service": item.service} for item in queued]
    }
    if not queued:
        body["reason"] = f"no configured service follows {event.repository}:{event.tag}"
    return jsonify(body), 202


@status.get("/healthz")
def healthz() -> tuple[Any, int]:
    return jsonify({"status": "stopping" if current_runtime().stopping.is_set() else "ok"}), 200


@status.get("/status")
def service_status() -> Any:
    return jsonify(current_runtime().status())


@status.get("/metrics")
def metrics() -> Response:
    return Response(current_runtime().metrics.render(), content_type=CONTENT_TYPE_LATEST)


@status.get("/deployments")
def deployments() -> Any:
    current = current_runtime()
    service = request.args.get("service")
    if service is not None and service not in current.config.services:
        return json_error(404, f"no service named {service!r} is configured")
    raw_limit = request.args.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        return json_error(
            400, f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {raw_limit!r}"
        )
    found = current.store.history(service, int(raw_limit))
    return jsonify({"deployments": [deployment_json(item) for item in found]})


@status.get("/deployments/<deployment_id>")
def deployment(deployment_id: str) -> Any:
    """JSON, or the deployment's page when the client prefers HTML (a browser)."""
    found = current_runtime().store.get(deployment_id)
    html = wants_html()
    if found is None:
        if html:
            return pages.not_found(f"No deployment with id {deployment_id!r}."), 404
        return json_error(404, f"no deployment with id {deployment_id!r}")
    if html:
        return pages.deployment_page(current_runtime(), found)
    return jsonify(deployment_json(found))


def wants_html() -> bool:
    if request.args.get("format") == "json":
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def register(app: Flask) -> None:
    """Blueprints plus JSON error handlers that never log the request path."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.register_blueprint(webhooks)
    app.register_blueprint(status)
    app.register_blueprint(admin)
    app.register_blueprint(pages.pages)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Any, int]:
        code = err.code or 500
        if code == 413:
            if request.blueprint == "webhooks":
                current_runtime().metrics.webhook(dockerhub.SOURCE, "too_large")
            return json_error(413, f"request body is larger than {MAX_BODY} bytes")
        return json_error(code, err.description or err.name)

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> tuple[Any, int]:
        log.error(
            "internal error in endpoint %s: %s", request.endpoint, type(err).__name__, exc_info=err
        )
        return json_error(500, "internal error; see the deployer log")
