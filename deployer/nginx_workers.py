"""Confirm that nginx applied a reload, by watching its worker processes (Linux /proc).

`nginx -s reload` only signals the master and returns. The master then starts new workers with
the new config and asks the old ones to shut down; until they close their listening sockets,
old workers still accept connections with the old upstreams. With `nginx.pid_file` set, the
nginx step waits until every worker from before the reload has exited or holds none of
nginx's listening sockets (read from /proc/<pid>/fd against the master's).
Where a worker's fds cannot be read (it runs as another user and deployer is not root), its
title says it is shutting down ("worker process is shutting down") and a short settle covers
the few syscalls between that title and the sockets' close. A poll is cheap whatever nginx
holds: a worker that still listens is told by one readlink (the fd where the master holds its
first listener, inherited at the same number), one that stopped has few fds left to read.
When the master rejects the new config at reload time the old workers never change: that is
a failure, not a success nginx does not serve.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deployer.errors import NginxError

PROC = Path("/proc")
CACHE = "cache "  # `cache manager process`, `cache loader process`: they do not accept
SHUTTING_DOWN = "is shutting down"
SETTLE = 0.05  # only when a worker's fds cannot be read: title changed, sockets not yet closed
POLL = 0.005
ACCEPTING_UNIX = 0x10000  # __SO_ACCEPTCON in /proc/net/unix flags: a listening unix socket


@dataclass(frozen=True)
class Workers:
    """An nginx master, its workers (pid -> title) and its listening sockets (inodes)."""

    master: int
    titles: dict[int, str]
    listeners: frozenset[int]
    # The master's lowest fd that holds a listener: a worker forked since holds it at the same
    # number, so one readlink there tells that it still listens (None: look at every fd).
    probe: int | None = None


def read_master_pid(pid_file: Path) -> int:
    """The nginx master's pid from its pid file; NginxError naming the file otherwise."""
    try:
        text = pid_file.read_text().strip()
    except OSError as err:
        raise NginxError(
            str(pid_file), f"cannot read nginx pid file {pid_file}: {err.strerror}; is nginx up?"
        ) from None
    if not text.isascii() or not text.isdigit():
        raise NginxError(str(pid_file), f"nginx pid file {pid_file} holds {text!r}, not a pid")
    return int(text)


def snapshot(pid_file: Path, proc: Path = PROC) -> Workers:
    """The master, its workers and listening sockets now; NginxError when it has no workers."""
    master = read_master_pid(pid_file)
    titles = worker_titles(master, proc)
    if not titles:
        raise NginxError(
            str(pid_file),
            f"nginx pid file {pid_file} names pid {master}, which has no nginx worker "
            "processes here; is nginx running, in this pid namespace, with this pid file?",
        )
    listeners = listening_sockets(master, proc)
    return Workers(master, titles, frozenset(listeners.values()), min(listeners, default=None))


def worker_titles(master: int, proc: Path = PROC) -> dict[int, str]:
    """The master's worker processes: pid -> process title (`nginx: worker process ...`).

    A worker forked a moment ago may still carry the master's title: every child that is not
    a cache process counts as a worker; one that exited and waits for the master to reap it
    (a zombie, empty title) does not.
    """
    workers: dict[int, str] = {}
    for pid in _children(master, proc):
        try:
            stat = (proc / str(pid) / "stat").read_text()
            # `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if int(parent) != master or state == "Z":
                continue  # another's child, or exited and not reaped yet (it holds nothing)
            raw = (proc / str(pid) / "cmdline").read_bytes()
            title = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        if CACHE not in title:
            workers[pid] = title
    return workers


def _children(master: int, proc: Path) -> list[int]:
    """Candidate child pids: the kernel's list when it has one, else every process."""
    try:
        listed = (proc / str(master) / "task" / str(master) / "children").read_text().split()
        return [int(pid) for pid in listed]
    except (OSError, ValueError):
        return [int(entry.name) for entry in proc.iterdir() if entry.name.isdigit()]


def listening_inodes(master: int, proc: Path = PROC) -> frozenset[int]:
    """Inodes of nginx's listening sockets (see listening_sockets)."""
    return frozenset(listening_sockets(master, proc).values())


def listening_sockets(master: int, proc: Path = PROC) -> dict[int, int]:
    """nginx's listening sockets, fd -> inode: the sockets the master holds (it holds nothing
    else but its channels to the workers), less the unix sockets that do not listen (those
    channels). Read from the master's fds and /proc/<master>/net/unix, never /proc/net/tcp,
    whose size grows with every connection in TIME-WAIT on the host (seen: 73,000 lines,
    0.15 s of kernel time to read). net/unix is read before and after the fds: a channel
    opened or closed meanwhile (a worker starting or exiting) is in one of the two."""
    unix = proc / str(master) / "net" / "unix"
    channels = _unlistening_unix(unix)
    held = _sockets(master, proc) or {}
    channels |= _unlistening_unix(unix)
    return {fd: inode for fd, inode in held.items() if inode not in channels}


def _unlistening_unix(path: Path) -> set[int]:
    """Inodes of the unix sockets in a net/unix table that do not listen."""
    found = set()
    for fields in _rows(path):
        try:
            if len(fields) > 6 and not int(fields[3], 16) & ACCEPTING_UNIX:
                found.add(int(fields[6]))
        except ValueError:
            continue
    return found


def _sockets(pid: int, proc: Path) -> dict[int, int] | None:
    """The sockets process pid has open, fd -> inode; None when its fds cannot be read."""
    fds = proc / str(pid) / "fd"
    try:
        names = os.listdir(fds)
    except PermissionError:
        return None
    except OSError:
        return {}  # exited
    found = {}
    for name in names:
        inode = _socket_inode(fds / name)
        if inode is not None and name.isdigit():
            found[int(name)] = inode
    return found


def _socket_inode(link: Path) -> int | None:
    """The inode of the socket this /proc/<pid>/fd entry points at; None for anything else."""
    try:
        target = os.readlink(link)
    except OSError:
        return None  # closed, or not ours to read
    if not target.startswith("socket:["):
        return None
    return int(target[8:-1])


def _rows(path: Path) -> list[list[str]]:
    try:
        return [line.split() for line in path.read_text().splitlines()[1:]]
    except OSError:
        return []


def holds_listener(
    pid: int, listeners: frozenset[int], proc: Path = PROC, probe: int | None = None
) -> bool | None:
    """Whether process pid has one of these sockets open; None when its fds cannot be read.

    Looks at fd `probe` first (one readlink answers for a worker that still listens), then
    at the other fds until the first listener: a worker that closed its listeners holds few.
    """
    fds = proc / str(pid) / "fd"
    if probe is not None and _socket_inode(fds / str(probe)) in listeners:
        return True
    try:
        names = os.listdir(fds)
    except PermissionError:
        return None
    except OSError:
        return False  # exited
    return any(_socket_inode(fds / name) in listeners for name in names)


def still_accepting(
    before: Workers, now: dict[int, str], holds: Callable[[int], bool | None]
) -> tuple[list[int], bool]:
    """Workers from `before` that may still accept new connections, and whether the answer
    rests on a title only for some worker (then a short settle is due)."""
    accepting, by_title = [], False
    for pid in sorted(before.titles):
        if pid not in now:
            continue
        holding = holds(pid)
        if holding is None:
            by_title = True
            holding = SHUTTING_DOWN not in now[pid]
        if holding:
            accepting.append(pid)
    return accepting, by_title


def wait_for_reload(
    before: Workers,
    timeout: float,
    proc: Path = PROC,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the workers in `before` stopped accepting; NginxError after timeout."""
    deadline = time.monotonic() + timeout

    def holds(pid: int) -> bool | None:
        return holds_listener(pid, before.listeners, proc, before.probe)

    while True:
        old, by_title = still_accepting(before, worker_titles(before.master, proc), holds)
        if not old:
            if by_title:
                sleep(SETTLE)
            return
        if time.monotonic() >= deadline:
            raise NginxError(
                f"nginx master {before.master}",
                f"nginx (master pid {before.master}) did not apply the reload within "
                f"{timeout:g} s: worker(s) {', '.join(map(str, old))} still run the previous "
                "config; see nginx's error log",
            )
        sleep(POLL)


@dataclass(frozen=True)
class InFlight:
    """nginx workers that may still send a request to a retiring container: those from before
    the switch's reload (only they know its address) that have not exited yet. A worker that
    is shutting down exits once its last request is done, so none left means nothing is in
    flight to the old container and nothing more will be sent to it."""

    workers: tuple[int, ...]

    @property
    def done(self) -> bool:
        return not self.workers

    def __str__(self) -> str:
        return (
            f"{len(self.workers)} nginx worker(s) from before the switch still finishing requests"
        )


def in_flight(replaced: Workers | None, master: int, proc: Path = PROC) -> InFlight:
    """The workers `replaced` (a reload's old ones) that still run; not knowing them (after a
    restart), every worker of the master that is shutting down."""
    alive = worker_titles(master, proc)
    if replaced is not None:
        return InFlight(tuple(pid for pid in sorted(replaced.titles) if pid in alive))
    return InFlight(tuple(pid for pid, title in sorted(alive.items()) if SHUTTING_DOWN in title))
