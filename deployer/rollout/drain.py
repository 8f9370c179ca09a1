"""The drain: after the switch, wait until nothing can send the old containers a request any
more, at most `drain` seconds (the cap), then they are retired. Which evidence counts:

- With `nginx.pid_file` (nginx's workers are watched): the nginx workers the switch's reload
  replaced (after a restart: every worker still shutting down) have exited. Only they know
  the old addresses, and a worker exits once its last request is done. Connections are not
  enough here: a worker still reading a client's request (a slow upload, with nginx's
  default request buffering) has not connected to the old container yet, so none open does
  not prove nothing more will be sent. At the cap, the connections still open are reported.
- Without it: the old containers' connections (deployer/connection_sources.py reads them
  from /proc or sock_diag) must be none now, and no new connection may have appeared for
  QUIET seconds. `nginx -s reload` returns before nginx applies the new file, and until it
  does its old workers still open connections to the old containers: each one seen restarts
  the quiet window, so under traffic the drain waits until nginx has stopped opening them.
  With no traffic at all nothing is seen, and the window stands for the time nginx takes to
  apply a reload (0.1-0.2 s on this machine). A long request already in flight keeps its
  connection open (no new one): the drain ends as soon as it closes, the window having run
  meanwhile. Where the connections cannot be read, the drain waits the full cap.

A stop of deployer cuts any of them short (the next start resumes it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from deployer.backends.base import ContainerInfo
from deployer.connection_sources import Source, Watcher
from deployer.connections import Socket
from deployer.nginx_workers import InFlight

log = logging.getLogger(__name__)
# Seconds with no connection to the old containers, none new, before the drain ends without
# nginx's workers to watch. After `nginx -s reload` the master parses the whole config, starts
# new workers, sleeps 100 ms, and only then tells the old workers to stop accepting (0.1 s
# here with one service, 0.2 s with 500; more on a busy machine): a window several times that
# (it was 0.3 s, too close to 500 services' 0.2 s), still short next to `drain` (5 s).
QUIET = 1.0
POLL = 0.025  # seconds between two looks, at least
LEAST = 0.001  # except to meet the cap or the window's end: never less (it would spin)
MAX_POLL = 0.25  # and at most
READ_SHARE = 4  # a look every 4 reads' time at least: reading takes at most 1/4 of a core


class Clock(Protocol):
    """Time and the stop: wait() returns True once deployer is stopping."""

    def now(self) -> float: ...
    def wait(self, seconds: float) -> bool: ...


@dataclass(frozen=True)
class StopClock:
    """The real clock, cut short by deployer's stop event."""

    stopping: threading.Event

    def now(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> bool:
        return self.stopping.wait(max(0.0, seconds))


class Drain:
    """One drain of `old`, at most `cap` seconds; run() returns what it waited for, and why it
    stopped waiting (the drain step's detail)."""

    def __init__(
        self, old: Sequence[ContainerInfo], cap: float, clock: Clock, watch: Watcher
    ) -> None:
        self.old = list(old)
        self.names = ", ".join(container.name for container in old)
        self.cap = cap
        self.clock = clock
        self.watch = watch
        self.began = clock.now()

    def run(self, in_flight: Callable[[], InFlight | None]) -> str:
        """The drain by nginx's workers when they can be watched, else by connections."""
        if not self.old:
            return "nothing to drain: no old container is left"
        first = in_flight()
        if first is not None:
            return self._by_workers(first, in_flight)
        sources = self._sources()
        if isinstance(sources, str):
            return self._full(f"could not read connections ({sources})")
        return self._by_connections(sources)

    def _waited(self) -> float:
        return self.clock.now() - self.began

    def _sources(self) -> list[Source] | str:
        """A Source per old container, or why one of them cannot be read."""
        found = []
        for container in self.old:
            source = self.watch(container)
            if isinstance(source, str):
                return source
            found.append(source)
        return found

    def _full(self, why: str) -> str:
        """Wait out the cap (the connections cannot be read)."""
        if self.clock.wait(max(0.0, self.cap - self._waited())):
            return self._cut_short()
        return f"{why}: waited the full {self.cap:g} s"

    def _cut_short(self) -> str:
        return f"{self.names}: drain cut short, deployer is stopping"

    def _by_workers(self, left: InFlight, in_flight: Callable[[], InFlight | None]) -> str:
        while True:
            waited = self._waited()
            if left.done:
                return (
                    f"{self.names} had no request in flight after {waited:.2f} s: no nginx "
                    "worker from before the switch is left"
                )
            if waited >= self.cap:
                return (
                    f"{self.names} still had {left}{self._open_at_cap()} after the "
                    f"{self.cap:g} s drain: retired anyway"
                )
            if self.clock.wait(max(LEAST, min(POLL, self.cap - waited))):
                return self._cut_short()
            now = in_flight()
            if now is None:
                return self._full(
                    f"nginx's workers could not be watched any more ({self._waited():.2f} s)"
                )
            left = now

    def _open_at_cap(self) -> str:
        """` and connection(s) open: 2 to web-3 (127.0.0.1:18001)` or ` (no connection
        open)`; nothing when they cannot be read."""
        sources = self._sources()
        if isinstance(sources, str):
            return ""
        try:
            open_now = [(source, len(source.connections())) for source in sources]
        except OSError:
            return ""
        opened = [f"{count} to {source}" for source, count in open_now if count]
        return (
            f" and connection(s) open: {', '.join(opened)}" if opened else " (no connection open)"
        )

    def _by_connections(self, sources: list[Source]) -> str:
        targets = ", ".join(str(source) for source in sources)
        for source in sources:
            log.info("drain: reading the connections to %s from %s", source, source.where)
        seen: set[Socket] = set()
        quiet_since = self.began
        while True:
            before = self.clock.now()
            try:
                open_now = frozenset().union(*(source.connections() for source in sources))
            except OSError as err:
                return self._full(
                    f"could not read connections to {targets} after {self._waited():.2f} s ({err})"
                )
            after = self.clock.now()
            if open_now - seen:
                quiet_since = after
                seen |= open_now
            waited, quiet_for = after - self.began, after - quiet_since
            if not open_now and quiet_for >= QUIET:
                history = (
                    f"{len(seen)} seen, none new for {quiet_for:.2f} s" if seen else "none seen"
                )
                return f"no connection to {targets} after {waited:.2f} s ({history})"
            if waited >= self.cap:
                return self._capped(targets, len(open_now), quiet_for, bool(seen))
            pause = min(MAX_POLL, max(POLL, READ_SHARE * (after - before)), self.cap - waited)
            if not open_now:
                pause = min(pause, QUIET - quiet_for)
            if self.clock.wait(max(LEAST, pause)):
                return self._cut_short()

    def _capped(self, targets: str, open_now: int, quiet_for: float, seen: bool) -> str:
        if open_now:
            return (
                f"{open_now} connection(s) to {targets} still open after the {self.cap:g} s "
                "drain: retired anyway"
            )
        if not seen:
            return (
                f"no connection to {targets} in the {self.cap:g} s drain (shorter than the "
                f"{QUIET:g} s that show nginx sends no more): retired anyway"
            )
        return (
            f"no connection to {targets} open after the {self.cap:g} s drain, but none new for "
            f"only {quiet_for:.2f} s (less than {QUIET:g} s): retired anyway"
        )
