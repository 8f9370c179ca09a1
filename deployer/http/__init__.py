"""Every HTTP surface: webhook intake, status and history, admin API, HTML pages.

Every error answers JSON: a DeployerError with its own `http_status`, through one handler.
Request paths are never logged: the webhook token is in the path.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from deployer.errors import DeployerError
from deployer.http import admin, pages, status, webhooks
from deployer.http.context import current_runtime, json_error
from deployer.webhooks import dockerhub

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024


def register(app: Flask) -> None:
    """Blueprints plus JSON error handlers that never log the request path."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(status.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(pages.blueprint)

    @app.errorhandler(DeployerError)
    def deployer_error(err: DeployerError) -> tuple[Any, int]:
        response, code = json_error(err.http_status, str(err))
        response.headers.update(err.headers)
        return response, code

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> tuple[Any, int]:
        code = err.code or 500
        if code == 413:
            if request.blueprint == webhooks.blueprint.name:
                current_runtime().metrics.webhook(dockerhub.SOURCE, "too_large")
            return json_error(413, f"request body is larger than {MAX_BODY} bytes")
        response, _ = json_error(code, err.description or err.name)
        # werkzeug's own headers for this error (Allow on a 405), not its HTML content type
        for name, value in err.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, code

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> tuple[Any, int]:
        log.error(
            "internal error in endpoint %s: %s", request.endpoint, type(err).__name__, exc_info=err
        )
        return json_error(500, "internal error; see the deployer log")
