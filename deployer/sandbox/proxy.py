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
"""

from __future__ import annotations

import contextlib
import enum
import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

from deployer.sandbox.faults import Action, Record, Request, Rule
from deployer.sandbox.http_relay import (
    CONTINUE,
    Closed,
    Framing,
    Head,
    Reader,
    keeps_alive,
    parse_head,
    pipe,
    relay_body,
    request_framing,
    request_line,
    response_framing,
    status_code,
)

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    """What the proxy does with new connections and requests."""

    PASS = "pass"  # noqa: S105 (a mode, not a password)
    HANG = "hang"
    REFUSE = "refuse"


class Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.upstream_reader: Reader | None = None
        self.closed = threading.Event()

    def close(self) -> None:
        """Close both sockets (waking any thread blocked on them)."""
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class HttpProxy:
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
        self._links: set[Link] = set()
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
            self._close_links()
            self._changed.notify_all()
        if self._acceptor.is_alive():
            self._acceptor.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # modes

    @property
    def mode(self) -> Mode:
        return self._mode

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until restore()."""
        with self._changed:
            self._mode = Mode.REFUSE
            self._close_listener()
            self._close_links()
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
            return len(self._links)

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

    def _close_links(self) -> None:
        for link in list(self._links):
            link.close()
        self._links.clear()

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
        link = Link(client)
        with self._changed:
            if self._listener is not listener or self._stopped.is_set():
                link.close()
                return
            self._links.add(link)
        threading.Thread(target=self._serve, args=(link,), name=f"{self.name}-link").start()

    # internals: one connection

    def _serve(self, link: Link) -> None:
        client = Reader(link.client)
        try:
            if client.peek()[:1].isupper():
                while self._exchange(link, client):
                    pass
            elif client.buffer:  # not HTTP (the engine tries TLS first): relay it untouched
                self._pipe_raw(link, client)
        except (Closed, OSError, ValueError) as err:
            log.debug("%s: connection ended: %s", self.name, err)
        finally:
            link.close()
            with self._changed:
                self._links.discard(link)

    def _exchange(self, link: Link, client: Reader) -> bool:
        """Relay one request and its answer; False when the connection is done."""
        raw = client.head()
        if raw is None:
            return False
        head = parse_head(raw)
        method, target, _ = request_line(head)
        request = Request(method, target, self._normalise(target), time.time())
        rule = self._match(request)
        if not self._may_forward(link, rule, request):
            return False
        if rule is not None and rule.action is Action.DROP:
            self._drop(link, rule, request)
            return False
        if head.has_token("expect", "100-continue"):
            link.client.sendall(CONTINUE)
            head = head.without("expect")
        upstream = self._upstream(link)
        upstream.sock.sendall(head.raw)
        relay_body(client, *request_framing(head), upstream.sock.sendall)
        response = self._response_head(link, upstream, method)
        request.status = status_code(response)
        if rule is not None and rule.action is Action.DROP_AFTER:
            self._drop(link, rule, request)
            return False
        return self._answer(link, client, upstream, head, response, method)

    def _answer(
        self,
        link: Link,
        client: Reader,
        upstream: Reader,
        request: Head,
        response: Head,
        method: str,
    ) -> bool:
        def send_down(data: bytes) -> None:
            self._pass_gate(link)
            link.client.sendall(data)

        send_down(response.raw)
        framing, length = response_framing(response, method)
        if framing is Framing.RAW:
            pipe(client, upstream, link.client.sendall, send_down, link.closed.is_set)
            return False
        relay_body(upstream, framing, length, send_down)
        return framing is not Framing.UNTIL_CLOSE and keeps_alive(request) and keeps_alive(response)

    def _pipe_raw(self, link: Link, client: Reader) -> None:
        self._pass_gate(link)
        upstream = self._upstream(link)

        def send_down(data: bytes) -> None:
            self._pass_gate(link)
            link.client.sendall(data)

        pipe(client, upstream, link.client.sendall, send_down, link.closed.is_set)

    def _upstream(self, link: Link) -> Reader:
        if link.upstream_reader is None:
            link.upstream = self._connect()
            if link.closed.is_set():  # cut while connecting
                link.upstream.close()
                raise Closed("cut while connecting upstream")
            link.upstream_reader = Reader(link.upstream)
        return link.upstream_reader

    def _response_head(self, link: Link, upstream: Reader, method: str) -> Head:
        """The final response head; interim 1xx answers (not 101) are relayed on the way."""
        while True:
            raw = upstream.head()
            if raw is None:
                raise Closed(f"{self.name}: upstream closed before answering {method}")
            head = parse_head(raw)
            status = status_code(head)
            if 100 <= status < 200 and status != 101:
                link.client.sendall(head.raw)
                continue
            return head

    # internals: faults

    def _match(self, request: Request) -> Rule | None:
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

    def _may_forward(self, link: Link, rule: Rule | None, request: Request) -> bool:
        """Wait out hang mode and DELAY/HOLD rules; False when the link was cut meanwhile."""
        self._pass_gate(link)
        if rule is not None and rule.action is Action.DELAY:
            rule.fire(request)
            link.closed.wait(rule.seconds)
        elif rule is not None and rule.action is Action.HOLD:
            rule.fire(request)
            while not rule.wait_released(0.05) and not link.closed.is_set():
                pass
        self._pass_gate(link)
        return not link.closed.is_set()

    def _pass_gate(self, link: Link) -> None:
        """Block while the proxy hangs (until restore(), a cut or stop)."""
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    self._mode is not Mode.HANG or link.closed.is_set() or self._stopped.is_set()
                )
            )
        if link.closed.is_set():
            raise Closed("connection cut")

    def _drop(self, link: Link, rule: Rule, request: Request) -> None:
        link.close()
        log.info("%s: dropped %s (%r)", self.name, request, rule)
        if rule.then_cut:
            self.cut()
        rule.fire(request)
