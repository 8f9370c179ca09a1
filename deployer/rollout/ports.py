"""Host ports for new containers: the first port of the pool that is neither labelled nor bound."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

LOOPBACK = "127.0.0.1"


def port_is_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound (no listener there, on loopback or any address).

    SO_REUSEADDR, as servers set it: a port the retired container just closed sits in TIME-WAIT
    for a minute, and that does not keep a new app from listening there.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def pick_port(
    pool: Iterable[int], taken: set[int], is_free: Callable[[int], bool] = port_is_free
) -> int | None:
    """The first port of pool not in taken and free on this host; None when all are used."""
    return next((port for port in pool if port not in taken and is_free(port)), None)
