"""Recorded Swarm update sequences (tests/payloads/swarm/*.json), parsed for the unit tests.

Recorded on the sandbox engine by tests/payloads/swarm/record.py: raw `docker service inspect`
and task JSON at monotonic times. Shared by the judge, watcher and parser tests (house style:
helpers here, never imported from a test module).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from deployer.backends.swarm_api import parse_service, parse_task
from deployer.rollout.converge import Observation, Verdict, judge

RECORDINGS = Path(__file__).parent / "payloads" / "swarm"


@dataclass(frozen=True)
class Recording:
    """One recorded deployment: target digest, monitor window, `since`, what was seen."""

    scenario: str
    target: str
    window: float
    since: datetime
    observations: tuple[Observation, ...]
    raw: dict[str, Any]

    def at(self, seconds: float) -> tuple[Observation, ...]:
        """The observations up to and including `seconds`."""
        return tuple(seen for seen in self.observations if seen.at <= seconds)

    def verdicts(self, deadline: float = math.inf) -> list[Verdict]:
        """The judge's verdict after each observation, as a watcher would have seen them."""
        return [
            judge(self.observations[: index + 1], self.target, self.window, deadline, self.since)
            for index in range(len(self.observations))
        ]

    def first_finished(self, deadline: float = math.inf) -> tuple[float, Verdict]:
        """When (observation time) the judge first decided, and what."""
        for seen, verdict in zip(self.observations, self.verdicts(deadline), strict=True):
            if verdict.finished:
                return seen.at, verdict
        raise AssertionError(f"{self.scenario}: the judge never decided")


@cache
def load(scenario: str) -> Recording:
    """Parse tests/payloads/swarm/<scenario>.json."""
    raw = json.loads((RECORDINGS / f"{scenario}.json").read_text())
    parsed = [
        Observation(
            seen["at"],
            parse_service(seen["service"]),
            tuple(parse_task(task, seen["nodes"]) for task in seen["tasks"]),
        )
        for seen in raw["observations"]
    ]
    # The CLI writes asynchronously: what was seen before its write landed (the previous
    # update's spec and status) is not part of this deployment. deployer watches only after
    # its own write returned.
    written = next(
        index
        for index, seen in enumerate(parsed)
        if seen.service is not None and seen.service.digest == raw["target"]
    )
    observations = tuple(parsed[written:])
    return Recording(
        scenario,
        raw["target"],
        raw["window"],
        datetime.fromisoformat(raw["since"]),
        observations,
        raw,
    )
