"""What every HTTP blueprint shares: the app's Runtime, and the JSON error answer."""

from __future__ import annotations

from flask import Response, current_app, jsonify

from deployer.runtime import Runtime


def current_runtime() -> Runtime:
    """The Runtime that create_app() put in the current app."""
    found: Runtime = current_app.extensions["deployer"]
    return found


def json_error(status: int, message: str) -> tuple[Response, int]:
    """`{"error": message}` with status."""
    return jsonify({"error": message}), status
