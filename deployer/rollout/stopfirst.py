"""The stop-first container strategy, for services that must never run twice (a single-writer
database client, an exclusive lock on a volume): the old release stops before the new starts.

Steps: resolve -> pull -> stop (the old containers, kept) -> start -> healthy -> nginx ->
retire (the stopped old containers removed). Nothing serves from `stop` until `nginx`: the
deployment records that gap (`gap_seconds`). When the new release fails before the switch,
it is removed and the old containers are started again, health-gated and served again; the
error says so and how long the gap was. The old never start while a new one still runs (its
removal failed): the error says so. A restart in the middle does the same (adoption).
"""

from __future__ import annotations

import time

from deployer.backends.base import ContainerInfo
from deployer.errors import DeployerError, DeploymentCancelled
from deployer.models import DeploymentState
from deployer.rollout.bluegreen import BlueGreenRollout
from deployer.rollout.health import wait_until_healthy


class StopFirstRollout(BlueGreenRollout):
    """One stop-first deployment: the gap it opened, and the old containers to start again."""

    stopped: list[ContainerInfo]
    gap_began: float | None = None

    def run(self) -> DeploymentState:
        if self.switched:
            return self._finish_after_restart()
        self.stopped = []
        digest = self.resolve()
        if digest is None:
            return DeploymentState.SKIPPED
        self.pull(digest)
        self._stop_old()
        containers = self.start_and_check(digest)
        self.switch(containers)
        self._close_gap()
        with self.step("retire", cancellable=False) as step:
            removed = [problem for c in self.stopped if (problem := self._remove_one(c.id))]
            step.detail = "; ".join(removed) or (
                f"removed {', '.join(c.name for c in self.stopped)}" if self.stopped else "nothing"
            )
        return DeploymentState.SUCCEEDED

    def undo(self, error: str) -> str:
        if self.switched:
            return error
        new_left = ""
        if self.deployment.container is not None and self.deployment.digest is not None:
            new_left = self._remove_new()
            error += new_left
        if not getattr(self, "stopped", None):
            return error + self._still_serving()
        if new_left:  # the service must never run twice: the old release stays stopped
            self._close_gap()
            return error + (
                f"; the old container(s) {self._old_names()} left stopped: the new one still "
                f"runs and {self.deployment.service} must never run twice; nothing serves it: "
                "deploy again (its start removes the new one first), or remove the new one by "
                "hand and start the old"
            )
        try:
            self._start_old_again()
        except DeploymentCancelled:  # started; only the wait for their health was cut short
            self._close_gap()
            return error + (
                f"; rolled back: {self._old_names()} started again (gap "
                f"{self.deployment.gap_seconds:.2f} s), health not confirmed: deployer is "
                f"stopping; nginx sends {self.deployment.service} to them"
            )
        except DeployerError as err:
            self._close_gap()
            return error + (
                f"; the old container(s) {self._old_names()} could not be started again: {err}; "
                f"nothing serves {self.deployment.service} (a gap since "
                f"{self.deployment.gap_seconds:.2f} s ago); start them by hand or deploy again"
            )
        self._close_gap()
        return error + (
            f"; rolled back: {self._old_names()} started again and serve "
            f"(gap {self.deployment.gap_seconds:.2f} s)"
        )

    def _still_serving(self) -> str:
        serving = self.strategy.fleet.serving(self.deployment.service)
        return f"; {serving.names} kept serving" if serving is not None else ""

    def _old_names(self) -> str:
        return ", ".join(container.name for container in self.stopped)

    def _stop_old(self) -> None:
        backend, old = self.strategy.backend, self.old
        with self.step("stop") as step:
            if old is None:
                step.detail = "nothing runs yet"
                return
            self.gap_began = time.monotonic()
            for container in old.containers:
                backend.halt(container.id, self.service.stop_timeout)
                self.stopped.append(container)
            step.detail = f"stopped {old.names}: from now until the switch nothing serves"

    def _start_old_again(self) -> None:
        """Start the stopped old containers again and wait until they are healthy."""
        strategy = self.strategy
        for container in self.stopped:
            strategy.backend.start_again(container.id)
        for container in self.stopped:
            wait_until_healthy(
                strategy.backend,
                strategy.backend.inspect(container.id),
                self.service.health,
                strategy.stopping,
                strategy.probe,
            )

    def _close_gap(self) -> None:
        if self.gap_began is not None:
            self.deployment.gap_seconds = round(time.monotonic() - self.gap_began, 3)
