"""Per-service serial deployments: coalescing, superseding, and a clean stop.

- Jobs for one service never overlap; different services run in parallel.
- A push for a service with nothing waiting or running starts at once. Pushes that arrive while
  a job runs collapse into one waiting follow-up: identical ones join it (one multi-arch push
  sends several webhooks), a different one supersedes it. The follow-up resolves the tag again
  and ends `skipped` when the digest is what already serves, so a burst of identical pushes
  runs the rollout once. `coalesce` (default 0) makes every new job wait that long first.
- stop() refuses new work and signals running jobs to roll back; queued jobs stay `queued` in
  the store and are resumed at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from deployer.errors import QueueClosed
from deployer.logs import about
from deployer.models import Deployment, DeploymentState, utc_now
from deployer.store import Store

log = logging.getLogger(__name__)


@dataclass
class _Waiting:
    deployment: Deployment
    ready_at: float


def new_deployment_id() -> str:
    """A short random id, safe in URLs and container names."""
    return uuid.uuid4().hex[:12]


class DeployQueue:
    """Schedules deployments; `run` does the work in a worker thread per job."""

    def __init__(
        self,
        run: Callable[[Deployment], None],
        store: Store,
        coalesce: float,
        stopping: threading.Event,
        on_finished: Callable[[Deployment], None] = lambda deployment: None,
    ) -> None:
        self._run = run
        self._on_finished = on_finished
        self._store = store
        self._coalesce = coalesce
        self.stopping = stopping
        self._waiting: dict[str, _Waiting] = {}
        self._finishing: dict[str, Deployment] = {}  # switched before a restart: go first
        self._running: dict[str, tuple[Deployment, threading.Thread]] = {}
        self._held: set[str] = set()  # services someone works on outside a job (holding)
        self._changed = threading.Condition()
        self._dispatcher: threading.Thread | None = None

    def submit(
        self,
        service: str,
        image: str,
        tag: str,
        trigger: str,
        digest: str | None = None,
    ) -> Deployment:
        """Queue a deployment, or return the identical one already waiting."""
        with self._changed:
            if self.stopping.is_set():
                raise QueueClosed("deployer is stopping and takes no new deployments")
            waiting = self._waiting.get(service)
            if waiting and (waiting.deployment.tag, waiting.deployment.requested_digest) == (
                tag,
                digest,
            ):
                return waiting.deployment
            deployment = Deployment(
                id=new_deployment_id(),
                service=service,
                trigger=trigger,
                image=image,
                tag=tag,
                requested_digest=digest,
            )
            self._store.save(deployment)
            if waiting:
                self._supersede(waiting.deployment, deployment)
            self._waiting[service] = _Waiting(deployment, time.monotonic() + self._coalesce)
            self._changed.notify_all()
        log.info(
            "deployment %s of %s queued (%s:%s, %s)",
            deployment.id,
            service,
            image,
            tag,
            trigger,
            extra=about(deployment),
        )
        return deployment

    def resume(self, deployment: Deployment) -> None:
        """Queue again a deployment an earlier run left `queued`, or `running` after its switch
        (those run before anything queued for their service: they finish a live release)."""
        with self._changed:
            if deployment.state is DeploymentState.RUNNING:
                self._finishing[deployment.service] = deployment
                self._changed.notify_all()
                return
            waiting = self._waiting.get(deployment.service)
            if waiting:
                self._supersede(waiting.deployment, deployment)
            self._waiting[deployment.service] = _Waiting(deployment, time.monotonic())
            self._changed.notify_all()

    def running(self, service: str) -> Deployment | None:
        """The deployment running for service now, if any."""
        with self._changed:
            entry = self._running.get(service)
            return entry[0] if entry else None

    def start(self) -> None:
        """Start the dispatcher thread."""
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="deploy-dispatcher", daemon=True
        )
        self._dispatcher.start()

    def stop(self, timeout: float) -> bool:
        """Refuse new work, cancel running jobs, wait up to timeout; True if all finished."""
        self.stopping.set()
        with self._changed:
            self._changed.notify_all()
            threads = [thread for _, thread in self._running.values()]
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def busy(self, service: str) -> bool:
        """True while a deployment of service waits or runs (or its place is held)."""
        with self._changed:
            return self._busy(service)

    def _busy(self, service: str) -> bool:
        jobs = (self._waiting, self._running, self._finishing, self._held)
        return any(service in each for each in jobs)

    @contextmanager
    def holding(self, service: str) -> Iterator[bool]:
        """Hold the service's place in the queue while the caller works on it in its own thread
        (a takeover, nginx following Swarm's tasks): pushes that come meanwhile wait behind
        it, as behind a job. Yields False (and holds nothing) when a deployment of the service
        waits or runs, or another hold is on; QueueClosed when stopping."""
        with self._changed:
            if self.stopping.is_set():
                raise QueueClosed("deployer is stopping and takes no new deployments")
            held = not self._busy(service)
            if held:
                self._held.add(service)
        if not held:  # the caller's refusal runs outside the queue's lock
            yield False
            return
        try:
            yield True
        finally:
            with self._changed:
                self._held.discard(service)
                self._changed.notify_all()

    def idle(self) -> bool:
        """True when nothing waits or runs."""
        with self._changed:
            return not self._waiting and not self._running and not self._finishing

    def _supersede(self, old: Deployment, new: Deployment) -> None:
        old.state = DeploymentState.SUPERSEDED
        old.error = f"superseded by deployment {new.id} ({new.image}:{new.tag}) before it started"
        old.finished_at = utc_now()
        self._store.save(old)
        log.info(
            "deployment %s of %s superseded by %s", old.id, old.service, new.id, extra=about(old)
        )
        self._on_finished(old)

    def _dispatch(self) -> None:
        with self._changed:
            while not self.stopping.is_set():
                now = time.monotonic()
                for service, deployment in list(self._finishing.items()):
                    if self._free(service):
                        del self._finishing[service]
                        self._launch(deployment)
                for service, waiting in list(self._waiting.items()):
                    if self._free(service) and waiting.ready_at <= now:
                        del self._waiting[service]
                        self._launch(waiting.deployment)
                self._changed.wait(self._next_wakeup(now))

    def _next_wakeup(self, now: float) -> float | None:
        ready = [
            waiting.ready_at - now
            for service, waiting in self._waiting.items()
            if self._free(service)
        ]
        return max(0.01, min(ready)) if ready else None

    def _free(self, service: str) -> bool:
        """No job of the service runs and nobody holds it: its next job may start."""
        return service not in self._running and service not in self._held

    def _launch(self, deployment: Deployment) -> None:
        thread = threading.Thread(
            target=self._work, args=(deployment,), name=f"deploy-{deployment.service}"
        )
        self._running[deployment.service] = (deployment, thread)
        thread.start()

    def _work(self, deployment: Deployment) -> None:
        try:
            self._run(deployment)
        except Exception:  # the runner records its own failures; this is the last guard
            log.exception("deployment %s crashed", deployment.id)
        finally:
            with self._changed:
                self._running.pop(deployment.service, None)
                self._changed.notify_all()
