"""A unix-socket proxy in front of the Docker engine that a test can cut, slow down or break.

docker-py (or the docker CLI, or a `deployer serve` process) talks to `proxy.url` instead of the
engine's own socket; the proxy relays each HTTP request to the real engine and applies the
faults the test asks for (deployer/sandbox/proxy.py: modes; faults.py: rules). Rule paths are
matched without docker's `/v1.41` prefix and without the query string.

In a test, in-process::

    with EngineProxy() as proxy:
        backend = DockerBackend(
            make_client=lambda: docker.DockerClient(base_url=proxy.url, version="1.41")
        )
        # "containers.run created it, then the connection was lost before the id came back";
        # then_cut: the failure path's clean-up cannot reach the engine either
        created = proxy.drop_after("POST", "/containers/create", times=1, then_cut=True)
        ...start a deployment...
        created.wait(timeout=30)        # the engine created the container; deployer got EOF
        proxy.restore()                 # the engine answers again; now check the clean-up

For a `deployer serve` process, put `proxy.environ()` (DOCKER_HOST=unix://...) in its
environment: `docker.from_env()` reads it. Other faults: `proxy.cut()` / `proxy.restore()`,
`proxy.drop("DELETE", "/containers/[^/]+", times=1)` (the remove fails once),
`proxy.hold("POST", "/containers/[^/]+/start")` then `rule.release()`,
`proxy.delay(2.0, "GET", "/containers/[^/]+/json")`; what deployer asked the engine:
`proxy.requests("POST", "/containers/.*")`.

The socket lives in a short temporary directory (unix socket paths are limited to 107 bytes,
pytest's tmp_path is often longer), removed by stop().
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from deployer.sandbox.proxy import HttpProxy

DEFAULT_ENGINE = "unix:///var/run/docker.sock"
VERSION_PREFIX = re.compile(r"^/v[0-9]+(\.[0-9]+)?(?=/)")


def engine_socket(environ: Mapping[str, str] | None = None) -> Path:
    """The real engine's unix socket: $DOCKER_HOST's (unix:// only) or /var/run/docker.sock."""
    host = (os.environ if environ is None else environ).get("DOCKER_HOST") or DEFAULT_ENGINE
    if not host.startswith("unix://"):
        raise ValueError(f"the engine proxy forwards to a unix socket; DOCKER_HOST is {host!r}")
    return Path(host.removeprefix("unix://"))


def engine_path(target: str) -> str:
    """The path rules match: no API version prefix, no query string."""
    return VERSION_PREFIX.sub("", target.split("?", 1)[0])


class EngineProxy(HttpProxy):
    """Listens on a unix socket, relays to the engine's; see the module docstring."""

    def __init__(self, engine: Path | None = None, socket_path: Path | None = None) -> None:
        self.engine = engine or engine_socket()
        self._own_dir = None if socket_path else Path(tempfile.mkdtemp(prefix="engine-proxy-"))
        self.socket_path = socket_path or Path(self._own_dir or ".") / "docker.sock"
        if len(str(self.socket_path).encode()) > 107:
            raise ValueError(f"unix socket path too long (107 bytes at most): {self.socket_path}")
        super().__init__("engine-proxy", self._listen, self._dial, engine_path)

    @property
    def url(self) -> str:
        """unix://PATH, for docker.DockerClient(base_url=...) and DOCKER_HOST."""
        return f"unix://{self.socket_path}"

    def environ(self) -> dict[str, str]:
        """Environment for a process that should reach the engine through this proxy."""
        return {"DOCKER_HOST": self.url}

    def stop(self) -> None:
        """Stop proxying and remove the socket (and its directory when it made one)."""
        super().stop()
        self.socket_path.unlink(missing_ok=True)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def _listen(self) -> socket.socket:
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(64)
        return listener

    def _dial(self) -> socket.socket:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.engine))
        except OSError:
            upstream.close()
            raise
        return upstream
