"""TCP sockets from the kernel's tables, and the rule the drain counts connections by.

The tables are /proc/<pid>/net/tcp and tcp6 (text; one network namespace each: the one of
process <pid>) or NETLINK_SOCK_DIAG replies (deployer/sock_diag.py). Both become `Socket`
rows; an IPv4 address a dual-stack socket shows as IPv6 (`::ffff:127.0.0.1`) is read as the
IPv4 address it is, so an app listening on `[::]` is counted like one on `0.0.0.0`.

A connection to an app is an ESTABLISHED socket whose local end is the app's address and port
in its network namespace (the server side of it: the client side has the port as its remote
end). Every connection nginx opens to an upstream deployer writes carries one request (the
upstream has no `keepalive`): an open connection is a request in flight.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Literal

IPAddress = IPv4Address | IPv6Address
ByteOrder = Literal["little", "big"]
ESTABLISHED = 1  # the kernel's TCP states (include/net/tcp_states.h)
TIME_WAIT = 6
LISTEN = 10


@dataclass(frozen=True)
class Socket:
    """One row of a TCP table: both ends and the state (the kernel's number, 1 established)."""

    local: IPAddress
    local_port: int
    remote: IPAddress
    remote_port: int
    state: int


@dataclass(frozen=True)
class Endpoint:
    """Where an app answers inside its network namespace: an address (None: any) and a port."""

    address: IPAddress | None
    port: int

    def __str__(self) -> str:
        if self.address is None:
            return f"*:{self.port}"
        if self.address.version == 6:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def owns(self, socket: Socket) -> bool:
        """Whether the socket's local end is this endpoint (a listener on the wildcard
        address `0.0.0.0`/`::` owns every address)."""
        if socket.local_port != self.port:
            return False
        return self.address is None or socket.local == self.address or socket.local.is_unspecified


def make_endpoint(address: str, port: int) -> Endpoint:
    """An Endpoint from an address as the engine gives it ("" for any address)."""
    return Endpoint(plain(ip_address(address)) if address else None, port)


def plain(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it carries; others unchanged."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def established_to(sockets: list[Socket], endpoint: Endpoint) -> frozenset[Socket]:
    """The connections to the endpoint: established sockets whose local end it is."""
    return frozenset(s for s in sockets if s.state == ESTABLISHED and endpoint.owns(s))


def listens_on(sockets: list[Socket], endpoint: Endpoint) -> bool:
    """Whether a listening socket serves the endpoint (its address, or the wildcard)."""
    return any(s.state == LISTEN and endpoint.owns(s) for s in sockets)


def parse_proc_tcp(
    text: str, byteorder: ByteOrder = sys.byteorder, states: frozenset[int] | None = None
) -> list[Socket]:
    """The rows of /proc/<pid>/net/tcp or tcp6 text (the header line and rows that do not
    parse are skipped), only those in `states` when given: the others' addresses are not
    even decoded (a table swollen by TIME-WAIT sockets costs 7 us a row to decode). The
    kernel prints each 32-bit word of an address as a number in the machine's byte order:
    `0100007F` is 127.0.0.1 on a little-endian machine."""
    rows = []
    for line in text.splitlines()[1:]:
        fields = line.split(maxsplit=4)
        if len(fields) < 4:
            continue
        try:
            state = int(fields[3], 16)
            if states is not None and state not in states:
                continue
            local, local_port = _end(fields[1], byteorder)
            remote, remote_port = _end(fields[2], byteorder)
        except ValueError:
            continue
        rows.append(Socket(local, local_port, remote, remote_port, state))
    return rows


def _end(text: str, byteorder: ByteOrder) -> tuple[IPAddress, int]:
    """`0100007F:4651` -> (127.0.0.1, 18001); 32 hex digits before the colon for IPv6."""
    address, _, port = text.partition(":")
    if len(address) not in (8, 32) or not port:
        raise ValueError(f"not an address:port: {text!r}")
    packed = b"".join(
        int(address[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, len(address), 8)
    )
    return plain(ip_address(packed)), int(port, 16)


def read_proc_tables(net: Path, states: frozenset[int] | None = None) -> list[Socket]:
    """The rows of `net`/tcp and `net`/tcp6 (`net` is /proc/<pid>/net), only those in
    `states` when given; OSError when a table cannot be read (the process exited, or /proc
    is not there). tcp6 may be missing (IPv6 disabled): then it holds nothing."""
    rows = parse_proc_tcp((net / "tcp").read_text(), states=states)
    with contextlib.suppress(FileNotFoundError):
        rows += parse_proc_tcp((net / "tcp6").read_text(), states=states)
    return rows
