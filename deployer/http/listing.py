"""GET /deployments' body, kept encoded: a finished deployment's JSON is encoded once.

A page is one read of the history's index and its rows without the steps (the marks); the
JSON of every listed deployment already encoded with the same mark is reused, and only the
others (unfinished, new to this page, or changed since) are loaded with their steps, one
query for all, and encoded. The body is exactly what `jsonify({"deployments": [...]})`
answers; an indented one (debug, or `app.json.compact = False`) is built the plain way.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any

from flask import Flask, Response, current_app, jsonify
from flask.json.provider import DefaultJSONProvider

from deployer.documents import deployment_json
from deployer.models import Deployment
from deployer.store import Mark, Store

KEEP = 4096  # encoded deployments kept (about 1.6 KiB each: some 7 MiB at most)
Key = tuple[Any, ...]
EXTENSION = "deployer.listing"  # the app's EncodedDeployments, in app.extensions


def listing_response(
    store: Store, service: str | None, limit: int, before: str | None, show_logs: bool
) -> Response:
    """The response to GET /deployments: this page of the history, newest first."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    encoder = compact_encoder(app)
    if encoder is None:
        page = store.history(service, limit, before)
        return jsonify({"deployments": [deployment_json(item, show_logs) for item in page]})
    kept: EncodedDeployments | None = app.extensions.get(EXTENSION)
    if kept is None:
        kept = app.extensions.setdefault(EXTENSION, EncodedDeployments())
    marks = store.history_marks(service, limit, before)
    texts = {mark.id: kept.get(key_of(mark, show_logs)) for mark in marks}
    loaded = store.many([mark_id for mark_id, text in texts.items() if text is None])
    parts = []
    for mark in marks:
        text = texts[mark.id]
        if text is None:
            found = loaded.get(mark.id)
            if found is None:
                continue  # pruned since the marks were read
            text = encoder.encode(deployment_json(found, show_logs))
            if found.state.finished:
                kept.put(key_of(found, show_logs), text)
        parts.append(text)
    body = '{"deployments":[' + ",".join(parts) + "]}\n"
    return app.response_class(body, mimetype=app.json.mimetype)  # type: ignore[attr-defined]


def compact_encoder(app: Flask) -> json.JSONEncoder | None:
    """An encoder that writes what jsonify writes here, when that is compact JSON from
    Flask's own provider (the only form kept encoded); None otherwise."""
    provider = app.json
    if not isinstance(provider, DefaultJSONProvider):
        return None
    if provider.compact is False or (provider.compact is None and app.debug):
        return None
    return json.JSONEncoder(
        default=provider.default,
        ensure_ascii=provider.ensure_ascii,
        sort_keys=provider.sort_keys,
        separators=(",", ":"),
    )


def key_of(item: Mark | Deployment, show_logs: bool) -> Key:
    """What an encoded deployment depends on: any change to it makes another key."""
    steps = item.steps if isinstance(item, Mark) else len(item.steps)
    return (item.id, item.state, item.finished_at, steps, item.error, show_logs)


class EncodedDeployments:
    """Finished deployments' JSON text by key: bounded, least recently used dropped first."""

    def __init__(self, size: int = KEEP) -> None:
        self.size = size
        self._texts: OrderedDict[Key, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> str | None:
        with self._lock:
            text = self._texts.get(key)
            if text is not None:
                self._texts.move_to_end(key)
            return text

    def put(self, key: Key, text: str) -> None:
        with self._lock:
            self._texts[key] = text
            self._texts.move_to_end(key)
            while len(self._texts) > self.size:
                self._texts.popitem(last=False)
