"""Loopback helpers: free ports and waiting for a listener."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

from deployer.rollout.ports import port_is_free

__all__ = [
    "LOOPBACK",
    "accepts_connections",
    "free_port",
    "http_get",
    "port_is_free",
    "wait_for_http",
]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def accepts_connections(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0):
            return True
    except OSError:
        return False


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET a loopback URL; return (status, body). Raises OSError when nothing answers."""
    if not url.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"sandbox traffic stays on loopback, refused {url!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (checked above)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def wait_for_http(url: str, timeout: float, expect_status: int = 200) -> str:
    """Poll url until it answers expect_status; return the body or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            status, body = http_get(url, timeout=1.0)
        except OSError as err:
            last = str(err)
        else:
            if status == expect_status:
                return body
            last = f"HTTP {status}"
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {expect_status} within {timeout:g} s (last: {last})")
