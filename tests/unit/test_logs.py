"""The log filter that keeps secrets out of every record, tracebacks included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from deployer.logs import REDACTED, JsonFormatter, RedactSecrets, about
from deployer.models import Deployment

SECRET = "s3cr3t-token-0123456789"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([SECRET, ""]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def test_secret_in_the_message_and_in_its_arguments_is_redacted(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    logger.info("path /webhooks/dockerhub/%s from %s", SECRET, "127.0.0.1")
    logger.info(f"literal {SECRET}")

    assert stream.getvalue() == (
        f"path /webhooks/dockerhub/{REDACTED} from 127.0.0.1\nliteral {REDACTED}\n"
    )


def test_secret_in_a_traceback_is_redacted(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    try:
        raise ValueError(f"bad url /webhooks/dockerhub/{SECRET}")
    except ValueError:
        logger.exception("request failed")

    text = stream.getvalue()
    assert "request failed" in text
    assert f"ValueError: bad url /webhooks/dockerhub/{REDACTED}" in text
    assert SECRET not in text


def test_an_empty_secret_redacts_nothing() -> None:
    assert RedactSecrets([""]).redact("plain text") == "plain text"


def test_json_lines_carry_the_deployment_and_service_and_stay_redacted() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactSecrets([SECRET]))
    logger = logging.getLogger("test.json")
    logger.addHandler(handler)
    logger.propagate = False
    deployment = Deployment(id="d1", service="web", trigger="t", image="acme/web", tag="latest")
    try:
        logger.warning(
            "deployment %s of %s failed: %s", "d1", "web", SECRET, extra=about(deployment)
        )
    finally:
        logger.removeHandler(handler)

    entry = json.loads(stream.getvalue())

    assert entry["time"].endswith("Z")
    assert {key: entry[key] for key in ("level", "logger", "message", "deployment", "service")} == {
        "level": "warning",
        "logger": "test.json",
        "message": f"deployment d1 of web failed: {REDACTED}",
        "deployment": "d1",
        "service": "web",
    }


def test_a_badly_formatted_log_call_is_still_logged_and_redacted(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    logger.info("two placeholders %s %s but one argument", SECRET)

    line = stream.getvalue()
    assert "two placeholders %s %s but one argument" in line
    assert SECRET not in line
    assert REDACTED in line
