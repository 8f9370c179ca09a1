"""free_port hands out each port once: servers given ports before they listen never collide."""

from __future__ import annotations

import socket

import pytest

from deployer.sandbox import net
from deployer.sandbox.net import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # 600 draws: the kernel's free-port choice repeats one with near certainty (birthday bound
    # over the ~14,000 ports of one parity it hands out for bind(0)); an nginx given 500
    # listen ports had ~490 distinct ones
    ports = [free_port() for _ in range(600)]

    assert len(set(ports)) == len(ports)


def test_free_port_says_so_when_no_new_port_is_left(monkeypatch: pytest.MonkeyPatch) -> None:
    taken = free_port()

    class SamePort(socket.socket):
        def getsockname(self) -> tuple[str, int]:
            return (net.LOOPBACK, taken)

    monkeypatch.setattr(socket, "socket", SamePort)

    with pytest.raises(RuntimeError, match="no free loopback port"):
        free_port()
