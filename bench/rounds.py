"""One measured deployment of a stack: push, load through nginx, trigger, wait, analyse.

A stack is whatever turns "a new image was pushed" into "nginx serves it": deployer, a
webhook-triggered script, docker-compose, or the bench's own floor. Every stack is measured by
the same round, with the same app, nginx setup and load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from bench.acks import Probe, Prober, latencies_between
from bench.load import Load, error_kinds, first_served, only_new_since
from deployer.sandbox import AppBehaviour, ImageFactory
from deployer.sandbox.images import PushedImage
from deployer.sandbox.net import http_get

WARMUP = 1.0  # load (and ack probes) run this long on the old version before the webhook
TAIL = 1.0  # and this long after the deployment finished and the new version was seen
ROUND_TIMEOUT = 120.0


@dataclass(frozen=True)
class Scenario:
    """What the pushed app does when it starts."""

    name: str
    behaviour: AppBehaviour
    delay: float = 0.0


@dataclass(frozen=True)
class Finish:
    """A deployment's end as the stack reports it: epoch seconds, state, timed parts."""

    finished: float
    state: str
    details: dict[str, float] = field(default_factory=dict)


class Stack(Protocol):
    """A deployment tool under test, with its own nginx server in front of its app."""

    name: str
    app: str  # its image's name in the registry (each stack has its own)

    def url(self) -> str:
        """GET /version through this stack's nginx."""
        ...

    def probe(self) -> Probe | None:
        """A webhook request that deploys nothing, to time acks during a deployment."""
        ...

    def trigger(self, label: str) -> float | None:
        """Send the push webhook for the image just pushed; the ack's seconds, if any."""
        ...

    def finish(self, label: str) -> Finish:
        """Wait until the deployment `label` triggered has finished."""
        ...


@dataclass
class RoundResult:
    """One deployment of one stack; times in seconds after the webhook was sent."""

    stack: str
    scenario: str
    version: str
    state: str
    ack: float | None
    served: float | None  # first request that got the new version began
    only_new: float | None  # every request from then on got the new version
    finished: float
    ok: int
    failed: int
    errors: list[str]
    probes: list[float]  # ack latencies during the deployment
    idle_probes: list[float]  # and under the same load before the webhook
    probe_failures: int
    details: dict[str, float]
    sent: float = 0.0  # the webhook, epoch seconds
    finished_at: float = 0.0  # the deployment's end as the stack reports it, epoch seconds
    answered: list[tuple[float, float]] = field(default_factory=list)  # every probe: sent, s


def push(images: ImageFactory, stack: Stack, version: str, scenario: Scenario) -> PushedImage:
    """Build and push `version` as the stack's `latest`; drop the local copy (a real pull)."""
    image = images.build(
        stack.app, version, scenario.behaviour, scenario.delay, healthcheck=False, tag="latest"
    )
    images.remove_local(image)
    return image


def set_up(stack: Stack, images: ImageFactory, version: str) -> None:
    """Deploy a first version without measuring, and wait until nginx serves it."""
    push(images, stack, version, Scenario("setup", AppBehaviour.SERVE))
    stack.trigger(f"setup-{version}")
    finish = stack.finish(f"setup-{version}")
    if finish.state != "succeeded":
        raise RuntimeError(f"{stack.name}: the first deployment ended {finish.state}")
    wait_for_version(stack.url(), version, timeout=30)


def wait_for_version(url: str, version: str, timeout: float) -> None:
    """Poll url until it answers `version`; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http_get(url, timeout=1)[1].strip() == version:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not serve {version} within {timeout:g} s")


def measure_round(
    stack: Stack,
    images: ImageFactory,
    scenario: Scenario,
    version: str,
    clients: int,
    nice: int = 0,
) -> RoundResult:
    """Push `version`, and under load (its process at `nice`) trigger and time its deployment."""
    push(images, stack, version, scenario)
    load = Load(stack.url(), clients, watch=version, nice=nice).start()
    prober = Prober(stack.probe()).start()
    try:
        time.sleep(WARMUP)
        sent = time.time()
        ack = stack.trigger(version)
        finish = stack.finish(version)
        prober.stop()
        load.wait_for_watched(ROUND_TIMEOUT)
        time.sleep(TAIL)
    finally:
        answers = load.stop()
        prober.stop()
    answered = prober.answered
    served = first_served(answers, version)
    only_new = only_new_since(answers, version)
    errors = error_kinds(answers)
    return RoundResult(
        stack=stack.name,
        scenario=scenario.name,
        version=version,
        state=finish.state,
        ack=ack,
        served=None if served is None else served - sent,
        only_new=None if only_new is None else only_new - sent,
        finished=finish.finished - sent,
        ok=sum(not answer.failed for answer in answers),
        failed=sum(answer.failed for answer in answers),
        errors=errors,
        probes=latencies_between(answered, sent, finish.finished),
        idle_probes=latencies_between(answered, 0.0, sent),
        probe_failures=prober.failures,
        details=finish.details,
        sent=sent,
        finished_at=finish.finished,
        answered=answered,
    )
