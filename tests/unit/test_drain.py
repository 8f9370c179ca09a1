"""The drain's rule (deployer/rollout/drain.py) on a fake clock, with fake connection sources
and nginx workers; then the drain steps a deployment records (fake engine and nginx)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from ipaddress import IPv4Address

import pytest
from flask import Flask

from deployer.backends.base import ContainerInfo
from deployer.config import Config
from deployer.connection_sources import Source
from deployer.connections import ESTABLISHED, Endpoint, Socket
from deployer.models import DeploymentState, utc_now
from deployer.nginx_workers import InFlight
from deployer.rollout.drain import MAX_POLL, POLL, QUIET, Drain
from deployer.runtime import Runtime
from tests.conftest import SERVICES, WEB_IMAGE, make_config
from tests.fakes import FakeBackend
from tests.helpers import deploy, finished, kill_when_step_starts, new_deployment

LOCALHOST = IPv4Address("127.0.0.1")
CAP = 5.0
V1 = "sha256:" + "1" * 64
V2 = "sha256:" + "2" * 64


class FakeClock:
    """Time moves only when the drain waits (or a read costs time); deployer stops at
    `stop_at`."""

    def __init__(self, stop_at: float | None = None) -> None:
        self.time = 100.0
        self.stop_at = None if stop_at is None else self.time + stop_at

    def now(self) -> float:
        return self.time

    def wait(self, seconds: float) -> bool:
        assert seconds >= 0
        self.time += seconds
        return self.stop_at is not None and self.time >= self.stop_at


def container(name: str = "web-3", port: int = 18001) -> ContainerInfo:
    return ContainerInfo(
        id=name,
        name=name,
        service="web",
        image=WEB_IMAGE,
        digest=V1,
        deployment="3",
        address=f"127.0.0.1:{port}",
        status="running",
        health=None,
        started_at=None,
    )


def open_from(client_port: int) -> Socket:
    """A connection to web-3 from nginx's port `client_port`."""
    return Socket(LOCALHOST, 18001, LOCALHOST, client_port, ESTABLISHED)


class Connections:
    """web-3's connections as a function of the clock's time since the drain began; each
    read costs `cost` seconds and is counted."""

    def __init__(
        self, clock: FakeClock, at: Callable[[float], set[Socket]], cost: float = 0.0
    ) -> None:
        self.clock, self.at, self.cost, self.reads = clock, at, cost, 0
        self.began = clock.time

    def read(self) -> list[Socket]:
        self.reads += 1
        found = sorted(self.at(self.clock.time - self.began), key=lambda s: s.remote_port)
        self.clock.time += self.cost
        return found

    def watch(self, old: ContainerInfo) -> Source:
        return Source(old.name, Endpoint(LOCALHOST, 18001), "(test)", self.read)


def no_pid_file() -> InFlight | None:
    return None


def waited(detail: str, pattern: str = r"after ([0-9.]+) s") -> float:
    found = re.search(pattern, detail)
    assert found is not None, detail
    return float(found[1])


def drain(
    at: Callable[[float], set[Socket]], clock: FakeClock | None = None, cost: float = 0.0
) -> tuple[str, float, Connections]:
    """Run a drain of web-3 by connections; its detail, how long it took, the source."""
    clock = clock or FakeClock()
    connections = Connections(clock, at, cost)
    began = clock.time
    detail = Drain([container()], CAP, clock, connections.watch).run(no_pid_file)
    return detail, clock.time - began, connections


def test_no_connection_at_all_waits_the_quiet_window_then_retires() -> None:
    detail, took, _ = drain(lambda t: set())

    assert detail == f"no connection to web-3 (127.0.0.1:18001) after {took:.2f} s (none seen)"
    assert QUIET <= took < QUIET + POLL  # a zero right after the switch is not enough


def test_a_long_request_keeps_it_and_it_retires_right_after_it_ends() -> None:
    detail, took, _ = drain(lambda t: {open_from(40000)} if t < 1.5 else set())

    assert 1.5 <= took < 1.5 + POLL + 1e-9  # not another quiet window after it
    assert detail == (
        f"no connection to web-3 (127.0.0.1:18001) after {took:.2f} s "
        f"(1 seen, none new for {took:.2f} s)"
    )


def test_new_connections_restart_the_quiet_window() -> None:
    # nginx applied the reload late: its old workers kept opening connections for 1 s, one
    # every 0.1 s (the last one at 0.9 s).
    def at(t: float) -> set[Socket]:
        return {open_from(40000 + int(t / 0.1))} if t < 1.0 else set()

    detail, took, _ = drain(at)

    assert 0.9 + QUIET <= took < 0.9 + QUIET + POLL
    assert re.fullmatch(
        r"no connection to web-3 \(127\.0\.0\.1:18001\) after [0-9.]+ s \(10 seen, none new "
        r"for 1\.0\d s\)",
        detail,
    ), detail


def test_a_connection_that_never_closes_is_cut_at_the_cap() -> None:
    detail, took, _ = drain(lambda t: {open_from(40000), open_from(40001)})

    assert took == pytest.approx(CAP)
    assert detail == (
        "2 connection(s) to web-3 (127.0.0.1:18001) still open after the 5 s drain: retired anyway"
    )


def test_a_new_connection_just_before_the_cap_is_said() -> None:
    # A new short request every 0.25 s, up to the end; none in flight at the cap itself.
    def at(t: float) -> set[Socket]:
        return {open_from(40000 + int(t / 0.25))} if 0.1 <= t % 0.25 < 0.15 else set()

    detail, took, _ = drain(at)

    assert took == pytest.approx(CAP)
    assert re.fullmatch(
        r"no connection to web-3 \(127\.0\.0\.1:18001\) open after the 5 s drain, but none new "
        r"for only 0\.\d+ s \(less than 1 s\): retired anyway",
        detail,
    ), detail


def test_a_stop_cuts_it_short() -> None:
    detail, took, _ = drain(lambda t: {open_from(40000)}, FakeClock(stop_at=1.0))

    assert detail == "web-3: drain cut short, deployer is stopping"
    assert took == pytest.approx(1.0, abs=POLL)


def test_slow_reads_are_made_less_often() -> None:
    # Each read costs 0.05 s (a /proc/net/tcp swollen by TIME-WAIT sockets): a look every
    # 0.2 s, not every 0.025 s.
    _, took, connections = drain(lambda t: {open_from(40000)} if t < 2 else set(), cost=0.05)

    assert 2 <= took <= 2 + MAX_POLL + 0.05
    assert connections.reads <= 2 / 0.25 + 2


def test_connections_that_cannot_be_read_leave_the_fixed_drain() -> None:
    clock = FakeClock()

    detail = Drain([container()], CAP, clock, lambda old: "why not").run(no_pid_file)

    assert detail == "could not read connections (why not): waited the full 5 s"
    assert clock.time == pytest.approx(100 + CAP)


def test_a_read_that_fails_midway_leaves_the_rest_of_the_cap() -> None:
    clock = FakeClock()

    def read() -> list[Socket]:
        if clock.time >= 101:
            raise FileNotFoundError(2, "No such file or directory")
        return [open_from(40000)]

    def watch(old: ContainerInfo) -> Source:
        return Source(old.name, Endpoint(LOCALHOST, 18001), "(test)", read)

    detail = Drain([container()], CAP, clock, watch).run(no_pid_file)

    assert re.fullmatch(
        r"could not read connections to web-3 \(127\.0\.0\.1:18001\) after 1\.0\d s \(\[Errno 2\] "
        r"No such file or directory\): waited the full 5 s",
        detail,
    ), detail
    assert clock.time == pytest.approx(100 + CAP)


def test_every_old_replica_is_watched() -> None:
    clock = FakeClock()
    replicas = [container("web-3-1", 18001), container("web-3-2", 18002)]

    def watch(old: ContainerInfo) -> Source:
        port = int(old.address.rsplit(":", 1)[1])

        def read() -> list[Socket]:  # web-3-2's request takes 2 s
            busy = port == 18002 and clock.time < 102
            return [Socket(LOCALHOST, port, LOCALHOST, 40000, ESTABLISHED)] if busy else []

        return Source(old.name, Endpoint(LOCALHOST, port), "(test)", read)

    detail = Drain(replicas, CAP, clock, watch).run(no_pid_file)

    assert detail.startswith(
        "no connection to web-3-1 (127.0.0.1:18001), web-3-2 (127.0.0.1:18002) after 2.0"
    )


def test_a_drain_of_zero_seconds_looks_once_and_retires() -> None:
    clock = FakeClock()
    connections = Connections(clock, lambda t: set())

    detail = Drain([container()], 0, clock, connections.watch).run(no_pid_file)

    assert detail == (
        f"no connection to web-3 (127.0.0.1:18001) in the 0 s drain (shorter than the {QUIET:g} s "
        "that show nginx sends no more): retired anyway"
    )
    assert (clock.time, connections.reads) == (100, 1)


def test_nothing_left_to_drain_is_done_at_once() -> None:
    clock = FakeClock()

    assert Drain([], CAP, clock, lambda old: "unused").run(no_pid_file) == (
        "nothing to drain: no old container is left"
    )
    assert clock.time == 100


class Workers:
    """nginx's workers from before the switch: alive until `exit_at` seconds."""

    def __init__(self, clock: FakeClock, exit_at: float) -> None:
        self.clock, self.exit_at, self.began = clock, exit_at, clock.time

    def __call__(self) -> InFlight:
        alive = self.clock.time - self.began < self.exit_at
        return InFlight((101, 102) if alive else ())


def test_with_nginxs_workers_watched_their_exit_ends_it_not_a_zero_count() -> None:
    # A worker still reading a slow upload has no connection to the old app yet: zero
    # connections for 2 s prove nothing while it lives.
    clock = FakeClock()
    connections = Connections(clock, lambda t: set())

    detail = Drain([container()], CAP, clock, connections.watch).run(Workers(clock, 2.0))

    assert clock.time - 100 == pytest.approx(2.0, abs=POLL)
    assert re.fullmatch(
        r"web-3 had no request in flight after 2\.0\d s: no nginx worker from before the switch "
        r"is left",
        detail,
    ), detail
    assert connections.reads == 0  # nothing read while the workers tell


def test_with_nginxs_workers_at_the_cap_the_open_connections_are_said() -> None:
    clock = FakeClock()
    connections = Connections(clock, lambda t: {open_from(40000)})

    detail = Drain([container()], CAP, clock, connections.watch).run(Workers(clock, 60))

    assert detail == (
        "web-3 still had 2 nginx worker(s) from before the switch still finishing requests and "
        "connection(s) open: 1 to web-3 (127.0.0.1:18001) after the 5 s drain: retired anyway"
    )


def test_a_pid_file_that_cannot_be_read_any_more_leaves_the_fixed_drain() -> None:
    clock = FakeClock()
    answers = iter([InFlight((101,)), None])

    detail = Drain([container()], CAP, clock, lambda old: "unused").run(lambda: next(answers))

    assert detail == ("nginx's workers could not be watched any more (0.03 s): waited the full 5 s")
    assert clock.time == pytest.approx(100 + CAP)


# The drain steps a deployment records (fake engine: backend.connection_counts).

DRAINING = {name: {**service, "drain": CAP} for name, service in SERVICES.items()}


@pytest.fixture
def draining(tmp_path: object) -> Config:
    return make_config(tmp_path, services=DRAINING)  # type: ignore[arg-type]


def test_a_deployment_retires_the_old_container_once_its_last_connection_closed(
    make_app: Callable[..., Flask], draining: Config, backend: FakeBackend
) -> None:
    runtime: Runtime = make_app(draining).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    old = deploy(runtime)
    backend.connection_counts[f"{old.container}"] = [1] * 16 + [0]  # 16 reads: about 0.4 s
    backend.push(WEB_IMAGE, "latest", V2)

    new = deploy(runtime)

    step = new.steps[-2]
    assert (new.state, step.name) == (DeploymentState.SUCCEEDED, "drain")
    assert re.fullmatch(
        rf"no connection to {old.container} \(127\.0\.0\.1:18000\) after [0-9.]+ s \(1 seen, "
        r"none new for [0-9.]+ s\)",
        step.detail,
    ), step.detail
    assert QUIET <= waited(step.detail) < 2  # the connection, not the 5 s cap


def test_a_resumed_drain_watches_the_connections_too(
    make_app: Callable[..., Flask], draining: Config, backend: FakeBackend
) -> None:
    first: Runtime = make_app(draining).extensions["deployer"]
    backend.push(WEB_IMAGE, "latest", V1)
    old = deploy(first)
    backend.connection_counts[f"{old.container}"] = [0]
    backend.push(WEB_IMAGE, "latest", V2)
    interrupted = new_deployment(first)
    kill_when_step_starts(first, interrupted, "drain")

    second: Runtime = make_app(draining).extensions["deployer"]
    second.start()
    resumed = finished(second, interrupted.id)

    drain_step = resumed.steps[-2]
    assert resumed.state is DeploymentState.SUCCEEDED
    assert drain_step.name == "drain"
    assert re.fullmatch(
        rf"resumed after deployer restarted: no connection to {old.container} "
        r"\(127\.0\.0\.1:18000\) after 1\.0\d s \(none seen\)",
        drain_step.detail,
    ), drain_step.detail
    assert drain_step.finished_at is not None
    assert drain_step.started_at is not None
    assert drain_step.finished_at - drain_step.started_at < timedelta(seconds=2)
    assert utc_now() - resumed.finished_at < timedelta(seconds=10)  # type: ignore[operator]
