"""Fault rules for the sandbox proxies: which requests to delay, hold or drop, and a record.

A `Rule` matches a request by method and path, both regular expressions that must match the
whole string (`re.fullmatch`); the path is the request target without its query string (and,
for the engine proxy, without docker's `/v1.41` version prefix): `POST /containers/create`,
`DELETE /containers/[0-9a-f]+`, `GET /v2/.*/blobs/sha256:[0-9a-f]+`.

Actions:
- `WATCH`: nothing changes; the rule only fires (a test waits for "deployer sent X").
- `DELAY`: wait `seconds`, then forward (a cut during the wait drops the request instead).
- `HOLD`: wait until `rule.release()` (or the connection is cut), then forward.
- `DROP`: close the client's connection without forwarding: the engine never sees it.
- `DROP_AFTER`: forward, wait until the answer's head came back (the engine acted: for
  `POST /containers/create` the container exists), then close the client's connection without
  relaying it: the caller gets a connection error and never learns the answer.

`times=N` limits a rule to its first N matches (`times=1`: once); `then_cut=True` (DROP and
DROP_AFTER) cuts the whole proxy right after, so the caller's next request fails too. Effect
rules apply in the order they were added, the first match wins; WATCH rules fire besides.
Rules are made through a proxy's methods, which return them::

    start = proxy.hold("POST", "/containers/[^/]+/start")
    request = start.wait(timeout=30)      # deployer is in its start step, waiting on the engine
    serve.kill()                          # SIGKILL in that window
    start.release()                       # the engine gets the start (it had it, only slowly)
    proxy.requests("DELETE", "/containers/.*")   # what deployer asked for afterwards
"""

from __future__ import annotations

import enum
import re
import threading
import time
from dataclasses import dataclass


class Action(enum.Enum):
    """What a rule does to a matching request."""

    WATCH = "watch"
    DELAY = "delay"
    HOLD = "hold"
    DROP = "drop"
    DROP_AFTER = "drop-after"


@dataclass
class Request:
    """One request the proxy saw: `target` as sent, `path` as rules match it, wall-clock time."""

    method: str
    target: str
    path: str
    at: float
    status: int | None = None  # the answer's status, once its head came back
    action: Action | None = None  # the effect rule applied to it, if any

    def __str__(self) -> str:
        answer = f" -> {self.status}" if self.status is not None else ""
        done = f" ({self.action.value})" if self.action else ""
        return f"{self.method} {self.target}{answer}{done}"


class Rule:
    """A fault applied to matching requests; `fired` is set at each match (see the module doc)."""

    def __init__(
        self,
        action: Action,
        method: str = ".*",
        path: str = ".*",
        seconds: float = 0.0,
        times: int | None = None,
        then_cut: bool = False,
    ) -> None:
        if then_cut and action not in (Action.DROP, Action.DROP_AFTER):
            raise ValueError("then_cut applies to DROP and DROP_AFTER rules only")
        if times is not None and times < 1:
            raise ValueError(f"times must be 1 or more, got {times}")
        self.action = action
        self.method = re.compile(method)
        self.path = re.compile(path)
        self.seconds = seconds
        self.remaining = times
        self.then_cut = then_cut
        self.fired = threading.Event()
        self.hits: list[Request] = []
        self._released = threading.Event()

    def __repr__(self) -> str:
        limit = "" if self.remaining is None else f", {self.remaining} left"
        return f"Rule({self.action.value} {self.method.pattern} {self.path.pattern}{limit})"

    def matches(self, request: Request) -> bool:
        """True when method and path match and the rule has uses left."""
        return (
            (self.remaining is None or self.remaining > 0)
            and self.method.fullmatch(request.method) is not None
            and self.path.fullmatch(request.path) is not None
        )

    def use(self) -> None:
        """Count one use against `times`."""
        if self.remaining is not None:
            self.remaining -= 1

    def fire(self, request: Request) -> None:
        """Record a hit and wake whoever waits for this rule."""
        self.hits.append(request)
        self.fired.set()

    def wait(self, timeout: float = 10.0) -> Request:
        """Block until the rule fired once; return the request it fired on."""
        if not self.fired.wait(timeout):
            raise TimeoutError(f"{self!r} did not fire within {timeout:g} s")
        return self.hits[0]

    def release(self) -> None:
        """Let held requests (HOLD) go on, now and from now on."""
        self._released.set()

    def wait_released(self, timeout: float) -> bool:
        """Wait up to timeout for release(); True once released."""
        return self._released.wait(timeout)


class Record:
    """Every request seen (the last `limit`), thread-safe, with waiting for one to appear."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._requests: list[Request] = []
        self._changed = threading.Condition()

    def add(self, request: Request) -> None:
        with self._changed:
            self._requests.append(request)
            del self._requests[: -self.limit]
            self._changed.notify_all()

    def find(self, method: str = ".*", path: str = ".*") -> list[Request]:
        """The requests seen whose method and path fully match the regexes, oldest first."""
        method_re, path_re = re.compile(method), re.compile(path)
        with self._changed:
            return [
                request
                for request in self._requests
                if method_re.fullmatch(request.method) and path_re.fullmatch(request.path)
            ]

    def wait_for(
        self, method: str = ".*", path: str = ".*", timeout: float = 10.0, since: float = 0.0
    ) -> Request:
        """The first matching request seen at or after `since` (time.time()); wait for one."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [request for request in self.find(method, path) if request.at >= since]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = ", ".join(str(request) for request in self._requests[-5:])
                    raise TimeoutError(
                        f"no {method} {path} request within {timeout:g} s; "
                        f"last seen: {recent or 'none'}"
                    )
                self._changed.wait(left)
