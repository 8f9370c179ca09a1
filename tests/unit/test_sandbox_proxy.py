"""The sandbox proxy's HTTP relay and rules, against an in-process stdlib HTTP server."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from deployer.sandbox import TcpProxy
from deployer.sandbox.faults import Action, Rule
from deployer.sandbox.http_relay import Framing, parse_head, response_framing


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers by path: /length, /chunked, /empty (204), /close (body until close), /echo."""

    protocol_version = "HTTP/1.1"
    seen: list[str]  # set per server, shared by its handlers

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.seen.append(f"HEAD {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()

    def do_GET(self) -> None:
        self.seen.append(f"GET {self.path}")
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"one ", b"two"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif self.path == "/empty":
            self.send_response(204)
            self.end_headers()
        elif self.path == "/close":
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"until close")
            self.close_connection = True
        else:
            self._answer(b"hello")

    def do_POST(self) -> None:
        self.seen.append(f"POST {self.path}")
        if self.headers.get("Transfer-Encoding") == "chunked":
            body = b""
            while (size := int(self.rfile.readline().strip(), 16)) > 0:
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(b"got " + body)

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Recording", (Handler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: tuple[str, list[str]]) -> Iterator[TcpProxy]:
    with TcpProxy(upstream[0]) as running:
        yield running


def connect(proxy: TcpProxy) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)


def test_sequential_requests_on_one_keep_alive_connection_are_each_relayed_and_recorded(
    proxy: TcpProxy, upstream: tuple[str, list[str]]
) -> None:
    connection = connect(proxy)
    answers = []
    for method, path, body in [
        ("GET", "/length?x=1", None),
        ("HEAD", "/length", None),
        ("GET", "/chunked", None),
        ("GET", "/empty", None),
        ("POST", "/echo", b"payload"),
        ("GET", "/close", None),
    ]:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        answers.append((response.status, response.read()))
    connection.close()

    assert answers == [
        (200, b"hello"),
        (200, b""),
        (200, b"one two"),
        (204, b""),
        (200, b"got payload"),
        (200, b"until close"),
    ]
    assert [str(request) for request in proxy.requests()] == [
        "GET /length?x=1 -> 200",
        "HEAD /length -> 200",
        "GET /chunked -> 200",
        "GET /empty -> 204",
        "POST /echo -> 200",
        "GET /close -> 200",
    ]
    assert proxy.requests("GET", "/length")[0].target == "/length?x=1"
    assert len(upstream[1]) == 6


def test_chunked_and_expect_continue_request_bodies_are_relayed(proxy: TcpProxy) -> None:
    connection = connect(proxy)
    connection.request("POST", "/echo", body=iter([b"in ", b"chunks"]))
    chunked = connection.getresponse().read()
    connection.request("POST", "/echo", body=b"after 100", headers={"Expect": "100-continue"})
    continued = connection.getresponse().read()
    connection.close()

    assert chunked == b"got in chunks"
    assert continued == b"got after 100"


def test_drop_never_forwards_and_drop_after_forwards_but_never_answers(
    proxy: TcpProxy, upstream: tuple[str, list[str]]
) -> None:
    dropped = proxy.drop("POST", "/echo", times=1)
    after = proxy.drop_after("GET", "/length", times=1)
    outcomes = []
    for method, path in [("POST", "/echo"), ("GET", "/length"), ("GET", "/length")]:
        connection = connect(proxy)
        try:
            connection.request(method, path, body=b"x" if method == "POST" else None)
            outcomes.append(connection.getresponse().read())
        except (http.client.RemoteDisconnected, ConnectionError) as err:
            outcomes.append(type(err).__name__.encode())
        connection.close()

    assert outcomes == [b"RemoteDisconnected", b"RemoteDisconnected", b"hello"]
    assert upstream[1] == ["GET /length", "GET /length"]  # the dropped POST never arrived
    assert dropped.wait(1).path == "/echo"
    assert after.wait(1).status == 200
    assert [request.action for request in proxy.requests()] == [
        Action.DROP,
        Action.DROP_AFTER,
        None,
    ]


def test_cut_refuses_until_restore_and_hang_holds_until_restore(proxy: TcpProxy) -> None:
    proxy.cut()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    proxy.restore()
    proxy.hang()
    answers: list[bytes] = []

    def get() -> None:
        connection = connect(proxy)
        connection.request("GET", "/length")
        answers.append(connection.getresponse().read())
        connection.close()

    caller = threading.Thread(target=get)
    caller.start()
    proxy.wait_for_request("GET", "/length", timeout=2)
    time.sleep(0.2)
    hung = caller.is_alive()
    proxy.restore()
    caller.join(2)

    assert hung
    assert answers == [b"hello"]


def test_a_cut_during_a_delay_drops_the_request_instead_of_forwarding_it(
    proxy: TcpProxy, upstream: tuple[str, list[str]]
) -> None:
    delayed = proxy.delay(5, "GET", "/length")
    errors: list[str] = []

    def get() -> None:
        connection = connect(proxy)
        try:
            connection.request("GET", "/length")
            connection.getresponse().read()
        except (http.client.HTTPException, ConnectionError) as err:
            errors.append(type(err).__name__)
        connection.close()

    caller = threading.Thread(target=get)
    caller.start()
    delayed.wait(2)
    proxy.cut()
    caller.join(2)

    assert errors == ["RemoteDisconnected"]
    assert upstream[1] == []


def test_a_held_request_is_still_forwarded_when_released_after_its_client_went_away(
    proxy: TcpProxy, upstream: tuple[str, list[str]]
) -> None:
    held = proxy.hold("GET", "/length")
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    client.sendall(b"GET /length HTTP/1.1\r\nHost: x\r\n\r\n")
    held.wait(2)
    client.close()  # the caller dies while the request is held

    held.release()
    deadline = time.monotonic() + 2
    while not upstream[1] and time.monotonic() < deadline:
        time.sleep(0.01)

    assert upstream[1] == ["GET /length"]


def test_rules_reject_what_they_cannot_do() -> None:
    with pytest.raises(ValueError, match="then_cut applies to DROP and DROP_AFTER"):
        Rule(Action.DELAY, seconds=1, then_cut=True)
    with pytest.raises(ValueError, match="times must be 1 or more"):
        Rule(Action.DROP, times=0)


@pytest.mark.parametrize(
    ("head", "method", "expected"),
    [
        (b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\n\r\n", "POST", (Framing.RAW, 0)),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", (Framing.NONE, 0)),
        (b"HTTP/1.1 304 Not Modified\r\n\r\n", "GET", (Framing.NONE, 0)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", (Framing.CHUNKED, 0)),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n", "GET", (Framing.LENGTH, 12)),
        (b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n", "GET", (Framing.UNTIL_CLOSE, 0)),
    ],
)
def test_response_framing(head: bytes, method: str, expected: tuple[Framing, int]) -> None:
    assert response_framing(parse_head(head), method) == expected
