"""The test apps' fault behaviours: ignoring SIGTERM, and the slow endpoint."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from urllib.error import URLError

import pytest

from deployer.backends.base import LABEL_INSTANCE
from deployer.sandbox import SLOW_PATH, AppBehaviour, ImageFactory, Load
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import free_port, http_get, wait_for_http

pytestmark = pytest.mark.integration
STOP_TIMEOUT = 1


def run(image: PushedImage, instance: str) -> tuple[str, int]:
    """docker run the image on a free host port; return (container name, port)."""
    port = free_port()
    name = f"{instance}-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            *("docker", "run", "-d", "--name", name, "--network", "host"),
            *("--label", f"{LABEL_INSTANCE}={instance}", "-e", f"PORT={port}", image.reference),
        ],
        capture_output=True,
        check=True,
    )
    wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=10)
    return name, port


def test_an_app_ignoring_sigterm_serves_until_killed_after_the_stop_timeout(
    images: ImageFactory, instance: str
) -> None:
    name, port = run(images.build("stubborn", "v1", behaviour=AppBehaviour.IGNORE_TERM), instance)

    with Load(f"http://127.0.0.1:{port}/version", clients=1) as load:
        began = time.monotonic()
        subprocess.run(["docker", "stop", "-t", str(STOP_TIMEOUT), name], check=True)
        took = time.monotonic() - began
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.ExitCode}}", name],
        capture_output=True,
        text=True,
        check=True,
    )

    assert STOP_TIMEOUT - 0.2 <= took < STOP_TIMEOUT + 2
    assert state.stdout.strip() == "137"  # SIGKILL, not a clean exit on SIGTERM
    served = [answer.began - load.answers[0].began for answer in load.answers if answer.ok]
    assert served
    assert max(served) >= STOP_TIMEOUT - 0.3  # it answered through the whole stop window


def test_the_slow_endpoint_answers_after_its_delay(images: ImageFactory, instance: str) -> None:
    _, port = run(images.build("slow", "v1"), instance)
    answers: dict[str, tuple[tuple[int, str], float]] = {}

    def get(query: str) -> None:
        began = time.monotonic()
        answer = http_get(f"http://127.0.0.1:{port}{SLOW_PATH}{query}", timeout=5)
        answers[query] = (answer, time.monotonic() - began)

    callers = [threading.Thread(target=get, args=(query,)) for query in ("", "?0.3")]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(5)

    default, default_took = answers[""]
    short, short_took = answers["?0.3"]
    assert default == (200, "v1\n")
    assert 1.5 <= default_took < 2.5
    assert short == (200, "v1\n")
    assert 0.3 <= short_took < 1.0


def test_a_graceful_app_finishes_a_request_in_flight_at_sigterm_and_stops_listening(
    images: ImageFactory, instance: str
) -> None:
    name, port = run(images.build("graceful", "v1", behaviour=AppBehaviour.GRACEFUL), instance)
    answers: list[tuple[int, str]] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(http_get(f"http://127.0.0.1:{port}{SLOW_PATH}?0.3"))
    )
    in_flight.start()
    time.sleep(0.1)  # the request is in the app

    stopping = threading.Thread(target=subprocess.run, args=(["docker", "stop", name],))
    stopping.start()
    time.sleep(0.15)  # SIGTERM delivered: the listener is gone, the request still runs
    with pytest.raises(URLError, match="Connection refused"):
        http_get(f"http://127.0.0.1:{port}/version", timeout=1)
    in_flight.join(5)
    stopping.join(10)
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.ExitCode}}", name],
        capture_output=True,
        text=True,
        check=True,
    )

    assert answers == [(200, "v1\n")]
    assert state.stdout.strip() == "0"  # it exited by itself, not by SIGKILL


def test_the_usual_app_cuts_a_request_in_flight_at_sigterm(
    images: ImageFactory, instance: str
) -> None:
    """What GRACEFUL is for: the usual test app exits at once on SIGTERM (its shell is PID 1:
    the kernel ends httpd's children with it)."""
    name, port = run(images.build("abrupt", "v1"), instance)
    failures: list[str] = []

    def get() -> None:
        try:
            http_get(f"http://127.0.0.1:{port}{SLOW_PATH}?0.5", timeout=5)
        except OSError as err:
            failures.append(type(err).__name__)

    in_flight = threading.Thread(target=get)
    in_flight.start()
    time.sleep(0.1)
    subprocess.run(["docker", "stop", name], check=True, capture_output=True)
    in_flight.join(5)

    assert failures
