"""Watch a Swarm service converge: observe the engine, ask the judge, fetch failed tasks' logs.

The thin executor beside the pure judge (deployer/rollout/converge.py). It needs only the
`SwarmEngine` seam (the Swarm backend or a fake), the target digest, the window, and `since`;
so after a deployer restart the same call re-attaches to an update Swarm carried on with.

How a Swarm deployment uses these pieces (the strategy that wires them is the integrator's):

  resolve   SwarmBackend.resolve(image, tag) -> digest (the daemon no longer pins tags for
            current API versions); skipped when service(name).digest already is it.
  update    port = next_port(pool, state.port, ports_in_use(tasks)) (host networking:
            start-first cannot reuse a host port, moby#36934); nginx now lists BOTH the
            running port and the new one (see below); `since` = UTC now, stored with the
            deployment; SwarmBackend.apply(ServiceSpec) creates (first deployment), adopts
            (same name, no deployer.instance label) or updates; WriteResult.warnings go into
            the step detail.
  converge  watch(backend, Watch(name, digest, window=spec.update.monitor, timeout, since,
            settle=a few s)) -> Convergence; not succeeded: the deployment fails with
            Convergence.describe() (Swarm's state, each failed task's error and last lines).
  nginx     succeeded: the upstream lists only the new port. Failed: only state.port (the
            spec's port after Swarm's rollback, i.e. the old one). There is no drain/retire
            step: Swarm stops old tasks itself once their replacements run (stop grace period
            = the config's stop_timeout), and they linger ~2 s (moby's gossip delay) still
            answering, which covers nginx's reload.

nginx during the switch (host networking): one upstream with both 127.0.0.1:old and
127.0.0.1:new (node addresses for several nodes), `proxy_next_upstream error timeout` (the
default) so a connection refused by a port that is not listening yet, or no longer, is retried
on the other; a refused connect is never "sent", so non-idempotent requests are retried too.
The integration test checks that at every moment one of the two ports answers.

Production publish modes, instead of host networking + rotation: `ingress` (VIP routing mesh:
the published port belongs to the mesh, so start-first needs no rotation; nginx points at the
published port on any or every node; needs overlay networking and iptables, which the test
engine lacks), or `dnsrr` on an overlay network with nginx on that network resolving
`tasks.<service>` through Docker's DNS (127.0.0.11, short `valid=`). ServiceSpec has no
EndpointSpec yet: add `publish`/`endpoint_mode` there and in swarm_api when needed.

Use a HEALTHCHECK (ServiceSpec.healthcheck or the image's) with host networking: a task is
`starting` until it passes, so Swarm keeps the old task until the new one is healthy. Without
one, a release that dies right after starting was `running` for a moment: Swarm has told the
old task to stop, the old task still holds the old port for ~2 s, the rollback's task for the
old release cannot bind it, and the rollback pauses (recorded:
tests/payloads/swarm/update_exits_without_healthcheck_rollback_paused.json). Swarm's
orchestrator restarts the old release once the port is free; the judge reports the failure.

After a SIGKILL: on start, for a deployment left `running`, read service(name). If its spec
pins the target digest, call watch() again with the stored digest and `since` (the judge
works from the engine's state alone; its window restarts at the first new observation). If
it pins another digest and Swarm's state is no rollback, the write never landed: redo the
update (or fail it as interrupted). A rollback state: failed, with Swarm's reason. Then
render nginx from the outcome as above.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from deployer.backends.swarm_types import SwarmEngine, UpdateState
from deployer.errors import DeploymentCancelled, DockerError, ServiceError
from deployer.rollout.converge import Observation, Outcome, TaskFailure, Verdict, judge

MAX_LOGGED_TASKS = 3


@dataclass(frozen=True)
class Convergence:
    """The final verdict, the failed tasks' last log lines, and how long it took."""

    verdict: Verdict
    logs: tuple[tuple[TaskFailure, str], ...] = ()
    observations: int = 0
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.verdict.outcome is Outcome.SUCCEEDED

    def describe(self) -> str:
        """The reason, then each failed task's error and last log lines."""
        lines = [self.verdict.reason]
        logged = {failure.task_id: text for failure, text in self.logs}
        for failure in self.verdict.failures:
            lines.append(failure.describe())
            if failure.task_id in logged:
                lines.append(f"last log lines:\n{logged[failure.task_id]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Watch:
    """What to watch for: service name, target digest, window and timeout (seconds), since."""

    service: str
    target: str
    window: float
    timeout: float
    since: datetime | None = None
    interval: float = 0.5
    settle: float = 0.0  # after a failure in rollback_started: wait this long for the end


def watch(
    engine: SwarmEngine,
    spec: Watch,
    stopping: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Convergence:
    """Observe until the judge decides (and a rollback settles); raise if deployer stops."""
    stopping = stopping or threading.Event()
    started = clock()
    deadline = started + spec.timeout
    observations: list[Observation] = []
    settle_until = math.inf
    while True:
        try:
            seen = _observe(engine, spec.service, clock)
        except DockerError as err:
            # A manager election or a busy engine: Swarm carries on, and so do we until the
            # deadline.
            if clock() >= deadline:
                message = f"{err}; still failing at the deadline ({spec.timeout:g} s)"
                raise ServiceError(spec.service, message) from err
            verdict = Verdict(Outcome.PENDING, f"cannot read the service now: {err}")
        else:
            observations.append(seen)
            verdict = judge(observations, spec.target, spec.window, deadline, spec.since)
            if verdict.finished and not (_rolling_back(verdict) and spec.settle > 0):
                break
            if verdict.finished:  # Swarm is rolling back: wait a little to report its end
                settle_until = min(settle_until, seen.at + spec.settle)
                if seen.at >= settle_until:
                    break
        if stopping.wait(spec.interval):
            raise DeploymentCancelled(
                f"deployer is stopping while Swarm updates {spec.service} "
                f"(last seen: {verdict.reason}); Swarm carries on without deployer"
            )
    logs = tuple(
        (failure, engine.task_logs(task))
        for failure in verdict.failures[:MAX_LOGGED_TASKS]
        for task in observations[-1].tasks
        if task.id == failure.task_id
    )
    return Convergence(verdict, logs, len(observations), clock() - started)


def _observe(engine: SwarmEngine, name: str, clock: Callable[[], float]) -> Observation:
    service = engine.service(name)
    tasks = engine.tasks(service.id) if service is not None else []
    return Observation(clock(), service, tuple(tasks))


def _rolling_back(verdict: Verdict) -> bool:
    return verdict.update_state is UpdateState.ROLLBACK_STARTED
