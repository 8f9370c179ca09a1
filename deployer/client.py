"""An HTTP client for a running deployer (used by `deployer status|history|deploy|rollback`).

Every failure becomes a ClientError whose message names the URL and what to do next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import requests

from deployer.errors import DeployerError
from deployer.models import FINISHED_STATES


class ClientError(DeployerError):
    """A request to deployer failed; the message says why and what to do."""


class DeployerClient:
    """Talks JSON to deployer at base_url; the admin token goes in a Bearer header."""

    def __init__(
        self,
        base_url: str,
        admin_token: str = "",
        admin_token_env: str = "DEPLOYER_ADMIN_TOKEN",  # noqa: S107 (a variable's name)
        session: requests.Session | None = None,
        timeout: float = 10.0,
        read_token: str = "",
        read_token_env: str = "DEPLOYER_READ_TOKEN",  # noqa: S107 (a variable's name)
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.admin_token_env = admin_token_env
        self.read_token = read_token
        self.read_token_env = read_token_env
        self.session = session or requests.Session()
        self.timeout = timeout

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/status")

    def history(self, service: str, limit: int) -> list[dict[str, Any]]:
        query = urlencode({"service": service, "limit": limit})
        found: list[dict[str, Any]] = self._request("GET", f"/deployments?{query}")["deployments"]
        return found

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return self._request("GET", f"/deployments/{quote(deployment_id, safe='')}")

    def deploy(self, service: str, tag: str | None) -> dict[str, Any]:
        path = f"/services/{quote(service, safe='')}/deploy"
        return self._request("POST", path, {"tag": tag} if tag else {})

    def adopt(self, service: str, container: str, port: int | None) -> dict[str, Any]:
        path = f"/services/{quote(service, safe='')}/adopt"
        body: dict[str, Any] = {"container": container}
        if port is not None:
            body["port"] = port
        return self._request("POST", path, body)

    def rollback(self, service: str, digest: str | None) -> dict[str, Any]:
        path = f"/services/{quote(service, safe='')}/rollback"
        return self._request("POST", path, {"digest": digest} if digest else {})

    def follow(
        self,
        deployment_id: str,
        on_change: Callable[[dict[str, Any]], None],
        timeout: float = 900.0,
        interval: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Any]:
        """Poll a deployment until it finishes, calling on_change with each new version."""
        deadline = time.monotonic() + timeout
        seen: dict[str, Any] | None = None
        while True:
            current = self.deployment(deployment_id)
            if current != seen:
                on_change(current)
                seen = current
            if current["state"] in FINISHED_STATES:
                return current
            if time.monotonic() >= deadline:
                raise ClientError(
                    f"deployment {deployment_id} is still {current['state']} after "
                    f"{timeout:g} s; follow it at {self.base_url}/deployments/{deployment_id}"
                )
            sleep(interval)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        headers = {"Accept": "application/json"}
        # Reads take the read token or the admin token; writes only the admin token.
        token = self.admin_token if method == "POST" else self.read_token or self.admin_token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            answer = self.session.request(
                method, url, json=body, headers=headers, timeout=self.timeout
            )
        except requests.ConnectionError:
            raise ClientError(
                f"cannot reach deployer at {self.base_url}: connection refused or no route. "
                "Is `deployer serve` running there? Point at it with --url or $DEPLOYER_URL."
            ) from None
        except requests.RequestException as err:
            raise ClientError(f"{method} {url} failed: {type(err).__name__}: {err}") from None
        return self._parse(method, url, answer)

    def _parse(self, method: str, url: str, answer: requests.Response) -> dict[str, Any]:
        try:
            data = answer.json()
        except ValueError:
            raise ClientError(
                f"{method} {url} answered HTTP {answer.status_code} without JSON; "
                "is that a deployer? Check --url / $DEPLOYER_URL."
            ) from None
        if answer.status_code < 400 and isinstance(data, dict):
            return data
        message = data.get("error", "") if isinstance(data, dict) else ""
        reads = f"${self.read_token_env} (or ${self.admin_token_env})"
        if answer.status_code == 401 and method == "POST":
            hint = f"set ${self.admin_token_env} to deployer's admin token"
        elif answer.status_code == 401:
            hint = f"set {reads} to deployer's read (or admin) token"
        elif answer.status_code == 403 and method == "POST":
            hint = f"${self.admin_token_env} does not match the token deployer serve has"
        elif answer.status_code == 403:
            hint = f"{reads} does not match the token deployer serve has"
        else:
            hint = ""
        detail = "; ".join(part for part in (message, hint) if part)
        raise ClientError(f"{method} {url} answered HTTP {answer.status_code}: {detail}")
