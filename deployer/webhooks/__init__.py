"""Webhook intake: one module per source, each turning a request body into PushEvents."""

from __future__ import annotations

import hmac


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of a URL token with the configured secret."""
    return hmac.compare_digest(given.encode(), expected.encode())
