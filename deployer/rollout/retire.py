"""The end of a blue/green deployment, once nginx sends traffic to the new release: drain the
old containers (wait until nothing can send them a request any more, at most `drain`), then
stop and remove them. Also the same after a restart, for a deployment that had switched
(taken-over containers included).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from deployer.backends.base import ContainerInfo
from deployer.errors import ContainerMissing, DockerError, FinishLater
from deployer.models import DeploymentState, StepState, utc_now
from deployer.nginx_workers import Workers
from deployer.rollout.drain import Drain, StopClock

if TYPE_CHECKING:
    from deployer.rollout.bluegreen import BlueGreenRollout

STOP_POLL = 0.025  # seconds between two looks at the stopping containers
# Seconds a retire keeps waiting on `docker stop` once deployer is stopping: well inside its
# stop budget (cli.STOP_BUDGET), so the retire is recorded `interrupted`, never left `running`.
RETIRE_GRACE = 4.0


def finish_after_restart(rollout: BlueGreenRollout) -> DeploymentState:
    """A deployment that switched before deployer stopped: finish its drain and retire."""
    switched_at = rollout.deployment.switched_at
    assert switched_at is not None
    strategy, service = rollout.strategy, rollout.deployment.service
    serving = strategy.fleet.serving(service)
    keep = serving.ids if serving is not None else set()
    old = [
        container
        for container in strategy.backend.list_managed(strategy.config.instance)
        if container.service == service and container.id not in keep
    ]
    old += [container for container in taken_over(rollout) if container.id not in keep]
    elapsed = (utc_now() - switched_at).total_seconds()
    drain = max(0.0, rollout.service.drain - elapsed)
    retire(rollout, old, drain, replaced=None, resumed=True)
    return DeploymentState.SUCCEEDED


def taken_over(rollout: BlueGreenRollout) -> list[ContainerInfo]:
    """This service's containers taken over by `deployer adopt` (no labels: the store
    remembers them) that are still on the engine."""
    found = []
    store, backend = rollout.step.store, rollout.strategy.backend
    for remembered in store.adopted():
        if remembered.service != rollout.deployment.service:
            continue
        try:
            info = backend.inspect(remembered.id)
        except ContainerMissing:
            store.forget_adopted(remembered.id)
            continue
        found.append(replace(info, service=remembered.service, address=remembered.address))
    return found


def retire(
    rollout: BlueGreenRollout,
    old: list[ContainerInfo],
    drain: float,
    replaced: Workers | None,
    resumed: bool = False,
) -> None:
    """The drain and retire steps for `old`; FinishLater when deployer stops before the end."""
    stopping, names = rollout.strategy.stopping, ", ".join(c.name for c in old) or "nothing"
    with rollout.step("drain", cancellable=False) as step:
        step.detail = ("resumed after deployer restarted: " if resumed else "") + (
            _drain(rollout, old, drain, replaced)
        )
        if stopping.is_set():
            step.state = StepState.INTERRUPTED
            step.detail = f"{names} kept serving; cut short: deployer is stopping"
    if stopping.is_set():
        raise FinishLater(
            f"deployer is stopping after the switch: {rollout.deployment.container} serves; "
            f"the next start drains and retires {names}"
        )
    with rollout.step("retire", cancellable=False) as step:
        failed, left = _stop_all(rollout, old)
        _forget_retired(rollout, old)
        if left:
            step.state = StepState.INTERRUPTED
            step.detail = (
                f"deployer is stopping: {', '.join(left)} still stopping after "
                f"{RETIRE_GRACE:g} s more; the next start finishes the retire"
            )
        elif failed:
            step.state = StepState.FAILED
            step.detail = (
                f"{'; '.join(failed)}; the new container serves; deployer removes the old "
                "one at the next deployment or start"
            )
        else:
            step.detail = f"stopped and removed {names}"
    if left:
        raise FinishLater(
            f"deployer is stopping during the retire: {rollout.deployment.container} serves; "
            f"the next start retires {', '.join(left)}"
        )


def _drain(
    rollout: BlueGreenRollout, old: list[ContainerInfo], cap: float, replaced: Workers | None
) -> str:
    """Wait until nothing can send a request to the old containers any more, at most `cap`
    seconds (deployer/rollout/drain.py: by nginx's workers, else by connections)."""
    strategy = rollout.strategy
    drain = Drain(old, cap, StopClock(strategy.stopping), strategy.watch)
    return drain.run(lambda: strategy.nginx.in_flight(replaced))


def _forget_retired(rollout: BlueGreenRollout, old: Sequence[ContainerInfo]) -> None:
    """Forget the taken-over containers among `old` that are gone from the engine now."""
    store = rollout.step.store
    retired = {container.id for container in old}
    for remembered in store.adopted():
        if remembered.id not in retired:
            continue
        try:
            rollout.strategy.backend.inspect(remembered.id)
        except ContainerMissing:
            store.forget_adopted(remembered.id)
        except DockerError:
            pass  # unknown: the next start forgets it if it is gone


def _stop_all(
    rollout: BlueGreenRollout, containers: Sequence[ContainerInfo]
) -> tuple[list[str], list[str]]:
    """Stop and remove containers at once (each gets its stop_timeout); what failed, and
    the names still stopping RETIRE_GRACE seconds after deployer began to stop (their
    stop_timeout may outlast deployer's stop budget: they are left to the next start)."""
    outcome: dict[str, str] = {}
    backend, stopping = rollout.strategy.backend, rollout.strategy.stopping

    def stop(container: ContainerInfo) -> None:
        try:
            backend.stop(container.id, rollout.service.stop_timeout)
        except DockerError as err:
            outcome[container.id] = f"{container.name}: {err}"
            return
        outcome[container.id] = ""

    # Daemon threads, not a pool: one still waiting on the engine must not hold the exit.
    threads = [
        threading.Thread(target=stop, args=(container,), name="retire", daemon=True)
        for container in containers
    ]
    for thread in threads:
        thread.start()
    cut_off: float | None = None
    while alive := [thread for thread in threads if thread.is_alive()]:
        if cut_off is None and stopping.is_set():
            cut_off = time.monotonic() + RETIRE_GRACE
        if cut_off is not None and time.monotonic() >= cut_off:
            break
        alive[0].join(STOP_POLL)
    failed = [outcome[c.id] for c in containers if outcome.get(c.id)]
    left = [c.name for c in containers if c.id not in outcome]
    return failed, left
