"""A loopback TCP proxy for HTTP servers (the registry above all) that a test can break.

Listens on 127.0.0.1:<free port> and relays each HTTP request to `target` (a 127.0.0.0/8
host:port), applying the faults the test asks for. Modes (deployer/sandbox/proxy.py): pass,
`refuse()` (connections refused: "registry down"), `cut()` (refuse and drop open ones),
`hang()` (accept, answer nothing, until `restore()`: "registry hanging"). Rules are per request
(HTTP-aware, keep-alive connections included), matched on method and path without the query
string (deployer/sandbox/faults.py). What the engine asks (Docker 20.10, seen through this
proxy): resolve (`images.get_registry_data`, the engine's distribution inspect) is
`GET /v2/`, `HEAD /v2/<name>/manifests/<tag>`, `GET /v2/<name>/manifests/<digest>` and
`GET /v2/<name>/blobs/<config digest>`; a pull then reads the manifest and the config again
and `GET`s each layer blob the engine lacks. So `delay(2.0, "HEAD", "/v2/.*/manifests/.*")`
makes only resolve slow, and delaying one layer blob by digest makes only the pull slow:
`delay(2.0, "GET", f"/v2/.*/blobs/{registry.layers(repository, digest)[-1]}")`. The engine
tries TLS first on every new connection to a registry; the proxy relays such non-HTTP bytes
untouched (and unrecorded), as the registry itself would answer them.

Making the engine (hence deployer) pull through the proxy: a registry on loopback is trusted
over plain HTTP by the engine, and it ignores the host name under which content is asked for,
so the same repository is reachable as `127.0.0.1:<registry port>/ns/name` (push there, as
ImageFactory does) and as `127.0.0.1:<proxy port>/ns/name` (`proxy.rehost(repository)`): give
deployer the rehosted name as the service's `image`. Digests are the same under both names.
The engine only fetches blobs it lacks: `images.remove_local(pushed, proxy.rehost(...))` first
for a real pull. Example::

    with TcpProxy(registry.address) as proxy:
        pushed = images.build("web", "v2", tag="latest")
        images.remove_local(pushed)
        service_image = proxy.rehost(pushed.repository)   # 127.0.0.1:<proxy port>/t1234/web
        layer = registry.layers(pushed.repository, pushed.digest)[-1]
        slow = proxy.delay(3.0, "GET", f"/v2/.*/blobs/{layer}")
        ...deploy service_image...; slow.wait()            # the pull is under way, slowly
        proxy.hang(); ...; proxy.restore()
"""

from __future__ import annotations

import socket

from deployer.sandbox.net import LOOPBACK, free_port
from deployer.sandbox.proxy import HttpProxy
from deployer.sandbox.registry import remove_local_images, repository_path


def http_path(target: str) -> str:
    """The path rules match: the request target without its query string."""
    return target.split("?", 1)[0]


def rehost(repository: str, address: str) -> str:
    """`host:port/ns/name` (or `ns/name`) as a repository of the registry at address."""
    return f"{address}/{repository_path(repository)}"


class TcpProxy(HttpProxy):
    """127.0.0.1:port -> target; see the module docstring."""

    def __init__(self, target: str, port: int | None = None) -> None:
        host, _, port_text = target.rpartition(":")
        if not host.startswith("127.") or not port_text.isdigit():
            raise ValueError(f"the TCP proxy forwards to 127.0.0.0/8 host:port, not {target!r}")
        self.target = (host, int(port_text))
        self.port = port or free_port()
        self.address = f"{LOOPBACK}:{self.port}"
        self._rehosted = False
        super().__init__(f"tcp-proxy-{self.port}", self._listen, self._dial, http_path)

    def leave(self) -> None:
        """Gone for good: the local images pulled through it (named by its address) go, when
        rehost() named any (a proxy of something other than a registry asks no engine)."""
        if self._rehosted:
            remove_local_images(self.address)

    def rehost(self, repository: str) -> str:
        """The same repository, reached through this proxy."""
        self._rehosted = True
        return rehost(repository, self.address)

    def url(self, path: str = "/") -> str:
        """http://127.0.0.1:<port><path>."""
        return f"http://{self.address}{path}"

    def _listen(self) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, self.port))
        listener.listen(64)
        return listener

    def _dial(self) -> socket.socket:
        upstream = socket.create_connection(self.target, timeout=10)
        upstream.settimeout(None)  # answers may take long (hang, delay, slow streams)
        return upstream
