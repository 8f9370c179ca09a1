"""Where deployer can read a container's connections (Linux /proc), for the drain.

A container's sockets live in its network namespace, which /proc/<pid>/net shows for any of
its processes: the engine names the main one (State.Pid), in the engine's pid namespace. The
rule, in order:

1. The engine says pid 0: the container is not running, so nothing is connected to it.
2. /proc/<pid>/cgroup names the container's id: that pid is the container's process here
   (deployer sees the engine's pid namespace: it runs on the host, or with `--pid host`).
   Its namespace is read through sock_diag when it is deployer's own (the host's, for a
   host-networked container and deployer on the host: /proc/self/ns/net and /proc/<pid>/ns/net
   are the same inode; reading those links needs root or CAP_SYS_PTRACE), else from
   /proc/<pid>/net/tcp and tcp6 (readable by any user).
3. Otherwise deployer is in another pid namespace (a container without `--pid host`) and the
   pid means nothing here. A host-networked container's sockets are in the host's namespace;
   deployer is in that one too when it runs with `--network host`, which host networking
   already asks of it: its port picks and health probes reach the apps on 127.0.0.1 only
   from there. Comparing /proc/self/ns/net with /proc/1/ns/net would not show it (pid 1 is
   then deployer's container's own init, in deployer's namespace whatever that is), so the
   check is the app itself: its listening socket on its address and port must be in
   deployer's namespace. Then deployer's own namespace is read (sock_diag).
4. Anything else (a container on a bridge or named network seen from another pid namespace,
   /proc unreadable): the connections cannot be read; the drain says why and falls back to
   what it did without them.
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
    if _is_container_process(process, proc):
        if _same_network_namespace(process.pid, proc):
            return _own_namespace(name, endpoint, proc, diag)
        net = proc / str(process.pid) / "net"
        return Source(name, endpoint, str(net), lambda: read_proc_tables(net))
    if not process.host_network:
        return (
            f"pid {process.pid} is not {name}'s process here: deployer runs in another pid "
            "namespace than the engine (run it with --pid host to watch containers that have "
            "their own network)"
        )
    try:
        listening = listens_on(_own_listeners(proc, diag), endpoint)
    except OSError as err:
        return f"cannot read deployer's own network namespace: {err}"
    if not listening:
        return (
            f"pid {process.pid} is not {name}'s process here (deployer runs in another pid "
            f"namespace than the engine) and nothing listens on {endpoint} in deployer's network "
            "namespace: run deployer with --network host, or --pid host"
        )
    return _own_namespace(name, endpoint, proc, diag)


def _is_container_process(process: ContainerProcess, proc: Path) -> bool:
    """Whether /proc/<pid>/cgroup names the container: the pid is its process here."""
    try:
        return process.id in (proc / str(process.pid) / "cgroup").read_text()
    except OSError:
        return False


def _same_network_namespace(pid: int, proc: Path) -> bool:
    """Whether process pid is in deployer's network namespace (False when unknown)."""
    try:
        mine = os.stat(proc / "self" / "ns" / "net")
        theirs = os.stat(proc / str(pid) / "ns" / "net")
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _own_namespace(name: str, endpoint: Endpoint, proc: Path, diag: Dump) -> Source:
    """Deployer's own network namespace: the established sockets through sock_diag, in the
    families the app listens in (a LISTEN dump costs nothing; each established dump walks
    the whole connection table); /proc/self/net when sock_diag cannot answer."""
    try:
        listeners = [s for s in _diag_listeners(diag) if endpoint.owns(s)]
    except OSError:
        net = proc / "self" / "net"
        return Source(name, endpoint, str(net), lambda: read_proc_tables(net))
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
        return read_proc_tables(proc / "self" / "net")


def _nothing() -> list[Socket]:
    """The table of a container that does not run: no socket."""
    return []
