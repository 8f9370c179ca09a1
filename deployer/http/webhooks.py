"""Webhook intake: POST /webhooks/<source>/<token> -> 202 with the queued deployments."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request, url_for

from deployer.errors import BadWebhook, Forbidden, QueueClosed
from deployer.http.context import current_runtime
from deployer.webhooks import dockerhub, token_matches

blueprint = Blueprint("webhooks", __name__)


@blueprint.post("/webhooks/dockerhub/<token>")
def dockerhub_push(token: str) -> tuple[Any, int]:
    """Docker Hub push: 202 with the queued deployments (or none, with the reason)."""
    current = current_runtime()
    count = current.metrics.webhook
    if not current.webhook_token or not token_matches(token, current.webhook_token):
        count(dockerhub.SOURCE, "bad_token")
        raise Forbidden("forbidden")
    try:
        event = dockerhub.parse(request.get_data(cache=False))
    except BadWebhook as err:
        count(dockerhub.SOURCE, "bad_request")
        raise BadWebhook(f"bad Docker Hub payload: {err}") from None
    try:
        queued = current.submit_push(event)
    except QueueClosed:
        count(dockerhub.SOURCE, "unavailable")
        raise
    count(dockerhub.SOURCE, "accepted" if queued else "ignored")
    listed = [
        {
            "id": item.id,
            "service": item.service,
            "url": url_for("status.deployment", deployment_id=item.id),
        }
        for item in queued
    ]
    body: dict[str, Any] = {"deployments": listed}
    if not queued:
        body["reason"] = f"no configured service follows {event.repository}:{event.tag}"
    response = jsonify(body)
    if listed:
        response.headers["Location"] = listed[0]["url"]
    return response, 202
