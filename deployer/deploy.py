"""One deployment as an explicit sequence of recorded steps, whatever the rollout strategy.

    queued -> running -> succeeded | failed | skipped      (superseded: replaced while queued)

The strategy (deployer/rollout/) decides which steps run and how a failure is undone; this
module records every step with UTC times, turns errors into a failed deployment, and reports
each finished one. See deployer/rollout/bluegreen.py for the container steps.

The recovery rule (applied at every start by deployer/rollout/adoption.py, whose docstring has
the table step by step): once a deployment's `nginx` step succeeded, its release is the one
that serves, and a restart finishes its drain and retire (recorded, `succeeded`), never rolls
it back; a deployment interrupted before that is recorded `failed: interrupted at <step>`,
nginx is reloaded with the release that served before, and only then are the containers it
started (found by the names recorded before the engine was asked) removed. A stop-first
deployment cut off in its gap gets its old release started again. Nothing is removed while
nginx may still send it traffic.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from deployer.config import Config, ServiceConfig
from deployer.errors import DeployerError, DeploymentCancelled, FinishLater
from deployer.logs import about
from deployer.models import Deployment, DeploymentState, Step, StepState, utc_now
from deployer.store import Store

log = logging.getLogger(__name__)


class Steps:
    """Records one deployment's steps in the store as they start and end."""

    def __init__(self, deployment: Deployment, store: Store, stopping: threading.Event) -> None:
        self.deployment = deployment
        self.store = store
        self.stopping = stopping

    def save(self) -> None:
        """Record the deployment as it is now (e.g. a name chosen before the engine acts)."""
        self.store.save(self.deployment)

    @contextmanager
    def __call__(self, name: str, cancellable: bool = True) -> Iterator[Step]:
        """Run one step; it is recorded running, then succeeded or failed (with why)."""
        deployment = self.deployment
        # Before the nginx switch a stop rolls back; after it, the switch is finished instead.
        if cancellable and self.stopping.is_set():
            raise DeploymentCancelled(f"deployer is stopping; {deployment.service} not changed")
        step = Step(name=name, state=StepState.RUNNING, started_at=utc_now())
        deployment.steps.append(step)
        self.store.save(deployment)
        try:
            yield step
        except FinishLater:
            raise  # not the step's failure: the deployment pauses until the next start
        except BaseException as err:
            step.state = StepState.FAILED
            step.detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise
        finally:
            step.finished_at = utc_now()
            if step.state is StepState.RUNNING:
                step.state = StepState.SUCCEEDED
            self.store.save(deployment)
            log.info(
                "deployment %s of %s: %s %s in %.2f s: %s",
                deployment.id,
                deployment.service,
                step.name,
                step.state,
                (step.finished_at - step.started_at).total_seconds(),
                step.detail.splitlines()[0] if step.detail else "",
                extra=about(deployment),
            )


class Rollout(Protocol):
    """One deployment carried out by a strategy: run its steps, or undo what it changed."""

    def run(self) -> DeploymentState: ...
    def undo(self, error: str) -> str: ...


RolloutFactory = Callable[[Deployment, ServiceConfig, Steps], Rollout]


class Deployer:
    """Runs deployments through their strategy; every outcome is recorded and reported."""

    def __init__(
        self,
        config: Config,
        store: Store,
        stopping: threading.Event,
        make_rollout: RolloutFactory,
        on_finished: Callable[[Deployment], None] = lambda deployment: None,
    ) -> None:
        self.config = config
        self.store = store
        self.stopping = stopping
        self.make_rollout = make_rollout
        self.on_finished = on_finished

    def run(self, deployment: Deployment, make_rollout: RolloutFactory | None = None) -> None:
        """Carry out deployment (by the service's strategy, or `make_rollout`); every outcome
        is recorded in the store, nothing is raised."""
        deployment.state = DeploymentState.RUNNING
        deployment.started_at = deployment.started_at or utc_now()  # kept when resumed
        self.store.save(deployment)
        rollout: Rollout | None = None
        try:
            service = self.config.services.get(deployment.service)
            if service is None:
                raise DeployerError(f"service {deployment.service} is no longer in the config")
            rollout = (make_rollout or self.make_rollout)(
                deployment, service, Steps(deployment, self.store, self.stopping)
            )
            deployment.state = rollout.run()
        except FinishLater as err:
            self.store.save(deployment)  # stays `running`: the next start finishes it
            log.info(
                "deployment %s of %s paused: %s",
                deployment.id,
                deployment.service,
                err,
                extra=about(deployment),
            )
            return
        except DeployerError as err:
            deployment.logs = getattr(err, "logs", None) or None
            self._fail(deployment, rollout, str(err))
        except Exception as err:
            log.exception(
                "deployment %s of %s: unexpected error", deployment.id, deployment.service
            )
            self._fail(deployment, rollout, f"internal error: {type(err).__name__}: {err}")
        deployment.finished_at = utc_now()
        self.store.save(deployment)
        failed = deployment.state is DeploymentState.FAILED
        log.log(
            logging.WARNING if failed else logging.INFO,
            "deployment %s of %s %s%s",
            deployment.id,
            deployment.service,
            deployment.state,
            f": {deployment.error}" if deployment.error else "",
            extra=about(deployment),
        )
        self.on_finished(deployment)

    def _fail(self, deployment: Deployment, rollout: Rollout | None, message: str) -> None:
        deployment.state = DeploymentState.FAILED
        deployment.error = message if rollout is None else rollout.undo(message)
