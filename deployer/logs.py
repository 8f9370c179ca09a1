"""Logging for the service: one line per event, secrets redacted from every record.

`text` (default): `time level logger: message`. `json`: one object per line with `time`,
`level`, `logger`, `message`, and `deployment` / `service` when the event is about one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployer.models import Deployment

REDACTED = "[redacted]"
MIN_CONTAINER_SECRET = 4  # shorter env_file values ('1', 'on', 'dev') would match everywhere
FORMATS = ("text", "json")
CONTEXT = ("deployment", "service")


def about(deployment: Deployment) -> dict[str, str]:
    """`extra=` for a log call about a deployment: its id and service as separate fields."""
    return {"deployment": deployment.id, "service": deployment.service}


class RedactSecrets(logging.Filter):
    """Replaces every secret value in a record's final message (args included)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a log call whose arguments do not fit its format
            message = f"{record.msg} (log arguments did not fit: {record.args!r})"
        record.msg, record.args = self.redact(message), None
        if record.exc_info:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def container_secrets(values: Iterable[str]) -> list[str]:
    """A container's env_file and secret_env values worth redacting, as written and as the
    engine quotes them (quotes and newlines escaped), longest first so that no part of a
    longer one is left."""
    kept = {value for value in values if len(value) >= MIN_CONTAINER_SECRET}
    quoted = {json.dumps(value, ensure_ascii=False)[1:-1] for value in kept}
    return sorted(kept | quoted, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """text with each of secrets replaced by [redacted], in the order given."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    secrets: Iterable[str], level: int = logging.INFO, format: str = "text"
) -> None:
    """Log to stderr in `format` (text or json), with secrets redacted."""
    handler = logging.StreamHandler()
    if format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
