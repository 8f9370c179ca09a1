"""Where the drain reads a container's connections (deployer/connection_sources.py): the rule,
on a fake /proc tree and a fake sock_diag."""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from deployer.backends.base import ContainerProcess
from deployer.connection_sources import Source, locate, watch_container
from deployer.connections import ESTABLISHED, LISTEN, Endpoint, Socket
from deployer.sock_diag import states_mask
from tests.conftest import WEB_IMAGE
from tests.fakes import FakeBackend

CONTAINER = "c0ffee" * 10 + "abcd"
PID = 4242
LOCALHOST = IPv4Address("127.0.0.1")
ANY = IPv4Address("0.0.0.0")
# The app's connection in its namespace, as /proc/<pid>/net/tcp prints it (little-endian).
TCP = (
    "  sl  local_address rem_address   st ...\n"
    "   0: 0100007F:4651 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1\n"
    "   1: 0100007F:4651 0100007F:A5B0 01 00000000:00000000 00:00000000 00000000 0 0 2\n"
)


class FakeDiag:
    """sock_diag of deployer's own namespace: IPv4 sockets, and those of IPv6 sockets (an
    IPv4 connection to a dual-stack listener is one); remembers what was asked."""

    def __init__(
        self, ipv4: list[Socket], ipv6: list[Socket] | None = None, fails: bool = False
    ) -> None:
        self.rows: dict[int, list[Socket]] = {socket.AF_INET: ipv4, socket.AF_INET6: ipv6 or []}
        self.fails = fails
        self.asked: list[tuple[int, int]] = []

    def __call__(self, family: int, states: int) -> list[Socket]:
        self.asked.append((family, states))
        if self.fails:
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        return [row for row in self.rows[family] if states & (1 << row.state)]


def connection(port: int = 18001) -> Socket:
    return Socket(LOCALHOST, port, LOCALHOST, 42416, ESTABLISHED)


def make_proc(
    tmp_path: Path,
    cgroup: str = CONTAINER,
    same_namespace: bool | None = False,
    own_tcp: str = "",
) -> Path:
    """/proc with deployer (self) and process PID: its cgroup, namespaces (None: its link
    cannot be read, as for a non-root deployer) and TCP table."""
    proc = tmp_path / "proc"
    namespaces = tmp_path / "namespaces"
    namespaces.mkdir()
    for name in ("host", "container"):
        (namespaces / name).write_text(name)
    for pid, namespace, tcp in (
        ("self", "host", own_tcp),
        (str(PID), "host" if same_namespace else "container", TCP),
    ):
        (proc / pid / "ns").mkdir(parents=True)
        (proc / pid / "ns" / "net").symlink_to(namespaces / namespace)
        (proc / pid / "net").mkdir()
        if tcp:
            (proc / pid / "net" / "tcp").write_text(tcp)
    (proc / str(PID) / "cgroup").write_text(f"0::/docker/{cgroup}\n4:memory:/docker/{cgroup}\n")
    if same_namespace is None:
        (proc / str(PID) / "ns" / "net").unlink()
        (proc / str(PID) / "ns" / "net").symlink_to(namespaces / "unreadable")
    return proc


def process(
    host_network: bool = True, pid: int = PID, address: str = "127.0.0.1"
) -> ContainerProcess:
    return ContainerProcess(CONTAINER, pid, host_network, address, 18001)


def test_a_container_that_does_not_run_has_no_connection(tmp_path: Path) -> None:
    source = locate(process(pid=0), "web-3", make_proc(tmp_path), FakeDiag([]))

    assert isinstance(source, Source)
    assert (source.where, source.connections()) == ("(not running)", frozenset())


def test_its_own_process_in_another_namespace_is_read_from_proc_pid_net(tmp_path: Path) -> None:
    diag = FakeDiag([])
    source = locate(process(host_network=False, address=""), "web-3", make_proc(tmp_path), diag)

    assert isinstance(source, Source)
    assert source.where == str(tmp_path / "proc" / str(PID) / "net")
    assert source.endpoint == Endpoint(None, 18001)
    assert source.connections() == {connection()}
    assert diag.asked == []


def test_in_deployers_own_namespace_sock_diag_reads_the_listeners_family_only(
    tmp_path: Path,
) -> None:
    # The app listens on [::]: its IPv4 connections are IPv6 sockets (v4-mapped, which
    # sock_diag reads as IPv4); an IPv4 socket on the same port is someone else's client end.
    dual_stack = Socket(IPv6Address("::"), 18001, IPv6Address("::"), 0, LISTEN)
    diag = FakeDiag([Socket(LOCALHOST, 18001, LOCALHOST, 9, ESTABLISHED)], [dual_stack])
    proc = make_proc(tmp_path, same_namespace=True)

    source = locate(process(), "web-3", proc, diag)
    diag.rows[socket.AF_INET6].append(connection())
    diag.asked.clear()

    assert isinstance(source, Source)
    assert source.where == "deployer's network namespace (sock_diag)"
    assert source.connections() == {connection()}
    assert diag.asked == [(socket.AF_INET6, states_mask(ESTABLISHED))]


def test_a_non_root_deployer_on_the_host_network_reads_its_own_namespace(
    tmp_path: Path,
) -> None:
    # Its pid is verified but its namespace link cannot be read: the app's listener in
    # deployer's namespace shows it is the same (sock_diag, not a 0.2 s /proc/<pid>/net read).
    proc = make_proc(tmp_path, same_namespace=None)
    diag = FakeDiag([Socket(LOCALHOST, 18001, ANY, 0, LISTEN), connection()])

    source = locate(process(), "web-3", proc, diag)

    assert isinstance(source, Source)
    assert source.where == "deployer's network namespace (sock_diag)"
    assert source.connections() == {connection()}


def test_a_verified_pid_whose_listener_deployer_cannot_see_is_read_from_proc(
    tmp_path: Path,
) -> None:
    proc = make_proc(tmp_path, same_namespace=None)  # deployer: --pid host, its own network

    source = locate(process(), "web-3", proc, FakeDiag([]))

    assert isinstance(source, Source)
    assert source.where == str(proc / str(PID) / "net")
    assert source.connections() == {connection()}


def test_without_sock_diag_deployers_namespace_is_read_from_proc_self_net(tmp_path: Path) -> None:
    proc = make_proc(tmp_path, same_namespace=True, own_tcp=TCP)

    source = locate(process(), "web-3", proc, FakeDiag([], fails=True))

    assert isinstance(source, Source)
    assert source.where == str(proc / "self" / "net")
    assert source.connections() == {connection()}


def test_a_pid_of_another_pid_namespace_is_not_trusted_on_a_container_network(
    tmp_path: Path,
) -> None:
    proc = make_proc(tmp_path, cgroup="someone-else")

    why = locate(process(host_network=False, address="10.0.0.5"), "web-3", proc, FakeDiag([]))

    assert why == (
        f"pid {PID} is not web-3's process here: deployer runs in another pid namespace than "
        "the engine (run it with --pid host to watch containers that have their own network)"
    )


def test_on_the_hosts_network_deployers_namespace_is_read_when_the_app_listens_there(
    tmp_path: Path,
) -> None:
    proc = make_proc(tmp_path, cgroup="someone-else")
    listener = Socket(ANY, 18001, ANY, 0, LISTEN)  # the app listens on 0.0.0.0
    diag = FakeDiag([listener, connection()])

    source = locate(process(), "web-3", proc, diag)

    assert isinstance(source, Source)
    assert source.where == "deployer's network namespace (sock_diag)"
    assert source.connections() == {connection()}


def test_on_the_hosts_network_without_its_listener_in_sight_nothing_is_read(
    tmp_path: Path,
) -> None:
    proc = make_proc(tmp_path, cgroup="someone-else")

    why = locate(process(), "web-3", proc, FakeDiag([connection(18002)]))

    assert isinstance(why, str)
    assert why.endswith(
        "nothing listens on 127.0.0.1:18001 in deployer's network namespace: run deployer "
        "with --network host, or --pid host"
    )


@pytest.mark.parametrize(
    ("listening", "expected"),
    [
        (
            ContainerProcess(CONTAINER, PID, False, "", 0),
            "the port web-3 answers on inside its network namespace is unknown",
        ),
        (
            ContainerProcess(CONTAINER, PID, False, "web.internal", 80),
            "web-3's address 'web.internal' is not an IP address",
        ),
    ],
)
def test_what_cannot_be_located_says_why(
    tmp_path: Path, listening: ContainerProcess, expected: str
) -> None:
    assert locate(listening, "web-3", make_proc(tmp_path), FakeDiag([])) == expected


def test_the_engine_names_the_process_a_container_gone_has_none(backend: FakeBackend) -> None:
    backend.push(WEB_IMAGE, "latest", "sha256:" + "1" * 64)
    backend.pull(WEB_IMAGE, "sha256:" + "1" * 64)
    running = backend.run_by_hand("web-3", "sha256:" + "1" * 64, 18001)

    found = watch_container(backend, running)  # the fake engine says pid 0: not running
    backend.remove(running.id)
    gone = watch_container(backend, running)
    backend.down = True
    down = watch_container(backend, running)

    assert isinstance(found, Source)
    assert found.where == "(not running)"
    assert isinstance(gone, Source)
    assert gone.connections() == frozenset()
    assert down == (
        "cannot ask the engine where web-3 runs: cannot reach the Docker engine: connection refused"
    )
