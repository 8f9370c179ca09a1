"""The HTTP health probe, against `responses` (no socket opened)."""

from __future__ import annotations

import pytest
import requests
import responses

from deployer.rollout.health import http_probe

URL = "http://127.0.0.1:18000/healthz"


@responses.activate(assert_all_requests_are_fired=True)
def test_probe_returns_the_status_without_following_redirects() -> None:
    responses.get(URL, status=302, headers={"Location": "http://127.0.0.1:18000/login"})

    assert http_probe(URL, timeout=1) == 302


@responses.activate(assert_all_requests_are_fired=True)
def test_probe_raises_when_nothing_answers() -> None:
    responses.get(URL, body=requests.ConnectionError("connection refused"))

    with pytest.raises(requests.ConnectionError):
        http_probe(URL, timeout=1)


def test_probe_ignores_proxy_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mocked:
        mocked.get(URL, status=200)

        assert http_probe(URL, timeout=1) == 200
        assert mocked.calls[0].request.url == URL
        # trust_env=False: requests never looked at the proxy variables
        assert mocked.calls[0].request.req_kwargs.get("proxies") in (None, {})  # type: ignore[attr-defined]
