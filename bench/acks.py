"""Webhook requests timed from connect to the last byte of the answer, and a probe thread.

http.client on a fresh connection per request (as a registry sends them), so the time is the
stack's answer plus a loopback connect, without a client library's overhead.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from deployer.sandbox.net import LOOPBACK


@dataclass(frozen=True)
class Probe:
    """A webhook request that the stack authenticates and parses but that deploys nothing."""

    url: str
    body: bytes
    status: int  # the answer that means "accepted and ignored"


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes, float]:
    """POST a JSON body to a loopback URL: (status, answer body, seconds until answered)."""
    parts = urllib.parse.urlsplit(url)
    if parts.hostname != LOOPBACK or parts.port is None:
        raise ValueError(f"benchmark traffic stays on loopback, refused {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    began = time.perf_counter()
    connection = http.client.HTTPConnection(LOOPBACK, parts.port, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        data = answer.read()
    finally:
        connection.close()
    return answer.status, data, time.perf_counter() - began


@dataclass
class Prober:
    """Sends the probe every `interval` seconds from start() to stop(); keeps each latency.

    With no probe (a stack without a webhook) it sends nothing.
    """

    probe: Probe | None
    interval: float = 0.02
    answered: list[tuple[float, float]] = field(default_factory=list)  # (sent epoch, seconds)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Prober:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self

    def _run(self) -> None:
        if self.probe is None:
            return
        while not self._stop.wait(self.interval):
            sent = time.time()
            try:
                status, _, seconds = post(self.probe.url, self.probe.body)
            except OSError:
                self.failures += 1
                continue
            if status == self.probe.status:
                self.answered.append((sent, seconds))
            else:
                self.failures += 1


def latencies_between(
    answered: list[tuple[float, float]], first: float, last: float
) -> list[float]:
    """The latencies of the probes sent from `first` to `last` (pure)."""
    return [seconds for sent, seconds in answered if first <= sent <= last]
