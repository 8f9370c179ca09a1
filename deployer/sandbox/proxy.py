"""The fault-injecting HTTP proxy both sandbox proxies share (EngineProxy, TcpProxy).

One thread per client connection, one upstream connection per client connection, requests
relayed one after another as HTTP/1.1 messages (deployer/sandbox/http_relay.py), so every
request on a keep-alive connection is seen, recorded and matched against the fault rules
(deployer/sandbox/faults.py). Controls, all thread-safe and usable while the system under test
talks through the proxy:

- `cut()`: close every open connection and refuse new ones (ECONNREFUSED) until `restore()`.
- `refuse()`: refuse new connections, leave open ones alone.
- `hang()`: accept, read requests, answer nothing (answers already streaming stall too) until
  `restore()`, which lets them all go on.
- `restore()`: back to passing everything (the rules stay; `clear()` removes them).
- rules: `watch`, `delay`, `hold`, `drop`, `drop_after` (see faults.py), each returning its
  `Rule` so a test can `rule.wait()` for it to fire.
- `requests(method, path)` / `wait_for_request(...)`: what was seen.

A request held by `hang()` or a DELAY/HOLD rule is forwarded when released even if its client
has gone meanwhile (say `deployer serve` was SIGKILLed while waiting): the engine had it and
was only slow, as without the proxy. To make it never arrive, `cut()` while it is held.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Self

from deployer.sandbox.connection import Connection
from deployer.sandbox.faults import Action, Record, Request, Rule
from deployer.sandbox.http_relay import Closed
from deployer.sandbox.process import StartStop

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    """What the proxy does with new connections and requests."""

    PASS = "pass"  # noqa: S105 (a mode, not a password)
    HANG = "hang"
    REFUSE = "refuse"


class HttpProxy(StartStop):
    """Listens with `bind()`, forwards to `connect()`; see the module docstring."""

    def __init__(
        self,
        name: str,
        bind: Callable[[], socket.socket],
        connect: Callable[[], socket.socket],
        normalise: Callable[[str], str],
    ) -> None:
        self.name = name
        self._bind = bind
        self._connect = connect
        self._normalise = normalise
        self.record = Record()
        self._mode = Mode.PASS
        self._rules: list[Rule] = []
        self._connections: set[Connection] = set()
        self._listener: socket.socket | None = None
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{name}-accept")

    # lifecycle

    def start(self) -> Self:
        """Listen and start accepting."""
        with self._changed:
            self._listener = self._open_listener()
        self._acceptor.daemon = True
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection; release everything held."""
        self._stopped.set()
        with self._changed:
            self._close_listener()
            self._close_connections()
            self._changed.notify_all()
        if self._acceptor.is_alive():
            self._acceptor.join(5)

    # modes

    @property
    def mode(self) -> Mode:
        return self._mode

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until restore()."""
        with self._changed:
            self._mode = Mode.REFUSE
            self._close_listener()
            self._close_connections()
            self._changed.notify_all()
        log.info("%s: cut", self.name)

    def refuse(self) -> None:
        """Refuse new connections (ECONNREFUSED); open ones carry on."""
        with self._changed:
            self._mode = Mode.REFUSE
            self._close_listener()
            self._changed.notify_all()

    def hang(self) -> None:
        """Accept and read, but answer nothing until restore()."""
        with self._changed:
            self._mode = Mode.HANG
            if self._listener is None:
                self._listener = self._open_listener()
            self._changed.notify_all()

    def restore(self) -> None:
        """Pass everything again: listen if cut, let hung requests go on. Rules stay."""
        with self._changed:
            self._mode = Mode.PASS
            if self._listener is None and not self._stopped.is_set():
                self._listener = self._open_listener()
            self._changed.notify_all()
        log.info("%s: restored", self.name)

    @property
    def open_connections(self) -> int:
        with self._changed:
            return len(self._connections)

    # rules

    def add(self, rule: Rule) -> Rule:
        """Add a rule (effect rules apply in the order added, first match wins)."""
        with self._changed:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Remove a rule, releasing what it holds."""
        rule.release()
        with self._changed:
            self._rules.remove(rule)
            self._changed.notify_all()

    def clear(self) -> None:
        """Remove every rule, releasing what they hold."""
        with self._changed:
            for rule in self._rules:
                rule.release()
            self._rules.clear()
            self._changed.notify_all()

    def watch(self, method: str = ".*", path: str = ".*") -> Rule:
        """Fire on matching requests, change nothing."""
        return self.add(Rule(Action.WATCH, method, path))

    def delay(
        self, seconds: float, method: str = ".*", path: str = ".*", times: int | None = None
    ) -> Rule:
        """Hold matching requests `seconds` before forwarding them."""
        return self.add(Rule(Action.DELAY, method, path, seconds=seconds, times=times))

    def hold(self, method: str = ".*", path: str = ".*", times: int | None = None) -> Rule:
        """Hold matching requests until rule.release() (or remove/clear)."""
        return self.add(Rule(Action.HOLD, method, path, times=times))

    def drop(
        self, method: str, path: str, times: int | None = None, then_cut: bool = False
    ) -> Rule:
        """Close the client connection instead of forwarding matching requests."""
        return self.add(Rule(Action.DROP, method, path, times=times, then_cut=then_cut))

    def drop_after(
        self, method: str, path: str, times: int | None = None, then_cut: bool = False
    ) -> Rule:
        """Forward, then close the client connection instead of relaying the answer."""
        return self.add(Rule(Action.DROP_AFTER, method, path, times=times, then_cut=then_cut))

    # record

    def requests(self, method: str = ".*", path: str = ".*") -> list[Request]:
        """Requests seen whose method and path fully match, oldest first."""
        return self.record.find(method, path)

    def wait_for_request(
        self, method: str = ".*", path: str = ".*", timeout: float = 10.0, since: float = 0.0
    ) -> Request:
        """The first matching request seen at or after `since` (time.time()), waiting for it."""
        return self.record.wait_for(method, path, timeout, since)

    # internals: listening

    def _open_listener(self) -> socket.socket:
        listener = self._bind()
        listener.setblocking(False)
        return listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            # shutdown first: a select() in the accept thread holds the socket open until it
            # returns, and connections made meanwhile would be reset instead of refused.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def _close_connections(self) -> None:
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            with self._changed:
                listener = self._listener
            if listener is None:
                self._stopped.wait(0.02)
                continue
            try:
                ready, _, _ = select.select([listener], [], [], 0.05)
                if not ready:
                    continue
                client, _ = listener.accept()
            except (OSError, ValueError):
                continue  # closed by cut()/stop() meanwhile, or the client went away
            self._adopt(client, listener)

    def _adopt(self, client: socket.socket, listener: socket.socket) -> None:
        client.setblocking(True)
        connection = Connection(client, self)
        with self._changed:
            if self._listener is not listener or self._stopped.is_set():
                connection.close()
                return
            self._connections.add(connection)
        name = f"{self.name}-connection"
        threading.Thread(target=connection.serve, name=name, daemon=True).start()

    def forget(self, connection: Connection) -> None:
        """A connection ended."""
        with self._changed:
            self._connections.discard(connection)

    # called by each Connection (deployer/sandbox/connection.py)

    def path_of(self, target: str) -> str:
        """The path rules match for a request target."""
        return self._normalise(target)

    def connect_upstream(self) -> socket.socket:
        """A new connection to the target."""
        return self._connect()

    def match(self, request: Request) -> Rule | None:
        """Record the request; fire watch rules; take one use of the first effect rule."""
        self.record.add(request)
        with self._changed:
            rules = [rule for rule in self._rules if rule.matches(request)]
            effect = next((rule for rule in rules if rule.action is not Action.WATCH), None)
            if effect is not None:
                effect.use()
                request.action = effect.action
        for rule in rules:
            if rule.action is Action.WATCH:
                rule.fire(request)
        return effect

    def may_forward(self, connection: Connection, rule: Rule | None, request: Request) -> bool:
        """Wait out hang mode and DELAY/HOLD rules; False when the connection was cut meanwhile."""
        self.pass_gate(connection)
        if rule is not None and rule.action is Action.DELAY:
            rule.fire(request)
            connection.closed.wait(rule.seconds)
        elif rule is not None and rule.action is Action.HOLD:
            rule.fire(request)
            while not rule.wait_released(0.05) and not connection.closed.is_set():
                pass
        self.pass_gate(connection)
        return not connection.closed.is_set()

    def pass_gate(self, connection: Connection) -> None:
        """Block while the proxy hangs (until restore(), a cut or stop)."""
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._mode is not Mode.HANG
                    or connection.closed.is_set()
                    or self._stopped.is_set()
                )
            )
        if connection.closed.is_set():
            raise Closed("connection cut")

    def drop_connection(self, connection: Connection, rule: Rule, request: Request) -> None:
        """Close a connection instead of relaying (DROP, DROP_AFTER); fire the rule."""
        connection.close()
        log.info("%s: dropped %s (%r)", self.name, request, rule)
        if rule.then_cut:
            self.cut()
        rule.fire(request)
