"""Host ports for new containers: free means nothing listens, TIME-WAIT included."""

from __future__ import annotations

import socket

from deployer.rollout.ports import LOOPBACK, pick_port, port_is_free


def test_a_port_with_a_listener_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind((LOOPBACK, 0))
        listener.listen()
        port = listener.getsockname()[1]

        assert not port_is_free(port)


def test_a_port_left_in_time_wait_by_a_closed_server_is_free() -> None:
    listener = socket.socket()
    # As servers do (busybox httpd, nginx, gunicorn): Linux lets a new bind pass a TIME-WAIT
    # entry only when both sockets set SO_REUSEADDR.
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection((LOOPBACK, port))
    accepted, _ = listener.accept()
    # The server side closes first, as a retired app does: its end stays in TIME-WAIT.
    accepted.close()
    listener.close()
    client.recv(1)
    client.close()

    assert port_is_free(port)


def test_pick_port_skips_taken_and_busy_ports() -> None:
    assert pick_port(range(18000, 18004), {18000}, lambda port: port != 18001) == 18002
    assert pick_port(range(18000, 18002), {18000, 18001}) is None
