"""The log filter that keeps secrets out of every record, tracebacks included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from deployer.logs import REDACTED, RedactSecrets

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
