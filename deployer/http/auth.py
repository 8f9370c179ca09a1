"""Who may read: the optional read token, and whether a request is authenticated.

With `read.token_env` set, every read (status, history, the page, metrics) needs the read token
or the admin token, as `Authorization: Bearer <token>` or as the password of HTTP Basic (so a
browser can log in; any user name). Without it reads are open, but only a request carrying one
of those tokens counts as authenticated: the containers' log lines are shown to those alone.
Tokens are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii

from flask import g, request

from deployer.errors import Forbidden, Unauthorized
from deployer.http.context import current_runtime
from deployer.webhooks import token_matches

CHALLENGE = 'Bearer realm="deployer", Basic realm="deployer", charset="UTF-8"'


def presented() -> tuple[str, str] | None:
    """(scheme, token) from the Authorization header: a Bearer token or a Basic password."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return "bearer", value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return "basic", ""
        return "basic", decoded.partition(":")[2]
    return None


def is_reader_token(token: str) -> bool:
    """True when token is the read token or the admin token (whichever are set)."""
    runtime = current_runtime()
    return any(
        expected and token_matches(token, expected)
        for expected in (runtime.read_token, runtime.admin_token)
    )


def authenticated() -> bool:
    """True when this request carries the read or the admin token."""
    if "authenticated" not in g:
        found = presented()
        g.authenticated = found is not None and is_reader_token(found[1])
    result: bool = g.authenticated
    return result


def guard_reads() -> None:
    """before_request of the read surfaces: 401/403 unless open or authenticated."""
    if request.endpoint == "status.healthz" or not current_runtime().read_token:
        return
    found = presented()
    if found is None:
        raise Unauthorized(
            "send the read token (or the admin token) as `Authorization: Bearer <token>`, "
            "or as the password of HTTP Basic authentication",
            CHALLENGE,
        )
    if not authenticated():
        if found[0] == "basic":  # a browser: let the person try again
            raise Unauthorized("wrong token", CHALLENGE)
        raise Forbidden("wrong token")
