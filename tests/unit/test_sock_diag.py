"""sock_diag (deployer/sock_diag.py): the request and reply bytes (pure), and dumps of this
test's own sockets from the kernel of the machine running it (Linux; no daemon)."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest

from deployer.connections import ESTABLISHED, LISTEN, Endpoint, Socket, established_to
from deployer.sock_diag import (
    HEADER,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
    dump,
    make_request,
    parse_replies,
    states_mask,
)

LOCALHOST = IPv4Address("127.0.0.1")


def reply(
    family: int, state: int, local: bytes, local_port: int, remote: bytes, port: int
) -> bytes:
    """One inet_diag_msg as the kernel sends it (72 bytes), in its netlink message."""
    body = struct.pack("=BBBB", family, state, 0, 0) + struct.pack("!HH", local_port, port)
    body += local.ljust(16, b"\0") + remote.ljust(16, b"\0") + bytes(4 + 8 + 20)
    return HEADER.pack(HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body


def done() -> bytes:
    return HEADER.pack(HEADER.size + 4, NLMSG_DONE, 2, 1, 0) + struct.pack("=i", 0)


def test_a_dump_request_names_tcp_the_family_and_the_states() -> None:
    request = make_request(socket.AF_INET6, states_mask(ESTABLISHED), sequence=7)

    length, kind, flags, sequence, _ = HEADER.unpack_from(request)
    assert (length, len(request), kind, flags, sequence) == (72, 72, 20, 0x301, 7)
    family, protocol, _, _, states = struct.unpack_from("=BBBBI", request, HEADER.size)
    assert (family, protocol, states) == (socket.AF_INET6, socket.IPPROTO_TCP, 0b10)
    assert states_mask(ESTABLISHED, LISTEN) == (1 << 1) | (1 << 10)


def test_replies_become_sockets_an_ipv4_mapped_one_as_ipv4() -> None:
    mapped = IPv6Address("::ffff:127.0.0.1").packed
    data = reply(socket.AF_INET, ESTABLISHED, LOCALHOST.packed, 18001, LOCALHOST.packed, 40000)
    data += reply(socket.AF_INET6, ESTABLISHED, mapped, 18002, mapped, 40001)

    assert parse_replies(data) == (
        [
            Socket(LOCALHOST, 18001, LOCALHOST, 40000, ESTABLISHED),
            Socket(LOCALHOST, 18002, LOCALHOST, 40001, ESTABLISHED),
        ],
        False,
    )
    assert parse_replies(done()) == ([], True)


def test_an_error_reply_is_an_os_error_with_the_kernels_errno() -> None:
    data = (
        HEADER.pack(HEADER.size + 20, NLMSG_ERROR, 0, 1, 0)
        + struct.pack("=i", -errno.EPERM)
        + bytes(16)
    )

    with pytest.raises(OSError, match="Operation not permitted") as raised:
        parse_replies(data)
    assert raised.value.errno == errno.EPERM


def test_a_truncated_reply_is_an_os_error() -> None:
    with pytest.raises(OSError, match="truncated"):
        parse_replies(reply(socket.AF_INET, 1, LOCALHOST.packed, 1, LOCALHOST.packed, 2)[:60])


@pytest.fixture
def connected() -> Iterator[tuple[int, int]]:
    """A listener on 127.0.0.1 with one connection to it, and a dual-stack one on [::] with
    an IPv4 connection: their ports."""
    opened: list[socket.socket] = []
    ports = []
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::")):
        listener = socket.socket(family)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((host, 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        opened += [listener, client, server]
        ports.append(port)
    yield ports[0], ports[1]
    for item in opened:
        item.close()


def test_the_kernel_dumps_this_processs_connections_by_state(connected: tuple[int, int]) -> None:
    port4, port6 = connected

    established4 = dump(socket.AF_INET, states_mask(ESTABLISHED))
    established6 = dump(socket.AF_INET6, states_mask(ESTABLISHED))
    listening = dump(socket.AF_INET, states_mask(LISTEN)) + dump(
        socket.AF_INET6, states_mask(LISTEN)
    )

    assert len(established_to(established4, Endpoint(LOCALHOST, port4))) == 1
    assert established_to(established4, Endpoint(LOCALHOST, port6)) == frozenset()
    assert len(established_to(established6, Endpoint(LOCALHOST, port6))) == 1  # v4-mapped
    assert all(row.state == ESTABLISHED for row in established4 + established6)
    assert {(row.local_port, row.state) for row in listening} >= {(port4, LISTEN), (port6, LISTEN)}
