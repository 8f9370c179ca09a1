"""Loopback helpers: free ports and waiting for a listener."""

from __future__ import annotations

import socket
import threading
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


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()
_TRIES = 1000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now and that this process
    never handed out before.

    The kernel may offer the same free port twice (it is free again once the probe socket
    closes): two servers given ports before either listens would then collide.
    """
    with _HANDED_OUT_LOCK:
        for _ in range(_TRIES):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((LOOPBACK, 0))
                port: int = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError(f"no free loopback port this process has not handed out ({_TRIES} tries)")


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
