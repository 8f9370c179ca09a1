"""Confirm that nginx applied a reload, by watching its worker processes (Linux /proc).

`nginx -s reload` only signals the master and returns. The master then starts new workers with
the new config and asks the old ones to shut down; until they do, old workers still accept
connections with the old upstreams. With `nginx.pid_file` set, the nginx step waits until every
worker from before the reload has exited or stopped accepting ("worker process is shutting
down"). When the master rejects the new config at reload time the old workers never change:
that is reported as a failure instead of a success nginx does not serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from deployer.errors import NginxError

PROC = Path("/proc")
CACHE = "cache "  # `cache manager process`, `cache loader process`: they do not accept
SHUTTING_DOWN = "is shutting down"
# Between an old worker's new title and its closing the listening socket: a few syscalls.
SETTLE = 0.05


def read_master_pid(pid_file: Path) -> int:
    """The nginx master's pid from its pid file; NginxError naming the file otherwise."""
    try:
        text = pid_file.read_text().strip()
    except OSError as err:
        raise NginxError(
            str(pid_file), f"cannot read nginx pid file {pid_file}: {err.strerror}; is nginx up?"
        ) from None
    if not text.isdigit():
        raise NginxError(str(pid_file), f"nginx pid file {pid_file} holds {text!r}, not a pid")
    return int(text)


def snapshot(pid_file: Path, proc: Path = PROC) -> tuple[int, dict[int, str]]:
    """The master's pid and its workers now; NginxError when it has none (wrong pid file)."""
    master = read_master_pid(pid_file)
    workers = worker_titles(master, proc)
    if not workers:
        raise NginxError(
            str(pid_file),
            f"nginx pid file {pid_file} names pid {master}, which has no nginx worker "
            "processes here; is nginx running, in this pid namespace, with this pid file?",
        )
    return master, workers


def worker_titles(master: int, proc: Path = PROC) -> dict[int, str]:
    """The master's worker processes: pid -> process title (`nginx: worker process ...`).

    A worker forked a moment ago may still carry the master's title: every child that is not
    a cache process counts as a worker.
    """
    workers: dict[int, str] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent != master:
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        if CACHE not in title:
            workers[int(entry.name)] = title
    return workers


def still_accepting(before: dict[int, str], now: dict[int, str]) -> list[int]:
    """Workers from `before` that still run and have not begun shutting down (pure)."""
    return sorted(pid for pid in before if pid in now and SHUTTING_DOWN not in now[pid])


def wait_for_reload(
    master: int,
    before: dict[int, str],
    timeout: float,
    proc: Path = PROC,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the workers in `before` stopped accepting; NginxError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        old = still_accepting(before, worker_titles(master, proc))
        if not old:
            sleep(SETTLE)
            return
        if time.monotonic() >= deadline:
            raise NginxError(
                f"nginx master {master}",
                f"nginx (master pid {master}) did not apply the reload within {timeout:g} s: "
                f"worker(s) {', '.join(map(str, old))} still run the previous config; "
                "see nginx's error log",
            )
        sleep(0.02)
