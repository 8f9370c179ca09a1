"""One client connection of a sandbox proxy: each HTTP request relayed under the proxy's faults.

The proxy (deployer/sandbox/proxy.py) accepts; a Connection then reads request after request
from its client, asks the proxy what to do with each (record it, match the rules, wait out a
hang or a delay, drop it), relays it to its own upstream connection and relays the answer back
(deployer/sandbox/http_relay.py). Non-HTTP bytes (the engine's TLS probe of a registry) are
relayed untouched; so are the raw streams after a `101` (docker's hijacked attach/exec).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Protocol

from deployer.sandbox.faults import Action, Request, Rule
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


class Faults(Protocol):
    """What a connection asks of its proxy (HttpProxy)."""

    name: str

    def path_of(self, target: str) -> str: ...
    def connect_upstream(self) -> socket.socket: ...
    def match(self, request: Request) -> Rule | None: ...
    def may_forward(self, connection: Connection, rule: Rule | None, request: Request) -> bool: ...
    def pass_gate(self, connection: Connection) -> None: ...
    def drop_connection(self, connection: Connection, rule: Rule, request: Request) -> None: ...
    def forget(self, connection: Connection) -> None: ...


class Connection:
    """A client connection and its upstream connection, served by one thread."""

    def __init__(self, client: socket.socket, proxy: Faults) -> None:
        self.client = client
        self.proxy = proxy
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

    def serve(self) -> None:
        """Relay until either side closes or the proxy cuts the connection."""
        client = Reader(self.client)
        try:
            if client.peek()[:1].isupper():
                while self._exchange(client):
                    pass
            elif client.buffer:  # not HTTP (the engine tries TLS first): relay it untouched
                self._pipe_raw(client)
        except (Closed, OSError, ValueError) as err:
            log.debug("%s: connection ended: %s", self.proxy.name, err)
        finally:
            self.close()
            self.proxy.forget(self)

    def _exchange(self, client: Reader) -> bool:
        """Relay one request and its answer; False when the connection is done."""
        raw = client.head()
        if raw is None:
            return False
        head = parse_head(raw)
        method, target, _ = request_line(head)
        request = Request(method, target, self.proxy.path_of(target), time.time())
        rule = self.proxy.match(request)
        if not self.proxy.may_forward(self, rule, request):
            return False
        if rule is not None and rule.action is Action.DROP:
            self.proxy.drop_connection(self, rule, request)
            return False
        if head.has_token("expect", "100-continue"):
            self.client.sendall(CONTINUE)
            head = head.without("expect")
        upstream = self._upstream()
        upstream.sock.sendall(head.raw)
        relay_body(client, *request_framing(head), upstream.sock.sendall)
        response = self._response_head(upstream, method)
        request.status = status_code(response)
        if rule is not None and rule.action is Action.DROP_AFTER:
            self.proxy.drop_connection(self, rule, request)
            return False
        self._send_down(response.raw)
        framing, length = response_framing(response, method)
        if framing is Framing.RAW:
            pipe(client, upstream, self.client.sendall, self._send_down, self.closed.is_set)
            return False
        relay_body(upstream, framing, length, self._send_down)
        return framing is not Framing.UNTIL_CLOSE and keeps_alive(head) and keeps_alive(response)

    def _send_down(self, data: bytes) -> None:
        """To the client, unless the proxy hangs (then wait until it no longer does)."""
        self.proxy.pass_gate(self)
        self.client.sendall(data)

    def _pipe_raw(self, client: Reader) -> None:
        self.proxy.pass_gate(self)
        upstream = self._upstream()
        pipe(client, upstream, self.client.sendall, self._send_down, self.closed.is_set)

    def _upstream(self) -> Reader:
        if self.upstream_reader is None:
            self.upstream = self.proxy.connect_upstream()
            if self.closed.is_set():  # cut while connecting
                self.upstream.close()
                raise Closed("cut while connecting upstream")
            self.upstream_reader = Reader(self.upstream)
        return self.upstream_reader

    def _response_head(self, upstream: Reader, method: str) -> Head:
        """The final response head; interim 1xx answers (not 101) are relayed on the way."""
        while True:
            raw = upstream.head()
            if raw is None:
                raise Closed(f"{self.proxy.name}: upstream closed before answering {method}")
            head = parse_head(raw)
            status = status_code(head)
            if 100 <= status < 200 and status != 101:
                self.client.sendall(head.raw)
                continue
            return head
