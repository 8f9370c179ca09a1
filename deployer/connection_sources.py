"""Where deployer can read a container's connections (Linux /proc), for the drain.

A container's sockets live in its network namespace, which /proc/<pid>/net shows for any of
its processes: the engine names the main one (State.Pid), in the engine's pid namespace. The
rule, in order:

1. The engine says pid 0: the container is not running, so nothing is connected to it.
2. Is the pid the container's process here? Yes when /proc/<pid>/cgroup names the
   container's id (deployer sees the engine's pid namespace: it runs on the host, or with
   `--pid host`); otherwise deployer is in another pid namespace and the pid means nothing.
3. Is the container's network namespace deployer's own? Known when the pid is verified and
   /proc/self/ns/net and /proc/<pid>/ns/net can be compared (reading another user's
   namespace links needs root or CAP_SYS_PTRACE). Otherwise, for a host-networked container
   only: yes when the app's listening socket (its address and port, or the wildcard) is in
   deployer's namespace. Deployer on the host, or run with `--network host` (which host
   networking asks of it anyway: its port picks and health probes reach the apps on
   127.0.0.1 only from there), sees it; deployer in a namespace of its own does not (its port
   pick saw the app's port free there). Comparing /proc/self/ns/net with /proc/1/ns/net
   would prove nothing: in another pid namespace pid 1 is deployer's container's own init,
   in deployer's network namespace whatever that is.
4. Deployer's own namespace: read through sock_diag (a state-filtered netlink dump: cheap
   even when the host holds tens of thousands of TIME-WAIT sockets), or /proc/self/net when
   netlink is refused. A verified pid in another namespace: /proc/<pid>/net/tcp and tcp6
   (readable by any user). Anything else (a container on a bridge or named network seen from
   another pid namespace): the connections cannot be read; the drain says why and falls back
   to what it did without them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deployer.backends.base import Backend, ContainerInfo, ContainerProcess
from deployer.connections import (
    ESTABLISHED,
    LISTEN,
    Endpoint,
    Socket,
    established_to,
    listens_on,
    make_endpoint,
    read_proc_tables,
)
from deployer.errors import ContainerMissing, DockerError
from deployer.sock_diag import dump, states_mask

PROC = Path("/proc")
FAMILIES = (socket.AF_INET, socket.AF_INET6)
ONLY_ESTABLISHED = frozenset({ESTABLISHED})
Reader = Callable[[], list[Socket]]  # one read of a namespace's table; OSError when it fails
Dump = Callable[[int, int], list[Socket]]  # sock_diag.dump(family, states)


@dataclass(frozen=True)
class Source:
    """One container's connections, readable: its name, endpoint, where they are read from
    (for messages) and how."""

    name: str
    endpoint: Endpoint
    where: str
    read: Reader

    def connections(self) -> frozenset[Socket]:
        """The established connections to the container now; OSError when unreadable."""
        return established_to(self.read(), self.endpoint)

    def __str__(self) -> str:
        return f"{self.name} ({self.endpoint})"


Watcher = Callable[[ContainerInfo], "Source | str"]  # a Source, or why there is none


def watch_container(
    backend: Backend, container: ContainerInfo, proc: Path = PROC, diag: Dump = dump
) -> Source | str:
    """Where to read the container's connections (the rule above), or why they cannot be."""
    try:
        process = backend.process(container.id, container.address)
    except ContainerMissing:
        return Source(container.name, make_endpoint("", 0), "(gone from the engine)", _nothing)
    except DockerError as err:
        return f"cannot ask the engine where {container.name} runs: {err}"
    return locate(process, container.name, proc, diag)


def locate(
    process: ContainerProcess, name: str, proc: Path = PROC, diag: Dump = dump
) -> Source | str:
    """Where to read the connections of the container `process` describes, or why not."""
    if process.listen_port == 0:
        return f"the port {name} answers on inside its network namespace is unknown"
    try:
        endpoint = make_endpoint(process.listen_address, process.listen_port)
    except ValueError:
        return f"{name}'s address {process.listen_address!r} is not an IP address"
    if process.pid == 0:
        return Source(name, endpoint, "(not running)", _nothing)
    verified = _is_container_process(process, proc)
    same = _same_network_namespace(process.pid, proc) if verified else None
    if same is None and process.host_network:
        same = _listens_in_own_namespace(endpoint, proc, diag)
    if same:
        return _own_namespace(name, endpoint, proc, diag)
    if verified:
        net = proc / str(process.pid) / "net"
        return Source(name, endpoint, str(net), lambda: read_proc_tables(net, ONLY_ESTABLISHED))
    if not process.host_network:
        return (
            f"pid {process.pid} is not {name}'s process here: deployer runs in another pid "
            "namespace than the engine (run it with --pid host to watch containers that have "
            "their own network)"
        )
    return (
        f"pid {process.pid} is not {name}'s process here (deployer runs in another pid "
        f"namespace than the engine) and nothing listens on {endpoint} in deployer's network "
        "namespace: run deployer with --network host, or --pid host"
    )


def _listens_in_own_namespace(endpoint: Endpoint, proc: Path, diag: Dump) -> bool:
    """Whether the app's listener is in deployer's network namespace: then a host-networked
    container's namespace is deployer's (when deployer is elsewhere, its port picks saw the
    app's port free in its own namespace, so nothing of the app's listens there)."""
    try:
        return listens_on(_own_listeners(proc, diag), endpoint)
    except OSError:
        return False


def _is_container_process(process: ContainerProcess, proc: Path) -> bool:
    """Whether /proc/<pid>/cgroup names the container: the pid is its process here."""
    try:
        return process.id in (proc / str(process.pid) / "cgroup").read_text()
    except OSError:
        return False


def _same_network_namespace(pid: int, proc: Path) -> bool | None:
    """Whether process pid is in deployer's network namespace; None when unknown (reading
    the namespace links of another user's process needs root or CAP_SYS_PTRACE)."""
    try:
        mine = os.stat(proc / "self" / "ns" / "net")
        theirs = os.stat(proc / str(pid) / "ns" / "net")
    except OSError:
        return None
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _own_namespace(name: str, endpoint: Endpoint, proc: Path, diag: Dump) -> Source:
    """Deployer's own network namespace: the established sockets through sock_diag, in the
    families the app listens in (a LISTEN dump costs nothing; each established dump walks
    the whole connection table); /proc/self/net when sock_diag cannot answer."""
    try:
        listeners = [s for s in _diag_listeners(diag) if endpoint.owns(s)]
    except OSError:
        net = proc / "self" / "net"
        return Source(name, endpoint, str(net), lambda: read_proc_tables(net, ONLY_ESTABLISHED))
    families = sorted({s.local.version for s in listeners}) or [4, 6]
    wanted = [socket.AF_INET if version == 4 else socket.AF_INET6 for version in families]

    def read() -> list[Socket]:
        return [row for family in wanted for row in diag(family, states_mask(ESTABLISHED))]

    return Source(name, endpoint, "deployer's network namespace (sock_diag)", read)


def _diag_listeners(diag: Dump) -> list[Socket]:
    """The listening sockets of deployer's network namespace through sock_diag."""
    return [row for family in FAMILIES for row in diag(family, states_mask(LISTEN))]


def _own_listeners(proc: Path, diag: Dump) -> list[Socket]:
    """The listening sockets of deployer's network namespace (sock_diag, else /proc/self)."""
    try:
        return _diag_listeners(diag)
    except OSError:
        return read_proc_tables(proc / "self" / "net", frozenset({LISTEN}))


def _nothing() -> list[Socket]:
    """The table of a container that does not run: no socket."""
    return []
