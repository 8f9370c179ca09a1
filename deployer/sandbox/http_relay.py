"""HTTP/1.1 framing for the sandbox proxies: read one message head, relay its body as raw bytes.

Just enough of RFC 9112 to follow sequential requests on a keep-alive connection: a body is
Content-Length bytes, chunked (relayed chunk by chunk, trailers included), nothing (HEAD, 1xx,
204, 304), or everything until the peer closes. A `101 Switching Protocols` answer (docker's
hijacked attach/exec streams) turns the connection into a raw two-way pipe. Bytes are relayed
as they came; only an `Expect: 100-continue` request header is answered by the proxy itself.
"""

from __future__ import annotations

import enum
import select
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
PIECE = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Closed(Exception):
    """The peer closed the connection (or it was cut) in the middle of a message."""


class Framing(enum.Enum):
    """How the body of one message ends."""

    NONE = "none"
    LENGTH = "length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"
    RAW = "raw"  # after 101: a two-way byte pipe until both sides close


class Reader:
    """Buffered reads from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def recv(self) -> bytes:
        """Buffered bytes if any, else one recv (b'' at end of stream)."""
        if self.buffer:
            data = bytes(self.buffer)
            self.buffer.clear()
            return data
        try:
            return self.sock.recv(PIECE)
        except OSError:
            return b""

    def peek(self) -> bytes:
        """The buffered bytes, reading once if there are none (b'' at end of stream)."""
        if not self.buffer:
            self._more()
        return bytes(self.buffer)

    def head(self) -> bytes | None:
        """Bytes through the blank line ending a head; None at end of stream before any byte."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > MAX_HEAD:
                raise Closed(f"no end of HTTP head within {MAX_HEAD} bytes")
            data = self._more()
            if not data:
                if self.buffer.strip():
                    raise Closed("connection closed in the middle of an HTTP head")
                return None
        head = bytes(self.buffer[: end + 4])
        del self.buffer[: end + 4]
        return head

    def line(self) -> bytes:
        """Bytes through the next CRLF."""
        while (end := self.buffer.find(b"\r\n")) < 0:
            if not self._more():
                raise Closed("connection closed in the middle of a chunked body")
        line = bytes(self.buffer[: end + 2])
        del self.buffer[: end + 2]
        return line

    def take(self, count: int) -> Iterator[bytes]:
        """Exactly count bytes, in pieces."""
        while count > 0:
            data = self.recv()
            if not data:
                raise Closed(f"connection closed with {count} bytes of a body still to come")
            if len(data) > count:
                self.buffer[:0] = data[count:]
                data = data[:count]
            count -= len(data)
            yield data

    def _more(self) -> bytes:
        try:
            data = self.sock.recv(PIECE)
        except OSError:
            data = b""
        self.buffer += data
        return data


@dataclass(frozen=True)
class Head:
    """One parsed message head; `raw` is what goes on the wire."""

    raw: bytes
    start: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The last value of a header (case-insensitive name), or None."""
        found = [value for key, value in self.headers if key.lower() == name.lower()]
        return found[-1] if found else None

    def has_token(self, name: str, token: str) -> bool:
        """True when a comma-separated header (e.g. Connection) lists token."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        tokens = {part.strip().lower() for value in values for part in value.split(",")}
        return token.lower() in tokens

    def without(self, name: str) -> Head:
        """The same head with every `name` header removed."""
        kept = tuple((key, value) for key, value in self.headers if key.lower() != name.lower())
        lines = [self.start, *(f"{key}: {value}" for key, value in kept)]
        return Head(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), self.start, kept)


def parse_head(raw: bytes) -> Head:
    """Parse a head read by Reader.head()."""
    lines = raw.decode("latin-1").split("\r\n")
    headers = tuple(
        (key.strip(), value.strip())
        for key, sep, value in (line.partition(":") for line in lines[1:] if line)
        if sep
    )
    return Head(raw, lines[0], headers)


def request_line(head: Head) -> tuple[str, str, str]:
    """(method, request-target, version) of a request head."""
    parts = head.start.split(" ")
    if len(parts) != 3:
        raise Closed(f"not an HTTP request line: {head.start[:80]!r}")
    return parts[0], parts[1], parts[2]


def status_code(head: Head) -> int:
    """The status code of a response head."""
    parts = head.start.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise Closed(f"not an HTTP status line: {head.start[:80]!r}")
    return int(parts[1])


def request_framing(head: Head) -> tuple[Framing, int]:
    """How a request's body ends (requests without either header have none)."""
    if head.has_token("transfer-encoding", "chunked"):
        return Framing.CHUNKED, 0
    length = head.header("content-length")
    return (Framing.LENGTH, int(length)) if length else (Framing.NONE, 0)


def response_framing(head: Head, method: str) -> tuple[Framing, int]:
    """How a response's body ends, given the request method it answers."""
    status = status_code(head)
    if status == 101:
        return Framing.RAW, 0
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Framing.NONE, 0
    if head.has_token("transfer-encoding", "chunked"):
        return Framing.CHUNKED, 0
    length = head.header("content-length")
    if length is not None:
        return Framing.LENGTH, int(length)
    return Framing.UNTIL_CLOSE, 0


def keeps_alive(head: Head) -> bool:
    """False when a message asks to close the connection after it."""
    if head.has_token("connection", "close"):
        return False
    version = head.start.split(" ")[0] if head.start.startswith("HTTP/") else head.start[-8:]
    return version != "HTTP/1.0" or head.has_token("connection", "keep-alive")


def relay_body(
    reader: Reader, framing: Framing, length: int, send: Callable[[bytes], None]
) -> None:
    """Relay one body (not RAW) from reader to send, byte for byte."""
    if framing is Framing.LENGTH:
        for piece in reader.take(length):
            send(piece)
    elif framing is Framing.CHUNKED:
        _relay_chunks(reader, send)
    elif framing is Framing.UNTIL_CLOSE:
        while data := reader.recv():
            send(data)


def _relay_chunks(reader: Reader, send: Callable[[bytes], None]) -> None:
    while True:
        size_line = reader.line()
        send(size_line)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while (trailer := reader.line()) != b"\r\n":
                send(trailer)
            send(trailer)
            return
        for piece in reader.take(size + 2):  # the chunk and its CRLF
            send(piece)


def pipe(
    left: Reader,
    right: Reader,
    send_left: Callable[[bytes], None],
    send_right: Callable[[bytes], None],
    closed: Callable[[], bool],
) -> None:
    """Relay raw bytes both ways until both directions ended (or closed() turns true)."""
    flows = {left.sock: (left, send_right, right.sock), right.sock: (right, send_left, left.sock)}
    for reader, send, _ in flows.values():
        if reader.buffer:
            send(reader.recv())
    open_ends = dict(flows)
    while open_ends and not closed():
        try:
            ready, _, _ = select.select(list(open_ends), [], [], 0.2)
        except (OSError, ValueError):
            return
        for sock in ready:
            reader, send, other = open_ends[sock]
            data = reader.recv()
            if data:
                send(data)
                continue
            del open_ends[sock]
            try:  # half-close: the other side may still send (docker's CloseWrite on stdin)
                other.shutdown(socket.SHUT_WR)
            except OSError:
                return
