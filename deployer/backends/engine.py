"""The docker SDK client both adapters share: built on first use, so that create_app touches
no daemon; the SDK and transport errors every adapter translates."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import docker
import docker.errors
import requests

from deployer.errors import DockerError

ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class LazyClient:
    """One docker SDK client, made by `make_client` (default: from the environment) at first
    use; a failure to make it is a DockerError, tried again at the next use."""

    def __init__(self, make_client: Callable[[], Any] | None = None) -> None:
        self._make_client = make_client or docker.from_env
        self._client: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    self._client = self._make_client()
                except ENGINE_ERRORS as err:
                    raise DockerError(f"cannot reach the Docker engine: {err}") from err
            return self._client
